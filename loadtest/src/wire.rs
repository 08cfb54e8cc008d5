//! The v1 wire format, load-tool side, with no allocation per frame.
//!
//! Client frames are written straight into a connection's write buffer as
//! MessagePack maps (the same bytes `roomcast::proto::encode` produces for
//! these fields). Server frames are *scanned*, not deserialized: [`parse`]
//! walks the top-level map once and borrows only what the tool needs (`t`,
//! `id`, `room`, `seq`, `body`, error `code`, ...) from the read buffer.

/// Bytes in the length header.
pub const HEADER_LEN: usize = 4;

/// Why a server frame could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireError(pub &'static str);

impl std::fmt::Display for WireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for WireError {}

// ---- encoding -------------------------------------------------------------
//
// The primitives are public for tools that answer like a server (the relay
// baseline in `examples/relay.rs`).

/// Starts a frame: reserves the length header; returns the start for [`end`].
pub fn begin(buf: &mut Vec<u8>) -> usize {
    let start = buf.len();
    buf.extend_from_slice(&[0; HEADER_LEN]);
    start
}

/// Finishes the frame started at `start`: writes its length header.
pub fn end(buf: &mut [u8], start: usize) {
    let len = (buf.len() - start - HEADER_LEN) as u32;
    buf[start..start + HEADER_LEN].copy_from_slice(&len.to_be_bytes());
}

/// A map header of fewer than 16 entries.
pub fn map(buf: &mut Vec<u8>, entries: u8) {
    debug_assert!(entries < 16);
    buf.push(0x80 | entries);
}

/// A string (or any UTF-8 bytes).
pub fn str(buf: &mut Vec<u8>, s: &[u8]) {
    let n = s.len();
    if n < 32 {
        buf.push(0xa0 | n as u8);
    } else if n < 256 {
        buf.extend_from_slice(&[0xd9, n as u8]);
    } else if n < 65_536 {
        buf.push(0xda);
        buf.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        buf.push(0xdb);
        buf.extend_from_slice(&(n as u32).to_be_bytes());
    }
    buf.extend_from_slice(s);
}

/// An unsigned integer in its smallest form.
pub fn uint(buf: &mut Vec<u8>, v: u64) {
    if v < 128 {
        buf.push(v as u8);
    } else if v < 256 {
        buf.extend_from_slice(&[0xcc, v as u8]);
    } else if v < 65_536 {
        buf.push(0xcd);
        buf.extend_from_slice(&(v as u16).to_be_bytes());
    } else if v <= u64::from(u32::MAX) {
        buf.push(0xce);
        buf.extend_from_slice(&(v as u32).to_be_bytes());
    } else {
        buf.push(0xcf);
        buf.extend_from_slice(&v.to_be_bytes());
    }
}

/// A boolean.
pub fn boolean(buf: &mut Vec<u8>, b: bool) {
    buf.push(if b { 0xc3 } else { 0xc2 });
}

/// `hello {id, v: 1, token}`.
pub fn hello(buf: &mut Vec<u8>, id: u64, token: &str) {
    let s = begin(buf);
    map(buf, 4);
    str(buf, b"t");
    str(buf, b"hello");
    str(buf, b"id");
    uint(buf, id);
    str(buf, b"v");
    uint(buf, 1);
    str(buf, b"token");
    str(buf, token.as_bytes());
    end(buf, s);
}

/// `create_room {id, name, private}`.
pub fn create_room(buf: &mut Vec<u8>, id: u64, name: &str, private: bool) {
    let s = begin(buf);
    map(buf, 4);
    str(buf, b"t");
    str(buf, b"create_room");
    str(buf, b"id");
    uint(buf, id);
    str(buf, b"name");
    str(buf, name.as_bytes());
    str(buf, b"private");
    boolean(buf, private);
    end(buf, s);
}

fn room_request(buf: &mut Vec<u8>, t: &[u8], id: u64, room: &str) {
    let s = begin(buf);
    map(buf, 3);
    str(buf, b"t");
    str(buf, t);
    str(buf, b"id");
    uint(buf, id);
    str(buf, b"room");
    str(buf, room.as_bytes());
    end(buf, s);
}

