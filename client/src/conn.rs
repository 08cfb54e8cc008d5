//! One connection to a server over any transport ([`Endpoint`]): `hello`,
//! requests matched to replies by `id`, and the stream of pushes. No
//! reconnection here: that is [`crate::Client`]'s job, built on this.
//!
//! Requests get a fresh `id` and resolve with the reply carrying it; pushes
//! (stream events, ephemeral pushes, errors without an `id`) arrive on
//! [`Connection::next_event`]. Replies may come in any order (rooms live on
//! different server shards); frames of one kind for one room come in order.

use crate::dial::{self, Endpoint};
use bytes::Bytes;
use futures_util::StreamExt;
use roomcast_protocol::client::{self as req, ClientFrame};
use roomcast_protocol::ids::RoomId;
use roomcast_protocol::server::{ErrorFrame, HistoryPage, Joined, Sent, Welcome};
use roomcast_protocol::{ServerFrame, PROTOCOL_VERSION};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, watch};

/// What can go wrong on one connection.
#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    /// The server answered the request with an `error` frame (see its `code`:
    /// `proto-spec/README.md`, "Error codes").
    #[error("server error {}: {}", .0.code, .0.message)]
    Server(ErrorFrame),
    /// The connection closed before the reply arrived (the request may or may
    /// not have been applied; `send` with a `local_id` is safe to repeat).
    #[error("connection closed")]
    Closed,
    /// Connecting failed: socket, TLS (including a pin mismatch), QUIC or
    /// WebSocket handshake.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// The server answered with a frame of another type than the request's reply.
    #[error("unexpected reply: {0:?}")]
    Unexpected(Box<ServerFrame>),
}

/// Tuning of one connection.
#[derive(Clone, Debug, Default)]
pub struct ConnOptions {
    /// Bound on pushes buffered for [`Connection::next_event`]. `None`:
    /// unbounded (the socket is always drained). `Some(n)`: once `n` pushes
    /// wait unread, the connection stops reading the socket, so a client that
    /// does not keep up is seen by the server as a slow consumer (replies
    /// queue behind the unread pushes too).
    pub event_buffer: Option<usize>,
}

/// Waiters by request id; `None` once the connection closed, so a request
/// made after the close fails at once instead of waiting forever.
type Pending = Arc<Mutex<Option<HashMap<u64, oneshot::Sender<ServerFrame>>>>>;

enum EventRx {
    Bounded(mpsc::Receiver<ServerFrame>),
    Unbounded(mpsc::UnboundedReceiver<ServerFrame>),
}

impl EventRx {
    async fn recv(&mut self) -> Option<ServerFrame> {
        match self {
            EventRx::Bounded(rx) => rx.recv().await,
            EventRx::Unbounded(rx) => rx.recv().await,
        }
    }
}

/// The pushes of a [`Connection`], taken out with [`Connection::take_pushes`].
pub struct Pushes(EventRx);

impl Pushes {
    /// The next push; `None` once the connection closed.
    pub async fn next(&mut self) -> Option<ServerFrame> {
        self.0.recv().await
    }
}

#[derive(Clone)]
enum EventTx {
    Bounded(mpsc::Sender<ServerFrame>),
    Unbounded(mpsc::UnboundedSender<ServerFrame>),
}

impl EventTx {
    async fn send(&self, f: ServerFrame) -> bool {
        match self {
            EventTx::Bounded(tx) => tx.send(f).await.is_ok(),
            EventTx::Unbounded(tx) => tx.send(f).is_ok(),
        }
    }
}

/// One connection. Dropping it (or [`Connection::close`]) closes the transport.
pub struct Connection {
    out: mpsc::UnboundedSender<Bytes>,
    close: watch::Sender<bool>,
    pending: Pending,
    events: Option<EventRx>,
    next_id: AtomicU64,
    started: Instant,
    /// Ms after `started` when the last frame was read from the socket.
    last_rx_ms: Arc<AtomicU64>,
}

impl Connection {
    /// Connects over TCP (no hello yet).
    pub async fn connect(addr: SocketAddr) -> Result<Connection, ConnError> {
        Connection::connect_to(&Endpoint::Tcp(addr)).await
    }

    /// Connects over any transport (no hello yet), with unbounded buffering.
    pub async fn connect_to(endpoint: &Endpoint) -> Result<Connection, ConnError> {
        Connection::connect_with(endpoint, &ConnOptions::default()).await
    }

