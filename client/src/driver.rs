//! The task behind a [`crate::Client`]: connect (token, dial, `hello`), run a
//! session (re-join rooms with `since`, flush the offline queue, heartbeat,
//! turn pushes into de-duplicated [`Event`]s), and on any disconnect wait
//! out the backoff and do it again. The one place events are emitted from,
//! so a room's events and its `Resumed` come in order.

use crate::client::Shared;
use crate::conn::{ConnError, ConnOptions, Connection, Pushes};
use crate::error::{send_retryable, Error};
use crate::event::Event;
use crate::queue::{self, QueuedSend};
use futures_util::stream::FuturesUnordered;
use futures_util::StreamExt;
use roomcast_protocol::client::{self as req, ClientFrame};
use roomcast_protocol::ids::RoomId;
use roomcast_protocol::server::{ErrorFrame, Joined, Welcome};
use roomcast_protocol::types::Status;
use roomcast_protocol::{ErrorCode, ServerFrame};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinSet;

/// Pushes buffered per connection before the session loop takes them.
const PUSH_BUFFER: usize = 256;

enum SessionEnd {
    Shutdown,
    Closed(Option<ErrorFrame>),
}

/// Runs until shutdown, a fatal answer, or `max_attempts`; then emits `Closed`.
pub(crate) async fn run(
    shared: Arc<Shared>,
    events: mpsc::Sender<Event>,
    mut first: Option<oneshot::Sender<Result<(), Error>>>,
) {
    let mut shutdown = shared.shutdown.subscribe();
    let backoff = shared.config.backoff.clone();
    let mut attempt: u32 = 0;
    let mut generation = 0u64;
    let reason = loop {
        if *shutdown.borrow() {
            break "shut down".to_string();
        }
        let outcome = tokio::select! {
            r = tokio::time::timeout(shared.config.connect_timeout, connect_once(&shared)) => {
                r.unwrap_or(Err(Error::Timeout))
            }
            _ = stopped(&mut shutdown) => break "shut down".to_string(),
        };
        let retry_after = match outcome {
            Ok((conn, pushes, welcome)) => {
                if let Some(tx) = first.take() {
                    let _ = tx.send(Ok(()));
                }
                attempt = 0;
                generation += 1;
                let end = session(
                    &shared,
                    &events,
                    conn,
                    pushes,
                    welcome,
                    generation,
                    &mut shutdown,
                )
                .await;
                let close = match end {
                    SessionEnd::Shutdown => break "shut down".to_string(),
                    SessionEnd::Closed(close) => close,
                };
                if let Some(e) = close.as_ref().filter(|e| fatal(e.code)) {
                    break format!("server closed: {} {}", e.code, e.message);
                }
                let retry_after = close
                    .as_ref()
                    .and_then(|e| e.retry_after_ms)
                    .map(Duration::from_millis);
                let retry_in = backoff.delay(0, retry_after);
                let (code, message) = match close {
                    Some(e) => (Some(e.code), e.message),
                    None => (None, "connection lost".to_string()),
                };
                tracing::info!(?code, %message, ?retry_in, "disconnected; resuming");
                let _ = events
                    .send(Event::Disconnected {
                        code,
                        message,
                        retry_in,
                    })
                    .await;
                retry_in
            }
            Err(error) => {
                if let Some(tx) = first.take() {
                    let _ = tx.send(Err(error));
                    break "the first connection failed".to_string();
                }
                if error.code().is_some_and(fatal) {
                    break format!("connect: {error}");
                }
                attempt = attempt.saturating_add(1);
                if backoff.max_attempts.is_some_and(|max| attempt >= max) {
                    break format!("gave up after {attempt} attempts: {error}");
                }
                let hint = match &error {
                    Error::Server(e) => e.retry_after_ms.map(Duration::from_millis),
                    _ => None,
                };
                let retry_in = backoff.delay(attempt, hint);
                tracing::warn!(%error, ?retry_in, "reconnect failed");
                let _ = events
                    .send(Event::ReconnectFailed {
                        error: Box::new(error),
                        retry_in,
                    })
                    .await;
                retry_in
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(retry_after) => {}
            _ = stopped(&mut shutdown) => break "shut down".to_string(),
        }
    };
    shared.conn.send_replace(None);
    if let Ok(mut st) = shared.state.lock() {
        st.closed = true;
        st.queue.close_waiters();
    }
    let _ = shared.shutdown.send(true);
    let _ = events.send(Event::Closed { reason }).await;
}

/// Resolves once the client is shut down.
pub(crate) async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

/// Answers that no reconnect can fix.
fn fatal(code: ErrorCode) -> bool {
    code == ErrorCode::UnsupportedVersion
}

async fn connect_once(shared: &Shared) -> Result<(Connection, Pushes, Welcome), Error> {
    let token = shared.config.token.get().await.map_err(Error::Token)?;
    let options = ConnOptions {
        event_buffer: Some(PUSH_BUFFER),
    };
    let mut conn = Connection::connect_with(&shared.config.endpoint, &options)
        .await
        .map_err(Error::Connect)?;
    let mut pushes = conn.take_pushes().ok_or(Error::Closed)?;
    match conn.hello_with(&token, shared.config.sync_rooms).await {
        Ok(welcome) => Ok((conn, pushes, welcome)),
        Err(ConnError::Closed) => {
            // Refused before `hello` (`server_busy`): the reason is a closing push.
            while let Ok(Some(f)) =
                tokio::time::timeout(Duration::from_secs(1), pushes.next()).await
            {
                if let ServerFrame::Error(e) = f {
                    return Err(Error::Server(e));
                }
            }
            Err(Error::Disconnected)
        }
        Err(e) => Err(e.into()),
    }
}

type RejoinResult = (RoomId, Option<u64>, Result<Joined, ConnError>);

async fn session(
    shared: &Arc<Shared>,
    events: &mpsc::Sender<Event>,
    conn: Connection,
    mut pushes: Pushes,
    welcome: Welcome,
    generation: u64,
    shutdown: &mut watch::Receiver<bool>,
) -> SessionEnd {
    let conn = Arc::new(conn);
    let (rejoin, status) = match shared.state.lock() {
        Ok(mut st) => {
            st.user = Some(welcome.user.clone());
            st.max_frame = welcome.max_frame as usize;
            (st.rooms.to_rejoin(), st.status)
        }
        Err(_) => return SessionEnd::Shutdown,
    };
    let _ = events
        .send(Event::Connected {
            user: welcome.user.clone(),
            session: welcome.session.clone(),
            reconnect: generation > 1,
        })
        .await;
    shared.conn.send_replace(Some(conn.clone()));

    let mut tasks = JoinSet::new();
    // A status the app chose (away) holds across reconnects.
    if let Some(status) = status.filter(|s| *s != Status::Online) {
        let c = conn.clone();
        tasks.spawn(async move {
            let set = |id| {
                ClientFrame::Presence(req::Presence {
                    id,
                    status: Some(status),
                    users: Vec::new(),
                })
            };
            if let Err(e) = c.call(set).await {
                tracing::debug!(error = %e, "restoring the status failed");
            }
        });
    }
    let (join_tx, mut join_rx) = mpsc::unbounded_channel::<RejoinResult>();
    for (room, since) in rejoin {
        let (c, tx) = (conn.clone(), join_tx.clone());
        tasks.spawn(async move {
            let r = rejoin_room(&c, &room, since).await;
            let _ = tx.send((room, since, r));
        });
    }
    tasks.spawn(flusher(
        shared.clone(),
        conn.clone(),
        generation,
        events.clone(),
    ));
    tasks.spawn(heartbeat(
        conn.clone(),
        Duration::from_millis(welcome.heartbeat_ms),
    ));

    let mut close = None;
    let end = loop {
        tokio::select! {
            _ = stopped(shutdown) => break SessionEnd::Shutdown,
            Some((room, since, r)) = join_rx.recv() => {
                on_rejoin(shared, events, room, since, r).await;
            }
            f = pushes.next() => match f {
                None => break SessionEnd::Closed(close),
                Some(ServerFrame::Error(e)) if e.close => close = Some(e),
                Some(f) => on_push(shared, events, &welcome, f).await,
            },
        }
    };
    shared.conn.send_replace(None);
    conn.close();
    tasks.abort_all();
    end
}

/// `join {room, since}`, waiting out `rate_limited` (a client following many rooms).
async fn rejoin_room(
    conn: &Connection,
    room: &RoomId,
    since: Option<u64>,
) -> Result<Joined, ConnError> {
    for _ in 0..20 {
        match conn.join_from(room, since).await {
            Err(ConnError::Server(e)) if e.code == ErrorCode::RateLimited => {
                let wait = e.retry_after_ms.unwrap_or(200).clamp(1, 10_000);
                tokio::time::sleep(Duration::from_millis(wait)).await;
            }
            other => return other,
        }
    }
    conn.join_from(room, since).await
}

async fn on_rejoin(
    shared: &Shared,
    events: &mpsc::Sender<Event>,
    room: RoomId,
    since: Option<u64>,
    r: Result<Joined, ConnError>,
) {
    let ev = match r {
        Ok(joined) => {
            let Ok(mut st) = shared.state.lock() else {
                return;
            };
            match since {
                None => {
                    st.rooms.start_at(&room, joined.seq);
                    None
                }
                Some(from) => {
                    let complete = joined.complete.unwrap_or(true);
                    st.rooms.resuming(&room, from, joined.seq, complete);
                    st.rooms.caught_up(&room).map(resumed)
                }
            }
        }
        Err(ConnError::Server(e)) => {
            if let Ok(mut st) = shared.state.lock() {
                st.rooms.unfollow(&room);
            }
            Some(Event::JoinFailed {
                room,
                error: Box::new(Error::Server(e)),
            })
        }
        Err(_) => None,
    };
    if let Some(ev) = ev {
        let _ = events.send(ev).await;
    }
}

fn resumed(c: crate::rooms::CaughtUp) -> Event {
    Event::Resumed {
        room: c.room,
        from: c.from,
        to: c.to,
        complete: c.complete,
    }
}

async fn on_push(shared: &Shared, events: &mpsc::Sender<Event>, welcome: &Welcome, f: ServerFrame) {
    let (room, seq) = match &f {
        ServerFrame::Msg(m) => (m.room.clone(), m.seq),
        ServerFrame::Edit(e) => (e.room.clone(), e.seq),
        ServerFrame::Delete(e) => (e.room.clone(), e.seq),
        ServerFrame::Reaction(e) => (e.room.clone(), e.seq),
        _ => {
            for ev in other_push(shared, welcome, f) {
                let _ = events.send(ev).await;
            }
            return;
        }
    };
    let (fresh, caught_up) = match shared.state.lock() {
        Ok(mut st) => {
            let fresh = st.rooms.accept(&room, seq);
            (fresh, fresh.then(|| st.rooms.caught_up(&room)).flatten())
        }
        Err(_) => return,
    };
    if !fresh {
        tracing::debug!(%room, seq, "duplicate stream event dropped");
        return;
    }
    let ev = match f {
        ServerFrame::Msg(m) => Event::Message(m),
        ServerFrame::Edit(e) => Event::Edit(e),
        ServerFrame::Delete(e) => Event::Delete(e),
        ServerFrame::Reaction(e) => Event::Reaction(e),
        _ => return,
    };
    let _ = events.send(ev).await;
    if let Some(c) = caught_up {
        let _ = events.send(resumed(c)).await;
    }
}

/// Pushes that are not stream events (ephemeral, membership, snapshots).
fn other_push(shared: &Shared, welcome: &Welcome, f: ServerFrame) -> Vec<Event> {
    let unfollow = |room: &RoomId| {
        if let Ok(mut st) = shared.state.lock() {
            st.rooms.unfollow(room);
        }
    };
    match f {
        ServerFrame::Typing(t) => vec![Event::Typing(t)],
        ServerFrame::Presence(p) if p.id.is_none() => {
            p.users.into_iter().map(Event::Presence).collect()
        }
        ServerFrame::Read(r) => vec![Event::Read(r)],
        ServerFrame::MemberJoined(m) => vec![Event::MemberJoined(m)],
        ServerFrame::MemberLeft(m) => {
            if m.user == welcome.user {
                unfollow(&m.room);
            }
            vec![Event::MemberLeft(m)]
        }
        ServerFrame::RoleChanged(r) => vec![Event::RoleChanged(r)],
        ServerFrame::RoomUpdated(r) => vec![Event::RoomUpdated(r)],
        ServerFrame::RoomDeleted(r) => {
            unfollow(&r.room);
            vec![Event::RoomDeleted(r)]
        }
        ServerFrame::Rooms(r) if r.id.is_none() => vec![Event::RoomList(r.rooms)],
        ServerFrame::Error(e) => vec![Event::ServerError(e)],
        // Pongs of id-less pings, replies nobody waits for any more.
        _ => Vec::new(),
    }
}

/// Writes queued sends on this connection, in queue order, up to
/// `send_window` ahead of their acknowledgements, and settles each answer.
async fn flusher(
    shared: Arc<Shared>,
    conn: Arc<Connection>,
    generation: u64,
    events: mpsc::Sender<Event>,
) {
    let window = shared.config.send_window.max(1);
    let mut inflight = FuturesUnordered::new();
    loop {
        let (batch, next_retry) = match shared.state.lock() {
            Ok(mut st) => {
                let room = window.saturating_sub(inflight.len());
                let batch = if room > 0 {
                    st.queue.take_unsent(generation, room, Instant::now())
                } else {
                    Vec::new()
                };
                (batch, st.queue.next_retry())
            }
            Err(_) => return,
        };
        for item in batch {
            let c = conn.clone();
            inflight.push(async move {
                let r = c.call(|id| item.frame(id)).await;
                (item, r)
            });
        }
        let retry = async {
            match next_retry {
                Some(t) => tokio::time::sleep_until(t.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            Some((item, r)) = inflight.next(), if !inflight.is_empty() => {
                if !settle(&shared, &events, item, r).await {
                    return;
                }
            }
            _ = shared.queue_changed.notified() => {}
            _ = retry => {}
        }
    }
}

/// Applies a send's answer to the queue; false once the connection is gone.
async fn settle(
    shared: &Shared,
    events: &mpsc::Sender<Event>,
    item: QueuedSend,
    r: Result<ServerFrame, ConnError>,
) -> bool {
    let ev = {
        let Ok(mut st) = shared.state.lock() else {
            return false;
        };
        match r {
            Ok(ServerFrame::Sent(sent)) => st
                .queue
                .ack(&item.local_id, sent)
                .err()
                .map(Event::SendAcked),
            Err(ConnError::Server(e)) if send_retryable(e.code) => {
                let wait = Duration::from_millis(e.retry_after_ms.unwrap_or(1000).clamp(1, 60_000));
                st.queue.retry(&item.local_id, Instant::now() + wait);
                None
            }
            Err(ConnError::Closed | ConnError::Io(_)) => return false,
            Err(e) => {
                let error = Error::from(e);
                st.queue
                    .fail(&item.local_id, error)
                    .map(|(room, error)| Event::SendFailed {
                        local_id: item.local_id.clone(),
                        room,
                        error: Box::new(error),
                    })
            }
            Ok(other) => st
                .queue
                .fail(&item.local_id, Error::Unexpected(Box::new(other)))
                .map(|(room, error)| Event::SendFailed {
                    local_id: item.local_id.clone(),
                    room,
                    error: Box::new(error),
                }),
        }
    };
    shared.persist.notify_one();
    if let Some(ev) = ev {
        let _ = events.send(ev).await;
    }
    true
}

/// Sends `ping` every `heartbeat_ms` (the protocol's keep-alive) and closes a
/// connection silent for 2.5 × that (a dead path: the next one resumes).
async fn heartbeat(conn: Arc<Connection>, every: Duration) {
    let every = every.max(Duration::from_millis(100));
    let mut tick = tokio::time::interval(every);
    tick.tick().await;
    loop {
        tick.tick().await;
        if conn
            .send_frame(&ClientFrame::Ping(req::Ping { id: None }))
            .is_err()
        {
            return;
        }
        if conn.since_last_frame() > every * 5 / 2 {
            tracing::warn!(
                "no frame from the server for {:?}; reconnecting",
                conn.since_last_frame()
            );
            conn.close();
            return;
        }
    }
}

/// Mirrors the queue to its file after changes (coalesced), until shutdown.
pub(crate) async fn persister(shared: Arc<Shared>, path: std::path::PathBuf) {
    let mut shutdown = shared.shutdown.subscribe();
    loop {
        let stop = tokio::select! {
            _ = shared.persist.notified() => false,
            _ = stopped(&mut shutdown) => true,
        };
        let snapshot = match shared.state.lock() {
            Ok(st) => (st.queue.version, st.queue.snapshot()),
            Err(_) => return,
        };
        let (version, items) = snapshot;
        let p = path.clone();
        match tokio::task::spawn_blocking(move || queue::save(&p, &items)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!("writing the queue file {}: {e}", path.display()),
            Err(e) => tracing::error!("queue file writer: {e}"),
        }
        shared.persisted.send_replace(version);
        if stop {
            return;
        }
    }
}
