//! A minimal async Rust client, used by the tests and the bench tool, over
//! any transport: TCP, TLS (pinned or CA-verified), QUIC, WebSocket
//! ([`Endpoint`]; the dialing lives in `client/dial.rs`). (The full SDK with
//! resume and offline queue lives in `client/`.)
//!
//! Requests get a fresh `id` and resolve with the reply carrying it; pushes
//! (`msg`, and errors without an `id`) arrive on [`Client::next_event`].

use crate::ids::RoomId;
use crate::proto::client::{self as req, ClientFrame};
use crate::proto::server::{ErrorFrame, HistoryPage, Joined, Sent, Welcome};
use crate::proto::ServerFrame;
use bytes::Bytes;
use futures_util::StreamExt;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, oneshot};

mod dial;
pub use crate::tls::Trust;
pub use dial::Endpoint;

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
        Client::connect_to(&Endpoint::Tcp(addr)).await
    }

    /// Connects over any transport (no hello yet).
    pub async fn connect_to(endpoint: &Endpoint) -> Result<Client, ClientError> {
        let (out_tx, out_rx) = mpsc::unbounded_channel::<Bytes>();
        let mut frames = dial::open(endpoint, out_rx).await?;
        let (ev_tx, ev_rx) = mpsc::unbounded_channel();
        let pending: Pending = Arc::default();
        let p = pending.clone();
        tokio::spawn(async move {
            while let Some(payload) = frames.next().await {
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

    /// Connects over TCP and authenticates.
    pub async fn connect_with_token(
        addr: SocketAddr,
        token: &str,
    ) -> Result<(Client, Welcome), ClientError> {
        Client::connect_to_with_token(&Endpoint::Tcp(addr), token).await
    }

    /// Connects over any transport and authenticates.
    pub async fn connect_to_with_token(
        endpoint: &Endpoint,
        token: &str,
    ) -> Result<(Client, Welcome), ClientError> {
        let client = Client::connect_to(endpoint).await?;
        let welcome = client.hello(token).await?;
        Ok((client, welcome))
    }

    pub fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Sends raw bytes (tests of malformed input). On WebSocket the bytes must
    /// be whole length-prefixed frames: each becomes one binary message.
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
            sync: false,
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
            description: None,
            room: None,
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
                    since: None,
                    invite: None,
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
            kind: Default::default(),
            attachments: Vec::new(),
            reply_to: None,
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

    /// Sends the frame `make(id)` with a fresh id and waits for its reply.
    pub async fn call(
        &self,
        make: impl FnOnce(u64) -> ClientFrame,
    ) -> Result<ServerFrame, ClientError> {
        let id = self.next_id();
        self.request(id, &make(id)).await
    }

    /// `join {room, since}`: resume after `since`; stored events after it arrive as pushes.
    pub async fn join_since(&self, room: &RoomId, since: u64) -> Result<Joined, ClientError> {
        let f = |id| {
            ClientFrame::Join(req::Join {
                id,
                room: room.clone(),
                since: Some(since),
                invite: None,
            })
        };
        match self.call(f).await? {
            ServerFrame::Joined(j) => Ok(j),
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
    f.reply_id()
}