    /// Connects over any transport (no hello yet).
    pub async fn connect_with(
        endpoint: &Endpoint,
        options: &ConnOptions,
    ) -> Result<Connection, ConnError> {
        let (out_tx, out_rx) = mpsc::unbounded_channel::<Bytes>();
        let (close_tx, close_rx) = watch::channel(false);
        let mut frames = dial::open(endpoint, out_rx, close_rx).await?;
        let (ev_tx, ev_rx) = match options.event_buffer {
            Some(n) => {
                let (tx, rx) = mpsc::channel(n.max(1));
                (EventTx::Bounded(tx), EventRx::Bounded(rx))
            }
            None => {
                let (tx, rx) = mpsc::unbounded_channel();
                (EventTx::Unbounded(tx), EventRx::Unbounded(rx))
            }
        };
        let pending: Pending = Arc::new(Mutex::new(Some(HashMap::new())));
        let started = Instant::now();
        let last_rx_ms = Arc::new(AtomicU64::new(0));
        let (p, last) = (pending.clone(), last_rx_ms.clone());
        tokio::spawn(async move {
            while let Some(payload) = frames.next().await {
                last.store(started.elapsed().as_millis() as u64, Ordering::Relaxed);
                let frame = match ServerFrame::decode(&payload) {
                    Ok(f) => f,
                    Err(e) => {
                        // Unknown push types and future frames are skipped (spec: Versioning).
                        tracing::debug!("skipping an undecodable server frame: {e}");
                        continue;
                    }
                };
                let waiter = frame.reply_id().and_then(|id| {
                    p.lock()
                        .ok()
                        .and_then(|mut m| m.as_mut().and_then(|m| m.remove(&id)))
                });
                match waiter {
                    Some(w) => {
                        let _ = w.send(frame);
                    }
                    None => {
                        if !ev_tx.send(frame).await {
                            break;
                        }
                    }
                }
            }
            // Closed: fail every waiting request, and every later one.
            if let Ok(mut m) = p.lock() {
                *m = None;
            }
        });
        Ok(Connection {
            out: out_tx,
            close: close_tx,
            pending,
            events: Some(ev_rx),
            next_id: AtomicU64::new(1),
            started,
            last_rx_ms,
        })
    }

    /// Connects over TCP and authenticates.
    pub async fn connect_with_token(
        addr: SocketAddr,
        token: &str,
    ) -> Result<(Connection, Welcome), ConnError> {
        Connection::connect_to_with_token(&Endpoint::Tcp(addr), token).await
    }

    /// Connects over any transport and authenticates.
    pub async fn connect_to_with_token(
        endpoint: &Endpoint,
        token: &str,
    ) -> Result<(Connection, Welcome), ConnError> {
        let conn = Connection::connect_to(endpoint).await?;
        let welcome = conn.hello(token).await?;
        Ok((conn, welcome))
    }

    /// A fresh request id.
    pub fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Sends raw bytes (tests of malformed input). On WebSocket the bytes must
    /// be whole length-prefixed frames: each becomes one binary message.
    pub fn send_raw(&self, bytes: impl Into<Bytes>) -> Result<(), ConnError> {
        self.out.send(bytes.into()).map_err(|_| ConnError::Closed)
    }

    /// Sends a frame without waiting for a reply.
    pub fn send_frame(&self, frame: &ClientFrame) -> Result<(), ConnError> {
        self.send_raw(roomcast_protocol::encode(frame))
    }

    /// Sends a frame whose `id` is `id` and waits for the reply with that id.
    /// An `error` reply becomes [`ConnError::Server`].
    pub async fn request(&self, id: u64, frame: &ClientFrame) -> Result<ServerFrame, ConnError> {
        let (tx, rx) = oneshot::channel();
        {
            let mut pending = self.pending.lock().map_err(|_| ConnError::Closed)?;
            pending.as_mut().ok_or(ConnError::Closed)?.insert(id, tx);
        }
        if let Err(e) = self.send_frame(frame) {
            self.forget(id);
            return Err(e);
        }
        match rx.await.map_err(|_| ConnError::Closed)? {
            ServerFrame::Error(e) => Err(ConnError::Server(e)),
            other => Ok(other),
        }
    }

    fn forget(&self, id: u64) {
        if let Ok(mut m) = self.pending.lock() {
            if let Some(m) = m.as_mut() {
                m.remove(&id);
            }
        }
    }

    /// Sends the frame `make(id)` with a fresh id and waits for its reply.
    pub async fn call(
        &self,
        make: impl FnOnce(u64) -> ClientFrame,
    ) -> Result<ServerFrame, ConnError> {
        let id = self.next_id();
        self.request(id, &make(id)).await
    }

    /// `hello`: authenticates with a JWT.
    pub async fn hello(&self, token: &str) -> Result<Welcome, ConnError> {
        self.hello_with(token, false).await
    }

    /// `hello`, with `sync: true` asking for the room list right after `welcome`.
    pub async fn hello_with(&self, token: &str, sync: bool) -> Result<Welcome, ConnError> {
        let f = |id| {
            ClientFrame::Hello(req::Hello {
                id: Some(id),
                v: PROTOCOL_VERSION,
                token: token.into(),
                sync,
            })
        };
        match self.call(f).await? {
            ServerFrame::Welcome(w) => Ok(w),
            other => Err(unexpected(other)),
        }
    }

