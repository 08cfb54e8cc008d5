# A minimal MessagePack encoder (maps of str/int/bool) for the memory_burst.py script.
# minimal msgpack encoder for maps of str/int/bool
import struct
def enc(o):
    if isinstance(o, bool): return b'\xc3' if o else b'\xc2'
    if isinstance(o, int):
        if 0 <= o < 128: return bytes([o])
        return b'\xcf' + struct.pack('>Q', o)
    if isinstance(o, str):
        b = o.encode()
        if len(b) < 32: return bytes([0xa0 | len(b)]) + b
        if len(b) < 256: return b'\xd9' + bytes([len(b)]) + b
        if len(b) < 65536: return b'\xda' + struct.pack('>H', len(b)) + b
        return b'\xdb' + struct.pack('>I', len(b)) + b
    if isinstance(o, dict):
        out = bytes([0x80 | len(o)])
        for k, v in o.items(): out += enc(k) + enc(v)
        return out
    raise TypeError(o)
def frame(o):
    p = enc(o); return struct.pack('>I', len(p)) + p
