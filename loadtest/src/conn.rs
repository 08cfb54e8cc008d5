//! One simulated client's connection: a byte stream, a reusable read buffer
//! that frames are scanned in place from, and a write buffer that requests are
//! encoded into. Nothing here allocates per frame.

use crate::transport::{Stream, Target};
use crate::wire::{self, Kind, WireError};
use std::io;
use std::ops::Range;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Largest server frame the tool accepts (the server never sends more than 4x its max frame).
pub const MAX_FRAME: usize = 4 * 1024 * 1024;

#[derive(Debug)]
pub enum ConnError {
    Io(io::Error),
    Closed,
    Wire(WireError),
    /// An `error` reply or push: code, message, close flag.
    Server(String, String, bool),
    Timeout,
    Unexpected(Kind),
}

impl std::fmt::Display for ConnError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnError::Io(e) => write!(f, "i/o: {e}"),
            ConnError::Closed => f.write_str("connection closed by the server"),
            ConnError::Wire(e) => write!(f, "bad frame from the server: {e}"),
            ConnError::Server(code, msg, _) => write!(f, "server error {code}: {msg}"),
            ConnError::Timeout => f.write_str("timed out"),
            ConnError::Unexpected(k) => write!(f, "unexpected reply {k:?}"),
        }
    }
}

impl std::error::Error for ConnError {}

impl From<io::Error> for ConnError {
    fn from(e: io::Error) -> Self {
        ConnError::Io(e)
    }
}

impl From<WireError> for ConnError {
    fn from(e: WireError) -> Self {
        ConnError::Wire(e)
    }
}

impl ConnError {
    /// The key this failure is counted under in "errors by code".
    pub fn code(&self) -> String {
        match self {
            ConnError::Io(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                "connect_refused".into()
            }
            ConnError::Io(e) if e.kind() == io::ErrorKind::TimedOut => "timeout".into(),
            ConnError::Io(_) => "io".into(),
            ConnError::Closed => "closed".into(),
            ConnError::Wire(_) => "bad_frame".into(),
            ConnError::Server(code, _, _) => code.clone(),
            ConnError::Timeout => "timeout".into(),
            ConnError::Unexpected(_) => "unexpected_reply".into(),
        }
    }
}

/// What a setup request's reply carried (owned: setup is not the hot path).
#[derive(Debug, Default, Clone)]
pub struct Reply {
    pub seq: u64,
    pub room: String,
    pub heartbeat_ms: u64,
}

pub struct Conn {
    stream: Stream,
    rbuf: Vec<u8>,
    start: usize,
    end: usize,
    /// Requests waiting to be written by [`Conn::flush`].
    pub wbuf: Vec<u8>,
    next_id: u64,
}

impl Conn {
    /// Connects (connection number `n` picks the source address) with a read
    /// buffer of `read_buffer` bytes, grown only for a frame larger than it.
    pub async fn open(target: &Target, n: usize, read_buffer: usize) -> io::Result<Conn> {
        let stream = target.connect(n, read_buffer).await?;
        Ok(Conn {
            stream,
            rbuf: vec![0; read_buffer.max(64)],
            start: 0,
            end: 0,
            wbuf: Vec::with_capacity(256),
            next_id: 1,
        })
    }

    pub fn next_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// Writes everything in the write buffer (and pushes it out of any
    /// transport-level buffer: TLS records, WebSocket messages).
    pub async fn flush(&mut self) -> io::Result<()> {
        if !self.wbuf.is_empty() {
            self.stream.write_all(&self.wbuf).await?;
            self.wbuf.clear();
            self.stream.flush().await?;
        }
        Ok(())
    }

    /// Reads more bytes into the buffer; `Ok(false)` at end of stream.
    /// Cancel-safe: a cancelled call loses nothing.
    pub async fn fill(&mut self) -> io::Result<bool> {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
        let free = self.rbuf.len() - self.end;
        if free < 512.min(self.rbuf.len() / 4) || free == 0 {
            if self.start > 0 {
                self.rbuf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
            if self.end == self.rbuf.len() {
                let need = wire::frame_need(&self.rbuf[..self.end]).unwrap_or(0);
                let grow = need
                    .max(self.rbuf.len() * 2)
                    .min(MAX_FRAME + wire::HEADER_LEN);
                self.rbuf.resize(grow, 0);
            }
        }
        let n = self.stream.read(&mut self.rbuf[self.end..]).await?;
        self.end += n;
        Ok(n > 0)
    }

    /// The next whole frame already buffered: its payload's range (valid for
    /// [`Conn::payload`] until the next [`Conn::fill`]). No I/O.
    #[inline]
    pub fn next_frame(&mut self) -> Result<Option<Range<usize>>, WireError> {
        match wire::frame_range(&self.rbuf[self.start..self.end], MAX_FRAME)? {
            Some(r) => {
                let abs = self.start + r.start..self.start + r.end;
                self.start += r.end;
                Ok(Some(abs))
            }
            None => Ok(None),
        }
    }

    #[inline]
    pub fn payload(&self, r: Range<usize>) -> &[u8] {
        &self.rbuf[r]
    }

    /// Writes the request already encoded in `wbuf` with `id` and waits for its
    /// reply; every other frame meanwhile goes to `other`. Error replies and
    /// closing errors become [`ConnError::Server`].
    pub async fn call(
        &mut self,
        id: u64,
        want: Kind,
        mut other: impl FnMut(&wire::Frame<'_>),
    ) -> Result<Reply, ConnError> {
        self.flush().await?;
        loop {
            while let Some(r) = self.next_frame()? {
                let f = wire::parse(&self.rbuf[r])?;
                if f.kind == Kind::Error && (f.id == Some(id) || f.close) {
                    return Err(ConnError::Server(
                        f.code_str().to_string(),
                        f.message_str().to_string(),
                        f.close,
                    ));
                }
                if f.id == Some(id) {
                    if f.kind != want {
                        return Err(ConnError::Unexpected(f.kind));
                    }
                    return Ok(Reply {
                        seq: f.seq,
                        room: f.room_str().to_string(),
                        heartbeat_ms: f.heartbeat_ms,
                    });
                }
                other(&f);
            }
            if !self.fill().await? {
                return Err(ConnError::Closed);
            }
        }
    }

    /// `hello` → `welcome`; returns the announced heartbeat (ms).
    pub async fn hello(&mut self, token: &str) -> Result<u64, ConnError> {
        let id = self.next_id();
        wire::hello(&mut self.wbuf, id, token);
        Ok(self.call(id, Kind::Welcome, |_| {}).await?.heartbeat_ms)
    }

    /// `create_room` → the new room's id.
    pub async fn create_room(&mut self, name: &str) -> Result<String, ConnError> {
        let id = self.next_id();
        wire::create_room(&mut self.wbuf, id, name, false);
        Ok(self.call(id, Kind::Created, |_| {}).await?.room)
    }

    /// `join` → the room's seq at the moment of joining.
    pub async fn join(&mut self, room: &str) -> Result<u64, ConnError> {
        let id = self.next_id();
        wire::join(&mut self.wbuf, id, room);
        Ok(self.call(id, Kind::Joined, |_| {}).await?.seq)
    }

    /// Half-closes the write side (best effort).
    pub async fn shutdown(&mut self) {
        let _ = self.stream.shutdown().await;
    }
}
