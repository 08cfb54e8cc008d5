//! [`Client`]: the typed, resuming API apps use. Cheap to clone; every clone
//! drives the same connection. The work happens in `driver.rs`; this file is
//! the handle: requests, the offline queue's entry point, and shutdown.

use crate::config::ClientConfig;
use crate::conn::{ConnError, Connection};
use crate::driver;
use crate::error::Error;
use crate::event::Event;
use crate::queue::{self, Queue, QueuedSend, Waiter};
use crate::rooms::Rooms;
use roomcast_protocol::client::{self as req, ClientFrame};
use roomcast_protocol::ids::{RoomId, UserId};
use roomcast_protocol::server::{
    Created, Direct, HistoryPage, Joined, MembersReply, OkReply, ReadAck, ReceiptsReply,
    RoomSummary, Sent,
};
use roomcast_protocol::types::{Attachment, MessageKind, Status, UserPresence};
use roomcast_protocol::{ServerFrame, DEFAULT_MAX_FRAME, HEADER_LEN};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use tokio::sync::{mpsc, oneshot, watch, Notify};
use tokio::time::Instant;

/// State shared by the handle and the driver.
pub(crate) struct Shared {
    pub config: ClientConfig,
    pub state: Mutex<State>,
    /// The live connection, if any.
    pub conn: watch::Sender<Option<Arc<Connection>>>,
    pub queue_changed: Notify,
    pub persist: Notify,
    /// The queue version last written to the file.
    pub persisted: watch::Sender<u64>,
    pub shutdown: watch::Sender<bool>,
}

pub(crate) struct State {
    pub rooms: Rooms,
    pub queue: Queue,
    pub user: Option<UserId>,
    pub max_frame: usize,
    pub closed: bool,
    /// The status set with [`Client::set_status`], restored on every new
    /// session (a session starts `online`).
    pub status: Option<Status>,
}

/// Shuts the client down when the last handle is dropped.
struct DropGuard(Arc<Shared>);

impl Drop for DropGuard {
    fn drop(&mut self) {
        let _ = self.0.shutdown.send(true);
    }
}

/// A message to send (text by default).
#[derive(Clone, Debug)]
pub struct OutgoingMessage {
    pub room: RoomId,
    pub body: String,
    pub kind: MessageKind,
    pub attachments: Vec<Attachment>,
    pub reply_to: Option<u64>,
}

impl OutgoingMessage {
    pub fn text(room: &RoomId, body: impl Into<String>) -> Self {
        OutgoingMessage {
            room: room.clone(),
            body: body.into(),
            kind: MessageKind::Text,
            attachments: Vec::new(),
            reply_to: None,
        }
    }
}

/// A queued send: resolves to the server's `sent` once acknowledged (across
/// reconnects), or to the error that made it leave the queue.
pub struct PendingSend {
    local_id: String,
    rx: oneshot::Receiver<Result<Sent, Error>>,
}

impl PendingSend {
    /// The idempotency key the SDK gave the message (also in its `msg` push).
    pub fn local_id(&self) -> &str {
        &self.local_id
    }
}

impl Future for PendingSend {
    type Output = Result<Sent, Error>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.rx)
            .poll(cx)
            .map(|r| r.unwrap_or(Err(Error::Closed)))
    }
}

/// The event stream of a [`Client`]; ends after [`Event::Closed`].
pub struct Events {
    rx: mpsc::Receiver<Event>,
}

impl Events {
    pub async fn next(&mut self) -> Option<Event> {
        self.rx.recv().await
    }
}

impl futures_util::Stream for Events {
    type Item = Event;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        self.rx.poll_recv(cx)
    }
}

/// A resuming roomcast client. See the crate docs for the guarantees.
#[derive(Clone)]
pub struct Client {
    shared: Arc<Shared>,
    _guard: Arc<DropGuard>,
}