/// `join {id, room}`.
pub fn join(buf: &mut Vec<u8>, id: u64, room: &str) {
    room_request(buf, b"join", id, room);
}

/// `leave {id, room}`.
pub fn leave(buf: &mut Vec<u8>, id: u64, room: &str) {
    room_request(buf, b"leave", id, room);
}

/// `send {id, room, body}`; `body` must be valid UTF-8 (the tool only writes ASCII).
pub fn send(buf: &mut Vec<u8>, id: u64, room: &str, body: &[u8]) {
    let s = begin(buf);
    map(buf, 4);
    str(buf, b"t");
    str(buf, b"send");
    str(buf, b"id");
    uint(buf, id);
    str(buf, b"room");
    str(buf, room.as_bytes());
    str(buf, b"body");
    str(buf, body);
    end(buf, s);
}

/// `history {id, room, limit}`.
pub fn history(buf: &mut Vec<u8>, id: u64, room: &str, limit: u32) {
    let s = begin(buf);
    map(buf, 4);
    str(buf, b"t");
    str(buf, b"history");
    str(buf, b"id");
    uint(buf, id);
    str(buf, b"room");
    str(buf, room.as_bytes());
    str(buf, b"limit");
    uint(buf, u64::from(limit));
    end(buf, s);
}

/// `ping {id}`.
pub fn ping(buf: &mut Vec<u8>, id: u64) {
    let s = begin(buf);
    map(buf, 2);
    str(buf, b"t");
    str(buf, b"ping");
    str(buf, b"id");
    uint(buf, id);
    end(buf, s);
}

// ---- bodies carrying a send timestamp ---------------------------------------

/// Hex digits of the timestamp at the start of every body the tool sends.
pub const STAMP_LEN: usize = 16;

/// Fills `body` (at least [`STAMP_LEN`] bytes) with a timestamp (ns on the
/// tool's monotonic clock) in lowercase hex, then `-` up to its length.
pub fn stamp_body(body: &mut [u8], ns: u64) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for (i, b) in body[..STAMP_LEN].iter_mut().enumerate() {
        *b = HEX[((ns >> ((STAMP_LEN - 1 - i) * 4)) & 0xf) as usize];
    }
}

/// A body of `len` bytes (at least [`STAMP_LEN`]) ready for [`stamp_body`].
pub fn body_template(len: usize) -> Vec<u8> {
    vec![b'-'; len.max(STAMP_LEN)]
}

/// Reads the timestamp [`stamp_body`] wrote; `None` for a foreign body.
pub fn body_stamp(body: &[u8]) -> Option<u64> {
    let hex = body.get(..STAMP_LEN)?;
    let mut v = 0u64;
    for &c in hex {
        let d = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            _ => return None,
        };
        v = (v << 4) | u64::from(d);
    }
    Some(v)
}

// ---- decoding --------------------------------------------------------------

/// The frame types the tool tells apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Kind {
    Welcome,
    Created,
    Joined,
    Left,
    Sent,
    Msg,
    History,
    Pong,
    Error,
    #[default]
    Other,
}

/// The parts of a server frame the tool uses, borrowed from the read buffer.
#[derive(Debug, Default, Clone, Copy)]
pub struct Frame<'a> {
    pub kind: Kind,
    pub id: Option<u64>,
    pub room: &'a [u8],
    pub seq: u64,
    pub body: &'a [u8],
    /// `error.code`.
    pub code: &'a [u8],
    /// `error.message`.
    pub message: &'a [u8],
    /// `error.close`.
    pub close: bool,
    /// `welcome.heartbeat_ms`.
    pub heartbeat_ms: u64,
    /// `error.retry_after_ms` (`server_busy`, `shutting_down`, `rate_limited`).
    pub retry_after_ms: Option<u64>,
}

