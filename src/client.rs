//! A minimal async Rust client for the TCP transport, used by the tests and
//! the bench tool. (The full SDK with resume and offline queue lives in
//! `client/`.)
//!
//! Requests get a fresh `id` and resolve with the reply carrying it; pushes
//! (`msg`, and errors without an `id`) arrive on [`Client::next_event`].

use crate::ids::RoomId;
use crate::proto::client::{self as req, ClientFrame};
use crate::proto::server::{ErrorFrame, HistoryPage, Joined, Sent, Welcome};
use crate::proto::{FrameCodec, ServerFrame, DEFAULT_MAX_FRAME};
use bytes::Bytes;
use futures_util::StreamExt;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio_util::codec::FramedRead;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("server error {}: {}", .0.code, .0.message)]
    Server(ErrorFrame),
    #[error("connection closed")]
    Closed,
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("unexpected reply: {0:?}")]
    Unexpected(Box<ServerFrame>),
}

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<ServerFrame>>>>;

pub struct Client {
    out: mpsc::UnboundedSender<Bytes>,
    pending: Pending,
    events: mpsc::UnboundedReceiver<ServerFrame>,
    next_id: AtomicU64,
}

impl Client {
    /// Connects over TCP (no hello yet).
    pub async fn connect(addr: SocketAddr) -> Result<Client, ClientError> {
        let socket = TcpStream::connect(addr).await?;
        socket.set_nodelay(true)?;
        let (r, mut w) = socket.into_split();
        let (out_tx, mut out_rx) = mpsc::unbounded_channel::<Bytes>();
        let (ev_tx, ev_rx) = mpsc::unbounded_channel();
        let pending: Pending = Arc::default();
        tokio::spawn(async move {
            let mut batch = Vec::new();
            while out_rx.recv_many(&mut batch, 64).await > 0 {
                for b in batch.drain(..) {
                    if w.write_all(&b).await.is_err() {
                        return;
                    }
                }
            }
            let _ = w.shutdown().await;
        });
        let p = pending.clone();
        tokio::spawn(async move {
            // Accept anything the server may send (it never exceeds 4x its own max frame).
            let mut frames = FramedRead::new(r, FrameCodec::new(4 * DEFAULT_MAX_FRAME));
            while let Some(Ok(payload)) = frames.next().await {
                let Ok(frame) = ServerFrame::decode(&payload) else {
                    continue;
                };
                let id = reply_id(&frame);
                let waiter = id.and_then(|id| p.lock().ok().and_then(|mut m| m.remove(&id)));
                match waiter {
                    Some(w) => {
                        let _ = w.send(frame);
                    }
                    None => {
                        if ev_tx.send(frame).is_err() {
                            return;
                        }
                    }
                }
            }
            // Closed: fail every waiting request.
            if let Ok(mut m) = p.lock() {
                m.clear();
            }
        });
        Ok(Client {
            out: out_tx,
            pending,
            events: ev_rx,
            next_id: AtomicU64::new(1),
        })
    }

    /// Connects and authenticates.
    pub async fn connect_with_token(
        addr: SocketAddr,
        token: &str,
    ) -> Result<(Client, Welcome), ClientError> {
        let client = Client::connect(addr).await?;
        let welcome = client.hello(token).await?;
        Ok((client, welcome))
    }

    pub fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Sends raw bytes (tests of malformed input).
    pub fn send_raw(&self, bytes: impl Into<Bytes>) -> Result<(), ClientError> {
        self.out.send(bytes.into()).map_err(|_| ClientError::Closed)
    }

    /// Sends a frame without waiting for a reply.
    pub fn send_frame(&self, frame: &ClientFrame) -> Result<(), ClientError> {
        self.send_raw(crate::proto::encode(frame))
    }

    /// Sends a frame whose `id` is `id` and waits for the reply with that id.
    pub async fn request(&self, id: u64, frame: &ClientFrame) -> Result<ServerFrame, ClientError> {
        let (tx, rx) = oneshot::channel();
        self.pending
            .lock()
            .map_err(|_| ClientError::Closed)?
            .insert(id, tx);
        self.send_frame(frame)?;
        match rx.await.map_err(|_| ClientError::Closed)? {
            ServerFrame::Error(e) => Err(ClientError::Server(e)),
            other => Ok(other),
        }
    }