    pub async fn create_room(&self, name: &str, private: bool) -> Result<RoomId, ConnError> {
        let f = |id| {
            ClientFrame::CreateRoom(req::CreateRoom {
                id,
                name: name.into(),
                private,
                description: None,
                room: None,
            })
        };
        match self.call(f).await? {
            ServerFrame::Created(c) => Ok(c.room),
            other => Err(unexpected(other)),
        }
    }

    pub async fn join(&self, room: &RoomId) -> Result<Joined, ConnError> {
        self.join_from(room, None).await
    }

    /// `join {room, since}`: resume after `since`; stored events after it arrive as pushes.
    pub async fn join_since(&self, room: &RoomId, since: u64) -> Result<Joined, ConnError> {
        self.join_from(room, Some(since)).await
    }

    /// `join {room, since?}`.
    pub async fn join_from(&self, room: &RoomId, since: Option<u64>) -> Result<Joined, ConnError> {
        let f = |id| {
            ClientFrame::Join(req::Join {
                id,
                room: room.clone(),
                since,
                invite: None,
            })
        };
        match self.call(f).await? {
            ServerFrame::Joined(j) => Ok(j),
            other => Err(unexpected(other)),
        }
    }

    pub async fn leave(&self, room: &RoomId) -> Result<(), ConnError> {
        let f = |id| {
            ClientFrame::Leave(req::Leave {
                id,
                room: room.clone(),
            })
        };
        match self.call(f).await? {
            ServerFrame::Left(_) => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    pub async fn send(
        &self,
        room: &RoomId,
        body: &str,
        local_id: Option<&str>,
    ) -> Result<Sent, ConnError> {
        let f = |id| {
            ClientFrame::Send(req::Send {
                id,
                room: room.clone(),
                body: body.into(),
                local_id: local_id.map(str::to_string),
                kind: Default::default(),
                attachments: Vec::new(),
                reply_to: None,
            })
        };
        match self.call(f).await? {
            ServerFrame::Sent(s) => Ok(s),
            other => Err(unexpected(other)),
        }
    }

    pub async fn history(
        &self,
        room: &RoomId,
        before: Option<u64>,
        limit: Option<u32>,
    ) -> Result<HistoryPage, ConnError> {
        self.history_page(room, before, None, limit).await
    }

    /// Messages with a seq above `after`, oldest first; `more`: newer ones exist.
    pub async fn history_after(
        &self,
        room: &RoomId,
        after: u64,
        limit: Option<u32>,
    ) -> Result<HistoryPage, ConnError> {
        self.history_page(room, None, Some(after), limit).await
    }

    async fn history_page(
        &self,
        room: &RoomId,
        before: Option<u64>,
        after: Option<u64>,
        limit: Option<u32>,
    ) -> Result<HistoryPage, ConnError> {
        let f = |id| {
            ClientFrame::History(req::History {
                id,
                room: room.clone(),
                before,
                after,
                limit,
            })
        };
        match self.call(f).await? {
            ServerFrame::History(h) => Ok(h),
            other => Err(unexpected(other)),
        }
    }

    pub async fn ping(&self) -> Result<(), ConnError> {
        match self
            .call(|id| ClientFrame::Ping(req::Ping { id: Some(id) }))
            .await?
        {
            ServerFrame::Pong(_) => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    /// The next push (or reply nobody waited for); `None` once the connection closed.
    pub async fn next_event(&mut self) -> Option<ServerFrame> {
        match &mut self.events {
            Some(rx) => rx.recv().await,
            None => None,
        }
    }

    /// Takes the push stream out, so the connection itself can be shared
    /// (`Arc<Connection>`) while one task reads the pushes.
    pub fn take_pushes(&mut self) -> Option<Pushes> {
        self.events.take().map(Pushes)
    }

    /// Closes the transport now: the writer stops, the read side ends, and
    /// waiting requests fail with [`ConnError::Closed`].
    pub fn close(&self) {
        let _ = self.close.send(true);
    }

    /// How long since the last frame arrived from the server (or since connecting).
    pub fn since_last_frame(&self) -> Duration {
        let now = self.started.elapsed();
        now.saturating_sub(Duration::from_millis(
            self.last_rx_ms.load(Ordering::Relaxed),
        ))
    }

    /// A handle that can close this connection from another task.
    pub fn closer(&self) -> Closer {
        Closer(self.close.clone())
    }
}

/// Closes a [`Connection`] from elsewhere (see [`Connection::closer`]).
#[derive(Clone, Debug)]
pub struct Closer(watch::Sender<bool>);

impl Closer {
    pub fn close(&self) {
        let _ = self.0.send(true);
    }
}

fn unexpected(f: ServerFrame) -> ConnError {
    ConnError::Unexpected(Box::new(f))
}