impl Frame<'_> {
    pub fn room_str(&self) -> &str {
        std::str::from_utf8(self.room).unwrap_or("")
    }
    pub fn code_str(&self) -> &str {
        std::str::from_utf8(self.code).unwrap_or("other")
    }
    pub fn message_str(&self) -> &str {
        std::str::from_utf8(self.message).unwrap_or("")
    }
}

/// If `buf` starts with a whole frame, its payload's range within `buf`.
/// A declared length above `max` is an error.
#[inline]
pub fn frame_range(buf: &[u8], max: usize) -> Result<Option<std::ops::Range<usize>>, WireError> {
    if buf.len() < HEADER_LEN {
        return Ok(None);
    }
    let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    if len > max {
        return Err(WireError("frame longer than the read limit"));
    }
    if buf.len() < HEADER_LEN + len {
        return Ok(None);
    }
    Ok(Some(HEADER_LEN..HEADER_LEN + len))
}

/// Total bytes (header included) the frame at the start of `buf` needs, if the header is there.
pub fn frame_need(buf: &[u8]) -> Option<usize> {
    (buf.len() >= HEADER_LEN)
        .then(|| HEADER_LEN + u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize)
}

enum Val<'a> {
    Str(&'a [u8]),
    UInt(u64),
    Bool(bool),
    Other,
}

struct Cur<'a> {
    b: &'a [u8],
    p: usize,
}

const TRUNC: WireError = WireError("truncated MessagePack");

impl<'a> Cur<'a> {
    #[inline]
    fn byte(&mut self) -> Result<u8, WireError> {
        let v = *self.b.get(self.p).ok_or(TRUNC)?;
        self.p += 1;
        Ok(v)
    }

    #[inline]
    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        let end = self.p.checked_add(n).ok_or(TRUNC)?;
        let s = self.b.get(self.p..end).ok_or(TRUNC)?;
        self.p = end;
        Ok(s)
    }

    #[inline]
    fn be(&mut self, n: usize) -> Result<u64, WireError> {
        Ok(self
            .take(n)?
            .iter()
            .fold(0u64, |acc, b| (acc << 8) | u64::from(*b)))
    }

    /// Reads one value; containers, binaries and extensions are skipped whole.
    fn value(&mut self) -> Result<Val<'a>, WireError> {
        let m = self.byte()?;
        Ok(match m {
            0x00..=0x7f => Val::UInt(u64::from(m)),
            0xa0..=0xbf => Val::Str(self.take(usize::from(m & 0x1f))?),
            0xd9 => {
                let n = self.be(1)? as usize;
                Val::Str(self.take(n)?)
            }
            0xda => {
                let n = self.be(2)? as usize;
                Val::Str(self.take(n)?)
            }
            0xdb => {
                let n = self.be(4)? as usize;
                Val::Str(self.take(n)?)
            }
            0xcc => Val::UInt(self.be(1)?),
            0xcd => Val::UInt(self.be(2)?),
            0xce => Val::UInt(self.be(4)?),
            0xcf => Val::UInt(self.be(8)?),
            0xc2 => Val::Bool(false),
            0xc3 => Val::Bool(true),
            _ => {
                self.p -= 1;
                self.skip()?;
                Val::Other
            }
        })
    }

    /// Skips one value of any kind, nested containers included (iteratively).
    fn skip(&mut self) -> Result<(), WireError> {
        let mut pending: u64 = 1;
        while pending > 0 {
            pending -= 1;
            let m = self.byte()?;
            let skip = match m {
                0x00..=0x7f | 0xe0..=0xff | 0xc0 | 0xc2 | 0xc3 => 0,
                0x80..=0x8f => {
                    pending += 2 * u64::from(m & 0x0f);
                    0
                }
                0x90..=0x9f => {
                    pending += u64::from(m & 0x0f);
                    0
                }
                0xa0..=0xbf => usize::from(m & 0x1f),
                0xcc | 0xd0 => 1,
                0xcd | 0xd1 => 2,
                0xce | 0xd2 | 0xca => 4,
                0xcf | 0xd3 | 0xcb => 8,
                0xd9 | 0xc4 => self.be(1)? as usize,
                0xda | 0xc5 => self.be(2)? as usize,
                0xdb | 0xc6 => self.be(4)? as usize,
                0xdc => {
                    pending += self.be(2)?;
                    0
                }
                0xdd => {
                    pending += self.be(4)?;
                    0
                }
                0xde => {
                    pending += 2 * self.be(2)?;
                    0
                }
                0xdf => {
                    pending += 2 * self.be(4)?;
                    0
                }
                0xd4 => 2,
                0xd5 => 3,
                0xd6 => 5,
                0xd7 => 9,
                0xd8 => 17,
                0xc7 => self.be(1)? as usize + 1,
                0xc8 => self.be(2)? as usize + 1,
                0xc9 => self.be(4)? as usize + 1,
                _ => return Err(WireError("invalid MessagePack marker")),
            };
            if pending > self.b.len() as u64 {
                return Err(WireError("declared length exceeds the frame"));
            }
            self.take(skip)?;
        }
        Ok(())
    }
}

