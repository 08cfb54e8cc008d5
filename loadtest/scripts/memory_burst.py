# Memory after a burst (docs/PERFORMANCE.md, "Memory after load"): N connections each
# create a room, send 200 messages of 4,000 characters and fetch 200 history pages
# of 200 messages, then close. Usage: memory_burst.py TCP_PORT TOKEN N
import socket, sys, struct, threading, time
sys.path.insert(0, __import__('os').path.dirname(__file__)); from mp_min import frame
port=int(sys.argv[1]); token=sys.argv[2]; n=int(sys.argv[3])
def read_frame(s):
    h=b''
    while len(h)<4:
        c=s.recv(4-len(h)); 
        if not c: raise EOFError
        h+=c
    ln=struct.unpack('>I',h)[0]; b=b''
    while len(b)<ln:
        c=s.recv(min(1<<20, ln-len(b)))
        if not c: raise EOFError
        b+=c
    return b
def run(i):
    s=socket.create_connection(('127.0.0.1',port))
    s.sendall(frame({'t':'hello','v':1,'id':1,'token':token})); read_frame(s)
    room=f'burst{i}'
    s.sendall(frame({'t':'create_room','id':2,'name':room,'room':room})); read_frame(s)
    body='x'*4000
    s.sendall(b''.join(frame({'t':'send','id':10+k,'room':room,'body':body}) for k in range(200)))
    for k in range(200): read_frame(s)
    for r in range(20):
        s.sendall(b''.join(frame({'t':'history','id':1000+r*10+k,'room':room,'limit':200}) for k in range(10)))
        for k in range(10): read_frame(s)
    s.close()
ts=[threading.Thread(target=run,args=(i,)) for i in range(n)]
[t.start() for t in ts]; [t.join() for t in ts]