impl Client {
    /// Starts the client and waits for its first connection; fails if that
    /// first attempt fails (use [`Client::start`] to begin offline instead).
    pub async fn connect(config: ClientConfig) -> Result<(Client, Events), Error> {
        let (tx, rx) = oneshot::channel();
        let (client, events) = Client::launch(config, Some(tx))?;
        match rx.await {
            Ok(Ok(())) => Ok((client, events)),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(Error::Closed),
        }
    }

    /// Starts the client; it connects (and reconnects) in the background.
    /// Sends made before the first connection wait in the queue. Fails only
    /// if the queue file exists and cannot be read.
    pub fn start(config: ClientConfig) -> Result<(Client, Events), Error> {
        Client::launch(config, None)
    }

    fn launch(
        config: ClientConfig,
        first: Option<oneshot::Sender<Result<(), Error>>>,
    ) -> Result<(Client, Events), Error> {
        let loaded = match &config.queue_file {
            Some(path) => queue::load(path)?,
            None => Vec::new(),
        };
        let queue = Queue::new(config.queue_capacity, loaded);
        let (events_tx, events_rx) = mpsc::channel(config.event_buffer.max(1));
        let file = config.queue_file.clone();
        let shared = Arc::new(Shared {
            config,
            state: Mutex::new(State {
                rooms: Rooms::default(),
                queue,
                user: None,
                max_frame: DEFAULT_MAX_FRAME,
                closed: false,
                status: None,
            }),
            conn: watch::channel(None).0,
            queue_changed: Notify::new(),
            persist: Notify::new(),
            persisted: watch::channel(0).0,
            shutdown: watch::channel(false).0,
        });
        if let Some(path) = file {
            tokio::spawn(driver::persister(shared.clone(), path));
        }
        tokio::spawn(driver::run(shared.clone(), events_tx, first));
        Ok((
            Client {
                _guard: Arc::new(DropGuard(shared.clone())),
                shared,
            },
            Events { rx: events_rx },
        ))
    }

    /// Stops the client: closes the connection, fails waiting sends with
    /// [`Error::Closed`] (they stay in the queue file, if any), ends the events.
    pub fn shutdown(&self) {
        let _ = self.shared.shutdown.send(true);
    }

    /// The user id, once a connection was authenticated.
    pub fn user(&self) -> Option<UserId> {
        self.shared.state.lock().ok().and_then(|s| s.user.clone())
    }

    /// Whether a connection is up now.
    pub fn is_connected(&self) -> bool {
        self.shared.conn.borrow().is_some()
    }

    /// The highest stream seq delivered in `room` (persist it to resume
    /// after an app restart with [`Client::join_since`]).
    pub fn last_seq(&self, room: &RoomId) -> Option<u64> {
        self.shared.state.lock().ok()?.rooms.last_seq(room)
    }

    /// Sends waiting for their acknowledgement.
    pub fn queued(&self) -> usize {
        self.shared.state.lock().map_or(0, |s| s.queue.len())
    }

    // ---- connection and requests ----

    /// The live connection, waiting for one until `deadline`; `stale` is one
    /// known to be dead (skipped until the driver replaces it).
    async fn connection(
        &self,
        deadline: Instant,
        stale: Option<&Arc<Connection>>,
    ) -> Result<Arc<Connection>, Error> {
        let mut rx = self.shared.conn.subscribe();
        loop {
            if *self.shared.shutdown.borrow() {
                return Err(Error::Closed);
            }
            if let Some(c) = rx.borrow_and_update().clone() {
                if !stale.is_some_and(|s| Arc::ptr_eq(s, &c)) {
                    return Ok(c);
                }
            }
            tokio::select! {
                r = tokio::time::timeout_at(deadline, rx.changed()) => {
                    r.map_err(|_| Error::Timeout)?.map_err(|_| Error::Closed)?;
                }
                _ = async { let mut s = self.shared.shutdown.subscribe(); let _ = s.wait_for(|s| *s).await; } => {
                    return Err(Error::Closed);
                }
            }
        }
    }