    pub async fn hello(&self, token: &str) -> Result<Welcome, ClientError> {
        let id = self.next_id();
        let f = ClientFrame::Hello(req::Hello {
            id: Some(id),
            v: 1,
            token: token.into(),
        });
        match self.request(id, &f).await? {
            ServerFrame::Welcome(w) => Ok(w),
            other => Err(ClientError::Unexpected(Box::new(other))),
        }
    }

    pub async fn create_room(&self, name: &str, private: bool) -> Result<RoomId, ClientError> {
        let id = self.next_id();
        let f = ClientFrame::CreateRoom(req::CreateRoom {
            id,
            name: name.into(),
            private,
        });
        match self.request(id, &f).await? {
            ServerFrame::Created(c) => Ok(c.room),
            other => Err(ClientError::Unexpected(Box::new(other))),
        }
    }

    pub async fn join(&self, room: &RoomId) -> Result<Joined, ClientError> {
        let id = self.next_id();
        match self
            .request(
                id,
                &ClientFrame::Join(req::Join {
                    id,
                    room: room.clone(),
                }),
            )
            .await?
        {
            ServerFrame::Joined(j) => Ok(j),
            other => Err(ClientError::Unexpected(Box::new(other))),
        }
    }

    pub async fn leave(&self, room: &RoomId) -> Result<(), ClientError> {
        let id = self.next_id();
        match self
            .request(
                id,
                &ClientFrame::Leave(req::Leave {
                    id,
                    room: room.clone(),
                }),
            )
            .await?
        {
            ServerFrame::Left(_) => Ok(()),
            other => Err(ClientError::Unexpected(Box::new(other))),
        }
    }

    pub async fn send(
        &self,
        room: &RoomId,
        body: &str,
        local_id: Option<&str>,
    ) -> Result<Sent, ClientError> {
        let id = self.next_id();
        let f = ClientFrame::Send(req::Send {
            id,
            room: room.clone(),
            body: body.into(),
            local_id: local_id.map(str::to_string),
        });
        match self.request(id, &f).await? {
            ServerFrame::Sent(s) => Ok(s),
            other => Err(ClientError::Unexpected(Box::new(other))),
        }
    }

    pub async fn history(
        &self,
        room: &RoomId,
        before: Option<u64>,
        limit: Option<u32>,
    ) -> Result<HistoryPage, ClientError> {
        let id = self.next_id();
        let f = ClientFrame::History(req::History {
            id,
            room: room.clone(),
            before,
            limit,
        });
        match self.request(id, &f).await? {
            ServerFrame::History(h) => Ok(h),
            other => Err(ClientError::Unexpected(Box::new(other))),
        }
    }

    pub async fn ping(&self) -> Result<(), ClientError> {
        let id = self.next_id();
        match self
            .request(id, &ClientFrame::Ping(req::Ping { id: Some(id) }))
            .await?
        {
            ServerFrame::Pong(_) => Ok(()),
            other => Err(ClientError::Unexpected(Box::new(other))),
        }
    }

    /// The next push (or reply nobody waited for); `None` once the connection closed.
    pub async fn next_event(&mut self) -> Option<ServerFrame> {
        self.events.recv().await
    }
}

fn reply_id(f: &ServerFrame) -> Option<u64> {
    match f {
        ServerFrame::Welcome(w) => w.id,
        ServerFrame::Created(c) => Some(c.id),
        ServerFrame::Joined(j) => Some(j.id),
        ServerFrame::Left(l) => Some(l.id),
        ServerFrame::Sent(s) => Some(s.id),
        ServerFrame::History(h) => Some(h.id),
        ServerFrame::Pong(p) => p.id,
        ServerFrame::Error(e) => e.id,
        ServerFrame::Msg(_) => None,
    }
}
