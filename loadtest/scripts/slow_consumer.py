# One slow consumer for the soak (soak.sh): connection A joins a room and stops reading;
# connection B sends 4,000-character messages into the room (16 MB) while reading its own
# acks. A's outbound queue overflows its bound (--outbox-bytes, 4 MiB), so the server
# cuts A off. Then A reads again, as fast as it can: it must come to an end (EOF or
# reset) within 40 s. Prints "slow_consumer cut off ..." with the frames A read, whether
# the last was `error slow_consumer` (it is only if A resumed reading within the 5 s the
# server gives the closing flush), and how the connection ended; "slow_consumer FAIL ..."
# (exit 1) if A was not cut off.
# Usage: slow_consumer.py TCP_PORT HS256_SECRET TAG
import base64, hashlib, hmac, json, os, socket, struct, sys, time
sys.path.insert(0, os.path.dirname(__file__)); from mp_min import frame

port, secret, tag = int(sys.argv[1]), sys.argv[2].encode(), sys.argv[3]

def token(sub):
    b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b'=')
    now = int(time.time())
    head = b64(json.dumps({'alg': 'HS256', 'typ': 'JWT'}).encode())
    body = b64(json.dumps({'sub': sub, 'iat': now, 'exp': now + 3600}).encode())
    sig = b64(hmac.new(secret, head + b'.' + body, hashlib.sha256).digest())
    return (head + b'.' + body + b'.' + sig).decode()

def read_frame(s):
    h = b''
    while len(h) < 4:
        c = s.recv(4 - len(h))
        if not c: raise EOFError
        h += c
    ln = struct.unpack('>I', h)[0]; b = b''
    while len(b) < ln:
        c = s.recv(min(1 << 20, ln - len(b)))
        if not c: raise EOFError
        b += c
    return b

def connect(user):
    s = socket.create_connection(('127.0.0.1', port))
    s.sendall(frame({'t': 'hello', 'v': 1, 'id': 1, 'token': token(user)}))
    if b'welcome' not in read_frame(s): raise SystemExit(f'slow_consumer FAIL no welcome for {user}')
    return s

room = f'slow-{tag}'
a = connect(f'slowa-{tag}')
a.sendall(frame({'t': 'create_room', 'id': 2, 'name': room, 'room': room}))
read_frame(a)
a.sendall(frame({'t': 'join', 'id': 3, 'room': room}))
read_frame(a)
b = connect(f'slowb-{tag}')
b.sendall(frame({'t': 'join', 'id': 2, 'room': room}))
read_frame(b)
body = 'x' * 4000
sent = 0
for batch in range(200):  # up to 200 x 20 x 4 KB = 16 MB, far above the 4 MiB outbox bound
    b.sendall(b''.join(frame({'t': 'send', 'id': 10 + sent + k, 'room': room, 'body': body}) for k in range(20)))
    # B reads (and discards) its acks and pushes so that it is never slow itself.
    b.settimeout(0.05)
    try:
        while b.recv(1 << 20): pass
    except socket.timeout:
        pass
    b.settimeout(None)
    sent += 20
# A reads everything now: frames, perhaps the slow_consumer error, then the end.
t0 = time.time()
a.settimeout(40)
last, n, end = b'', 0, 'none'
try:
    while True:
        last = read_frame(a); n += 1
except (EOFError, ConnectionResetError, socket.timeout) as e:
    end = type(e).__name__
b.close(); a.close()
error = b'slow_consumer' in last
if end in ('EOFError', 'ConnectionResetError'):
    print(f'slow_consumer cut off: {n} frames read after {sent} sends, last is the error: {error}, '
          f'then {end} after {time.time() - t0:.1f} s of reading')
else:
    print(f'slow_consumer FAIL not cut off: last frame {last[:40]!r} after {n} frames, {sent} sends, {end}')
    sys.exit(1)