/// Scans one server frame payload (a MessagePack map with string keys).
pub fn parse(payload: &[u8]) -> Result<Frame<'_>, WireError> {
    let mut c = Cur { b: payload, p: 0 };
    let m = c.byte()?;
    let entries = match m {
        0x80..=0x8f => u64::from(m & 0x0f),
        0xde => c.be(2)?,
        0xdf => c.be(4)?,
        _ => return Err(WireError("frame is not a map")),
    };
    let mut f = Frame::default();
    for _ in 0..entries {
        let Val::Str(key) = c.value()? else {
            return Err(WireError("map key is not a string"));
        };
        let v = c.value()?;
        match (key, v) {
            (b"t", Val::Str(t)) => {
                f.kind = match t {
                    b"msg" => Kind::Msg,
                    b"sent" => Kind::Sent,
                    b"joined" => Kind::Joined,
                    b"left" => Kind::Left,
                    b"welcome" => Kind::Welcome,
                    b"created" => Kind::Created,
                    b"history" => Kind::History,
                    b"pong" => Kind::Pong,
                    b"error" => Kind::Error,
                    _ => Kind::Other,
                }
            }
            (b"id", Val::UInt(v)) => f.id = Some(v),
            (b"room", Val::Str(s)) => f.room = s,
            (b"seq", Val::UInt(v)) => f.seq = v,
            (b"body", Val::Str(s)) => f.body = s,
            (b"code", Val::Str(s)) => f.code = s,
            (b"message", Val::Str(s)) => f.message = s,
            (b"close", Val::Bool(b)) => f.close = b,
            (b"heartbeat_ms", Val::UInt(v)) => f.heartbeat_ms = v,
            (b"retry_after_ms", Val::UInt(v)) => f.retry_after_ms = Some(v),
            _ => {}
        }
    }
    if c.p != payload.len() {
        return Err(WireError("trailing bytes after the map"));
    }
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;
    use roomcast::proto::client::ClientFrame;

    #[test]
    fn encoded_requests_decode_on_the_server() {
        let mut buf = Vec::new();
        send(&mut buf, 300, "r1", b"hello");
        let payload = &buf[HEADER_LEN..];
        assert_eq!(frame_range(&buf, 1 << 20).unwrap(), Some(4..buf.len()));
        match ClientFrame::decode(payload).unwrap() {
            ClientFrame::Send(s) => {
                assert_eq!(
                    (s.id, s.room.as_str(), s.body.as_str()),
                    (300, "r1", "hello")
                )
            }
            other => panic!("{other:?}"),
        }
        buf.clear();
        join(&mut buf, 70_000, "abc");
        let decoded: serde_json::Value = rmp_serde::from_slice(&buf[HEADER_LEN..]).unwrap();
        assert_eq!(
            decoded,
            serde_json::json!({"t": "join", "id": 70_000, "room": "abc"})
        );
        assert_eq!(
            &buf[HEADER_LEN..HEADER_LEN + 3],
            b"\x83\xa1t",
            "a map, t first"
        );
        for f in [
            |b: &mut Vec<u8>| hello(b, 1, "tok"),
            |b: &mut Vec<u8>| create_room(b, 2, "n", true),
            |b: &mut Vec<u8>| leave(b, 3, "r"),
            |b: &mut Vec<u8>| history(b, 4, "r", 50),
            |b: &mut Vec<u8>| ping(b, 5),
        ] {
            buf.clear();
            f(&mut buf);
            ClientFrame::decode(&buf[HEADER_LEN..]).unwrap();
        }
        let long = "x".repeat(300);
        buf.clear();
        send(&mut buf, u64::MAX, "r", long.as_bytes());
        match ClientFrame::decode(&buf[HEADER_LEN..]).unwrap() {
            ClientFrame::Send(s) => assert_eq!((s.id, s.body.len()), (u64::MAX, 300)),
            other => panic!("{other:?}"),
        }
    }

    /// A server frame as the server encodes it (a named MessagePack map, `t` first).
    fn server_frame(v: serde_json::Value) -> Vec<u8> {
        let payload = rmp_serde::to_vec_named(&v).unwrap();
        let mut b = (payload.len() as u32).to_be_bytes().to_vec();
        b.extend(payload);
        b
    }

    #[test]
    fn scans_server_frames() {
        // The `msg` vector of proto-spec/vectors.json, byte for byte.
        let hex = "0000003a86a174a36d7367a4726f6f6da767656e6572616ca373657129a466726f6da3626f62a4626f6479a6686920616c6ca27473cf0000019b76da9478";
        let bytes: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        let r = frame_range(&bytes, 1 << 20).unwrap().unwrap();
        let f = parse(&bytes[r]).unwrap();
        assert_eq!(
            (f.kind, f.room, f.seq, f.body),
            (Kind::Msg, &b"general"[..], 41, &b"hi all"[..])
        );

        let bytes = server_frame(serde_json::json!({
            "t": "msg", "room": "general", "seq": 123_456u64, "from": "bob",
            "body": "0000000000000abc----", "ts": 1_767_225_595_000u64, "local_id": "c1",
            "reactions": [{"emoji": "x", "count": 2}], "edited": null
        }));
        let f = parse(&bytes[HEADER_LEN..]).unwrap();
        assert_eq!(f.kind, Kind::Msg);
        assert_eq!((f.room, f.seq, f.id), (&b"general"[..], 123_456, None));
        assert_eq!(body_stamp(f.body), Some(0xabc));

        let bytes = server_frame(serde_json::json!({
            "t": "error", "id": 9, "code": "slow_consumer", "message": "m",
            "retry_after_ms": 5, "close": true
        }));
        let f = parse(&bytes[HEADER_LEN..]).unwrap();
        assert_eq!(
            (f.kind, f.id, f.code, f.close),
            (Kind::Error, Some(9), &b"slow_consumer"[..], true)
        );
        assert_eq!(f.retry_after_ms, Some(5));

        let m = serde_json::json!({"t": "msg", "room": "r", "seq": 1, "body": "b", "ts": 1.5});
        let bytes = server_frame(serde_json::json!({
            "t": "history", "id": 77, "room": "r", "messages": [m.clone(), m.clone(), m], "more": true
        }));
        let f = parse(&bytes[HEADER_LEN..]).unwrap();
        assert_eq!((f.kind, f.id), (Kind::History, Some(77)));
        assert!(parse(&bytes[HEADER_LEN..bytes.len() - 1]).is_err());
        assert!(parse(&[0x91, 0x01]).is_err(), "not a map");
    }

    #[test]
    fn stamps_round_trip() {
        let mut b = body_template(100);
        stamp_body(&mut b, 0x0123_4567_89ab_cdef);
        assert_eq!(b.len(), 100);
        assert_eq!(body_stamp(&b), Some(0x0123_4567_89ab_cdef));
        assert_eq!(body_stamp(b"hello"), None);
    }
}