    /// Sends `make(id)` and returns the reply. Safe-to-repeat requests
    /// (`idempotent`) are sent again on the next connection if this one drops;
    /// others fail with [`Error::Disconnected`].
    async fn call(
        &self,
        idempotent: bool,
        make: impl Fn(u64) -> ClientFrame,
    ) -> Result<ServerFrame, Error> {
        let deadline = Instant::now() + self.shared.config.request_timeout;
        let mut stale: Option<Arc<Connection>> = None;
        loop {
            let conn = self.connection(deadline, stale.as_ref()).await?;
            match tokio::time::timeout_at(deadline, conn.call(&make)).await {
                Err(_) => return Err(Error::Timeout),
                Ok(Ok(f)) => return Ok(f),
                Ok(Err(ConnError::Closed | ConnError::Io(_))) if idempotent => stale = Some(conn),
                Ok(Err(e)) => return Err(e.into()),
            }
        }
    }

    /// Any request, sent once (for frames without a typed method: `kick`,
    /// `ban`, invites, favorites, ...). `make` gets the request id.
    pub async fn request(&self, make: impl Fn(u64) -> ClientFrame) -> Result<ServerFrame, Error> {
        self.call(false, make).await
    }

    pub async fn create_room(&self, name: &str, private: bool) -> Result<Created, Error> {
        let f = |id| {
            ClientFrame::CreateRoom(req::CreateRoom {
                id,
                name: name.into(),
                private,
                description: None,
                room: None,
            })
        };
        match self.call(false, f).await? {
            ServerFrame::Created(c) => Ok(c),
            other => Err(unexpected(other)),
        }
    }

    /// The direct room of me and `user` (idempotent on the server).
    pub async fn start_direct(&self, user: &UserId) -> Result<Direct, Error> {
        let f = |id| {
            ClientFrame::StartDirect(req::StartDirect {
                id,
                user: user.clone(),
            })
        };
        match self.call(true, f).await? {
            ServerFrame::Direct(d) => Ok(d),
            other => Err(unexpected(other)),
        }
    }

    /// Follows `room`: subscribes now and after every reconnect (resuming
    /// from the last seq seen). A room followed before resumes from its last
    /// seq; a new one starts at the room's latest seq.
    pub async fn join(&self, room: &RoomId) -> Result<Joined, Error> {
        let since = self
            .shared
            .state
            .lock()
            .map_err(|_| Error::Closed)?
            .rooms
            .follow(room);
        self.join_inner(room, since).await
    }

    /// Follows `room` from `since` (a seq the app kept, e.g. across restarts):
    /// every stored event after it is delivered first.
    pub async fn join_since(&self, room: &RoomId, since: u64) -> Result<Joined, Error> {
        if let Ok(mut st) = self.shared.state.lock() {
            st.rooms.follow(room);
            st.rooms.start_at(room, since);
        }
        self.join_inner(room, Some(since)).await
    }

    async fn join_inner(&self, room: &RoomId, since: Option<u64>) -> Result<Joined, Error> {
        let f = |id| {
            ClientFrame::Join(req::Join {
                id,
                room: room.clone(),
                since,
                invite: None,
            })
        };
        match self.call(true, f).await {
            Ok(ServerFrame::Joined(j)) => {
                if since.is_none() {
                    if let Ok(mut st) = self.shared.state.lock() {
                        st.rooms.start_at(room, j.seq);
                    }
                }
                Ok(j)
            }
            Ok(other) => Err(unexpected(other)),
            Err(e) => {
                if matches!(e, Error::Server(_)) {
                    if let Ok(mut st) = self.shared.state.lock() {
                        st.rooms.unfollow(room);
                    }
                }
                Err(e)
            }
        }
    }

