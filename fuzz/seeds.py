#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets from proto-spec/vectors.json.

    python3 fuzz/seeds.py        # -> fuzz/corpus/<target>/seed-*

Generated, not committed: the seeds follow the vectors whenever those are
re-blessed, and libFuzzer adds what it finds next to them. The layout of each
target's input (its first byte) is described at the top of the target.
session_ops needs no files: its operations pick the vectors at run time.
"""
import json
import os
import struct
import zlib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS = os.path.join(ROOT, "fuzz", "corpus")
DEFAULT_MAX = 3  # frame_decode byte 0, bits 0-1: max_frame = 1 MiB


def write(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        f.write(data)


def ws_frame(opcode, payload, fin=True, rsv1=False, mask=b"\x37\xfa\x21\x3d"):
    """One client-to-server WebSocket frame (masked, as browsers send)."""
    b0 = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode
    n = len(payload)
    if n < 126:
        head = bytes([b0, 0x80 | n])
    elif n < 65536:
        head = bytes([b0, 0x80 | 126]) + struct.pack(">H", n)
    else:
        head = bytes([b0, 0x80 | 127]) + struct.pack(">Q", n)
    masked = bytes(c ^ mask[i % 4] for i, c in enumerate(payload))
    return head + mask + masked


def deflate(payload):
    """permessage-deflate: raw deflate, the final empty block's tail removed."""
    c = zlib.compressobj(wbits=-15)
    out = c.compress(payload) + c.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(b"\x00\x00\xff\xff")
    return out[:-4]


def main():
    with open(os.path.join(ROOT, "proto-spec", "vectors.json")) as f:
        vectors = json.load(f)["vectors"]
    client = [(v["name"], bytes.fromhex(v["hex"])) for v in vectors
              if v["direction"] == "client_to_server"]
    server = [(v["name"], bytes.fromhex(v["hex"])) for v in vectors
              if v["direction"] != "client_to_server"]

    # frame_decode: each vector as a stream (header + payload) and as a raw
    # payload; all client vectors back to back, fed 1 and 7 bytes at a time.
    for name, framed in client + server:
        write("frame_decode", name, bytes([DEFAULT_MAX | (15 << 2)]) + framed)
        write("frame_decode", name + "-payload", bytes([DEFAULT_MAX]) + framed[4:])
    stream = b"".join(framed for _, framed in client)
    write("frame_decode", "all-client", bytes([DEFAULT_MAX]) + stream)
    write("frame_decode", "all-client-7", bytes([DEFAULT_MAX | (6 << 2)]) + stream)

    # ws_frames: each client payload as one binary message (byte 0: max_frame
    # 1 MiB, bit 0 compression); compressed and fragmented variants; control
    # frames and a text message.
    plain, deflated = 6, 7
    for name, framed in client:
        payload = framed[4:]
        write("ws_frames", name, bytes([plain]) + ws_frame(0x2, payload))
        write("ws_frames", name + "-deflate",
              bytes([deflated]) + ws_frame(0x2, deflate(payload), rsv1=True))
    name, framed = client[0]
    p = framed[4:]
    half = len(p) // 2
    write("ws_frames", "fragmented", bytes([plain])
          + ws_frame(0x2, p[:half], fin=False)
          + ws_frame(0x9, b"ping")
          + ws_frame(0x0, p[half:]))
    write("ws_frames", "ping-pong-close", bytes([plain])
          + ws_frame(0x9, b"") + ws_frame(0xA, b"x")
          + ws_frame(0x8, struct.pack(">H", 1000) + b"bye"))
    write("ws_frames", "text", bytes([plain]) + ws_frame(0x1, b'{"t":"hello"}'))
    write("ws_frames", "all-client", bytes([plain])
          + b"".join(ws_frame(0x2, f[4:]) for _, f in client))
    print(f"seeds: {len(client)} client and {len(server)} server vectors -> {CORPUS}")


if __name__ == "__main__":
    main()