    /// Stops following `room` (membership stays: see `leave_room` in the spec).
    pub async fn leave(&self, room: &RoomId) -> Result<(), Error> {
        if let Ok(mut st) = self.shared.state.lock() {
            st.rooms.unfollow(room);
        }
        let f = |id| {
            ClientFrame::Leave(req::Leave {
                id,
                room: room.clone(),
            })
        };
        match self.call(true, f).await? {
            ServerFrame::Left(_) => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    /// Sends a text message and waits for its `sent` (across reconnects).
    pub async fn send(&self, room: &RoomId, body: impl Into<String>) -> Result<Sent, Error> {
        self.enqueue(OutgoingMessage::text(room, body)).await?.await
    }

    /// Queues a message (with a fresh `local_id`) and returns at once with a
    /// [`PendingSend`] to await the ack. Fails with [`Error::QueueFull`] when
    /// the queue is at capacity, [`Error::TooLarge`] above `max_frame`. With
    /// a queue file, returns once the message is written to it.
    pub async fn enqueue(&self, msg: OutgoingMessage) -> Result<PendingSend, Error> {
        let item = QueuedSend {
            local_id: queue::new_local_id(),
            room: msg.room,
            body: msg.body,
            kind: msg.kind,
            attachments: msg.attachments,
            reply_to: msg.reply_to,
        };
        let bytes = roomcast_protocol::encode(&item.frame(u64::MAX)).len() - HEADER_LEN;
        let (tx, rx): (Waiter, _) = oneshot::channel();
        let local_id = item.local_id.clone();
        let version = {
            let mut st = self.shared.state.lock().map_err(|_| Error::Closed)?;
            if st.closed {
                return Err(Error::Closed);
            }
            if bytes > st.max_frame {
                return Err(Error::TooLarge {
                    bytes,
                    max: st.max_frame,
                });
            }
            st.queue.push(item, Some(tx))?;
            st.queue.version
        };
        self.shared.queue_changed.notify_one();
        if self.shared.config.queue_file.is_some() {
            self.shared.persist.notify_one();
            let mut persisted = self.shared.persisted.subscribe();
            let wait = persisted.wait_for(|v| *v >= version);
            let _ = tokio::time::timeout(self.shared.config.request_timeout, wait).await;
        }
        Ok(PendingSend { local_id, rx })
    }

    /// A page of `room`'s messages in their latest state, oldest first: the
    /// newest `limit` (default 50), or those before seq `before`. Page back
    /// with `before = page.messages[0].seq` while `page.more`.
    pub async fn history(
        &self,
        room: &RoomId,
        before: Option<u64>,
        limit: Option<u32>,
    ) -> Result<HistoryPage, Error> {
        self.history_page(room, before, None, limit).await
    }

    /// A page of `room`'s messages with a seq above `after`, oldest first, in
    /// their latest state (`after = 0`: from the first). Page forward with
    /// `after = last message's seq` while `page.more` (newer ones exist).
    pub async fn history_after(
        &self,
        room: &RoomId,
        after: u64,
        limit: Option<u32>,
    ) -> Result<HistoryPage, Error> {
        self.history_page(room, None, Some(after), limit).await
    }

    async fn history_page(
        &self,
        room: &RoomId,
        before: Option<u64>,
        after: Option<u64>,
        limit: Option<u32>,
    ) -> Result<HistoryPage, Error> {
        let f = |id| {
            ClientFrame::History(req::History {
                id,
                room: room.clone(),
                before,
                after,
                limit,
            })
        };
        match self.call(true, f).await? {
            ServerFrame::History(h) => Ok(h),
            other => Err(unexpected(other)),
        }
    }

    /// Edits my message `seq` (within the edit window). Not repeated on a
    /// drop (a repeat would store the edit again).
    pub async fn edit(&self, room: &RoomId, seq: u64, body: &str) -> Result<OkReply, Error> {
        let f = |id| {
            ClientFrame::Edit(req::Edit {
                id,
                room: room.clone(),
                seq,
                body: body.into(),
            })
        };
        self.ok(false, f).await
    }

    pub async fn delete(&self, room: &RoomId, seq: u64) -> Result<OkReply, Error> {
        let f = |id| {
            ClientFrame::Delete(req::Delete {
                id,
                room: room.clone(),
                seq,
            })
        };
        self.ok(true, f).await
    }

    /// Adds (`on`) or removes a reaction.
    pub async fn react(
        &self,
        room: &RoomId,
        seq: u64,
        emoji: &str,
        on: bool,
    ) -> Result<OkReply, Error> {
        let f = |id| {
            ClientFrame::React(req::React {
                id,
                room: room.clone(),
                seq,
                emoji: emoji.into(),
                on,
            })
        };
        self.ok(true, f).await
    }

    /// Moves my read pointer to `seq`.
    pub async fn read(&self, room: &RoomId, seq: u64) -> Result<ReadAck, Error> {
        let f = |id| {
            ClientFrame::Read(req::Read {
                id,
                room: room.clone(),
                seq,
            })
        };
        match self.call(true, f).await? {
            ServerFrame::ReadAck(a) => Ok(a),
            other => Err(unexpected(other)),
        }
    }

    pub async fn receipts(&self, room: &RoomId, seq: u64) -> Result<ReceiptsReply, Error> {
        let f = |id| {
            ClientFrame::Receipts(req::Receipts {
                id,
                room: room.clone(),
                seq,
            })
        };
        match self.call(true, f).await? {
            ServerFrame::Receipts(r) => Ok(r),
            other => Err(unexpected(other)),
        }
    }

    /// Starts (`on`) or stops my typing indicator; fire and forget (no reply,
    /// dropped silently when offline, as typing is ephemeral).
    pub fn typing(&self, room: &RoomId, on: bool) -> Result<(), Error> {
        let conn = self.shared.conn.borrow().clone();
        match conn {
            Some(c) => c
                .send_frame(&ClientFrame::Typing(req::Typing {
                    id: None,
                    room: room.clone(),
                    on,
                }))
                .map_err(Error::from),
            None => Ok(()),
        }
    }

    /// My rooms with role, unread count and last message.
    pub async fn rooms(&self) -> Result<Vec<RoomSummary>, Error> {
        match self
            .call(true, |id| ClientFrame::Rooms(req::Rooms { id }))
            .await?
        {
            ServerFrame::Rooms(r) => Ok(r.rooms),
            other => Err(unexpected(other)),
        }
    }

    pub async fn members(&self, room: &RoomId) -> Result<MembersReply, Error> {
        let f = |id| {
            ClientFrame::Members(req::Members {
                id,
                room: room.clone(),
            })
        };
        match self.call(true, f).await? {
            ServerFrame::Members(m) => Ok(m),
            other => Err(unexpected(other)),
        }
    }

    /// The presence of `users`, in the order asked.
    pub async fn presence(&self, users: &[UserId]) -> Result<Vec<UserPresence>, Error> {
        self.presence_req(None, users).await
    }

    /// Sets this client's status (`Online` or `Away`). It is kept across
    /// reconnects: each new session (which starts `online`) is set to it again.
    pub async fn set_status(&self, status: Status) -> Result<(), Error> {
        if let Ok(mut st) = self.shared.state.lock() {
            st.status = Some(status);
        }
        self.presence_req(Some(status), &[]).await.map(|_| ())
    }

    async fn presence_req(
        &self,
        status: Option<Status>,
        users: &[UserId],
    ) -> Result<Vec<UserPresence>, Error> {
        let f = |id| {
            ClientFrame::Presence(req::Presence {
                id,
                status,
                users: users.to_vec(),
            })
        };
        match self.call(true, f).await? {
            ServerFrame::Presence(p) => Ok(p.users),
            other => Err(unexpected(other)),
        }
    }

    async fn ok(&self, idempotent: bool, f: impl Fn(u64) -> ClientFrame) -> Result<OkReply, Error> {
        match self.call(idempotent, f).await? {
            ServerFrame::Ok(o) => Ok(o),
            other => Err(unexpected(other)),
        }
    }
}

fn unexpected(f: ServerFrame) -> Error {
    Error::Unexpected(Box::new(f))
}
