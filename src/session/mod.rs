//! The per-connection protocol state machine, with no I/O.
//!
//! A transport driver feeds it frame payloads and the time; it answers with
//! one [`Output`] per input: a frame to send, a validated request to dispatch,
//! an admission to confirm, or a close. Deadlines (hello, idle, away) come
//! from [`Session::deadline`] and fire through [`Session::handle_timeout`];
//! automatic presence changes (away after inactivity, online again on
//! activity) are taken with [`Session::poll_status`]. The same machine runs
//! under every transport and in plain unit tests.

use crate::auth::Authenticator;
use crate::ids::{RoomId, SessionId, UserId};
use crate::proto::client::ClientFrame;
use crate::proto::server::{Pong, Welcome};
use crate::proto::types::Status;
use crate::proto::{ErrorCode, ServerFrame, WireError, PROTOCOL_VERSION};
use crate::ratelimit::{Decision, Gcra};
use std::collections::HashSet;
use std::time::{Duration, Instant};

mod rules;

pub use rules::*;

/// Largest history page.
pub const MAX_HISTORY_LIMIT: u32 = 200;
/// History page size when `limit` is absent.
pub const DEFAULT_HISTORY_LIMIT: u32 = 50;
/// Largest public room directory page.
pub const MAX_DIRECTORY_LIMIT: u32 = 100;

#[derive(Clone, Debug)]
pub struct SessionLimits {
    pub hello_timeout: Duration,
    pub heartbeat: Duration,
    pub idle_timeout: Duration,
    pub max_frame: usize,
    pub max_body_chars: usize,
    pub max_attachment_bytes: u64,
    /// Inactivity after which the session turns away by itself (None: never).
    pub away_after: Option<Duration>,
    /// `ping` rate of this connection (None: unlimited).
    pub ping_rate: Option<crate::config::RateSpec>,
    /// Most rooms this connection may be joined to at once.
    pub max_joined: usize,
}

impl SessionLimits {
    pub fn from_config(c: &crate::config::Config) -> Self {
        Self {
            hello_timeout: c.hello_timeout(),
            heartbeat: c.heartbeat(),
            idle_timeout: c.idle_timeout(),
            max_frame: c.max_frame,
            max_body_chars: c.max_body_chars,
            max_attachment_bytes: c.max_attachment_bytes,
            away_after: (c.presence_away_after_ms > 0)
                .then(|| Duration::from_millis(c.presence_away_after_ms)),
            ping_rate: (!c.no_rate_limits).then_some(c.limit_ping),
            max_joined: c.max_memberships_per_user,
        }
    }
}

#[derive(Debug, PartialEq)]
pub enum Output {
    /// Nothing to do.
    None,
    /// Send this frame.
    Reply(ServerFrame),
    /// `hello` verified: admit `user` (connect rate limit, presence), then send
    /// [`Session::welcome`]. The session is already active.
    Admit {
        id: Option<u64>,
        user: UserId,
        sync: bool,
    },
    /// Dispatch this validated request (rate limits, routers).
    Request(ClientFrame),
    /// Send this error with `close: true`, then close.
    Close(WireError),
}

#[derive(Debug)]
enum State {
    AwaitingHello { deadline: Instant },
    Active { user: UserId },
    Closed,
}

#[derive(Debug)]
pub struct Session {
    id: SessionId,
    limits: SessionLimits,
    state: State,
    last_rx: Instant,
    /// Last request other than a heartbeat or a presence query.
    last_active: Instant,
    /// The status the client chose (online unless it said away).
    chosen: Status,
    /// Away because of inactivity (the client chose online).
    auto_away: bool,
    /// An automatic status change not yet taken by the driver.
    status_change: Option<Status>,
    joined: HashSet<RoomId>,
    ping_limit: Option<Gcra>,
}

impl Session {
    pub fn new(id: SessionId, limits: SessionLimits, now: Instant) -> Self {
        let deadline = now + limits.hello_timeout;
        let ping_limit = limits.ping_rate.map(Gcra::new);
        Self {
            id,
            limits,
            state: State::AwaitingHello { deadline },
            last_rx: now,
            last_active: now,
            chosen: Status::Online,
            auto_away: false,
            status_change: None,
            joined: HashSet::new(),
            ping_limit,
        }
    }

    pub fn id(&self) -> SessionId {
        self.id
    }

    pub fn user(&self) -> Option<&UserId> {
        match &self.state {
            State::Active { user } => Some(user),
            _ => None,
        }
    }

    pub fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed)
    }

    /// Rooms this session asked to join and has not left (for cleanup on close).
    pub fn joined(&self) -> impl Iterator<Item = &RoomId> {
        self.joined.iter()
    }

    /// The next instant [`handle_timeout`](Self::handle_timeout) must run.
    pub fn deadline(&self) -> Instant {
        match &self.state {
            State::AwaitingHello { deadline } => *deadline,
            _ => {
                let idle = self.last_rx + self.limits.idle_timeout;
                match self.away_deadline() {
                    Some(away) => away.min(idle),
                    None => idle,
                }
            }
        }
    }

    /// When the session turns away by itself, if it will.
    fn away_deadline(&self) -> Option<Instant> {
        let after = self.limits.away_after?;
        let watching = matches!(self.state, State::Active { .. })
            && self.chosen == Status::Online
            && !self.auto_away;
        watching.then(|| self.last_active + after)
    }

    /// An automatic status change for the driver to apply to presence: `Away`
    /// after `away_after` without activity, `Online` at the next activity.
    pub fn poll_status(&mut self) -> Option<Status> {
        self.status_change.take()
    }

    /// A request that shows the user is there.
    fn active(&mut self, now: Instant) {
        self.last_active = now;
        if self.auto_away {
            self.auto_away = false;
            self.status_change = Some(Status::Online);
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) -> Output {
        if self.away_deadline().is_some_and(|d| now >= d) {
            self.auto_away = true;
            self.status_change = Some(Status::Away);
        }
        match &self.state {
            State::AwaitingHello { deadline } if now >= *deadline => self.close(WireError::new(
                ErrorCode::HelloTimeout,
                format!(
                    "no hello within {} ms",
                    self.limits.hello_timeout.as_millis()
                ),
            )),
            State::Active { .. } if now >= self.last_rx + self.limits.idle_timeout => {
                self.close(WireError::new(
                    ErrorCode::IdleTimeout,
                    format!(
                        "nothing received for {} ms (heartbeat is {} ms)",
                        self.limits.idle_timeout.as_millis(),
                        self.limits.heartbeat.as_millis()
                    ),
                ))
            }
            _ => Output::None,
        }
    }

    /// A frame header declared `len` bytes, above `max_frame`.
    pub fn handle_oversize(&mut self, len: usize) -> Output {
        // Like every input after the close: nothing more (fuzz/session_ops).
        if self.is_closed() {
            return Output::None;
        }
        self.close(WireError::new(
            ErrorCode::FrameTooLarge,
            format!(
                "frame of {len} bytes exceeds max_frame {}",
                self.limits.max_frame
            ),
        ))
    }

    /// The `welcome` reply for an admitted session.
    pub fn welcome(&self, id: Option<u64>, user: UserId) -> ServerFrame {
        ServerFrame::Welcome(Welcome {
            id,
            v: PROTOCOL_VERSION,
            user,
            session: self.id.to_string(),
            heartbeat_ms: self.limits.heartbeat.as_millis() as u64,
            max_frame: self.limits.max_frame as u64,
            server: concat!("roomcast/", env!("CARGO_PKG_VERSION")).to_string(),
        })
    }

    fn close(&mut self, e: WireError) -> Output {
        self.state = State::Closed;
        Output::Close(e)
    }

    pub fn handle_frame(&mut self, payload: &[u8], now: Instant, auth: &Authenticator) -> Output {
        if self.is_closed() {
            return Output::None;
        }
        self.last_rx = now;
        let frame = match ClientFrame::decode(payload) {
            Ok(f) => f,
            Err(e) => {
                // Before hello nothing is tolerated: answer and close.
                if matches!(self.state, State::AwaitingHello { .. }) {
                    return self.close(e.error);
                }
                return Output::Reply(ServerFrame::error(e.id, e.error));
            }
        };
        match &self.state {
            State::AwaitingHello { .. } => self.on_hello(frame, auth),
            State::Active { .. } => match self.on_request(frame, now) {
                Ok(out) => out,
                Err((id, e)) => Output::Reply(ServerFrame::error(id, e)),
            },
            State::Closed => Output::None,
        }
    }

    fn on_hello(&mut self, frame: ClientFrame, auth: &Authenticator) -> Output {
        let ClientFrame::Hello(hello) = frame else {
            return self.close(WireError::new(
                ErrorCode::Unauthorized,
                format!("send hello first (got {})", frame.type_name()),
            ));
        };
        if hello.v != PROTOCOL_VERSION {
            return self.close(WireError::new(
                ErrorCode::UnsupportedVersion,
                format!(
                    "protocol version {} is not supported; this server speaks {PROTOCOL_VERSION}",
                    hello.v
                ),
            ));
        }
        if hello.token.is_empty() {
            return self.close(WireError::new(ErrorCode::Unauthorized, "token: missing"));
        }
        match auth.verify(&hello.token) {
            Ok(user) => {
                self.state = State::Active { user: user.clone() };
                Output::Admit {
                    id: hello.id,
                    user,
                    sync: hello.sync,
                }
            }
            Err(e) => self.close(WireError::new(ErrorCode::Unauthorized, e.to_string())),
        }
    }

    fn on_request(
        &mut self,
        mut frame: ClientFrame,
        now: Instant,
    ) -> Result<Output, (Option<u64>, WireError)> {
        let id = frame.id();
        match &frame {
            // Heartbeats (apps send them by themselves) and presence queries
            // do not show that the user is there.
            ClientFrame::Ping(_) | ClientFrame::Presence(_) => {}
            _ => self.active(now),
        }
        match &frame {
            ClientFrame::Hello(_) => {
                return Err((id, WireError::bad_request("already authenticated")))
            }
            ClientFrame::Ping(p) => {
                if let Some(Decision::Deny { retry_after }) =
                    self.ping_limit.as_mut().map(|g| g.check(now))
                {
                    let ms = (retry_after.as_micros().div_ceil(1000) as u64).max(1);
                    return Err((
                        id,
                        WireError::new(
                            ErrorCode::RateLimited,
                            format!("ping rate limit; retry in {ms} ms"),
                        )
                        .with_retry(ms),
                    ));
                }
                return Ok(Output::Reply(ServerFrame::Pong(Pong { id: p.id })));
            }
            _ => {}
        }
        let State::Active { user } = &self.state else {
            return Err((
                id,
                WireError::new(ErrorCode::Unauthorized, "send hello first"),
            ));
        };
        check_request(&mut frame, user, &self.limits).map_err(|e| (id, e))?;
        // The session's own bookkeeping, once the request is known to be good.
        match &frame {
            ClientFrame::Join(j) => {
                if !self.joined.contains(&j.room) && self.joined.len() >= self.limits.max_joined {
                    return Err((
                        id,
                        WireError::new(
                            ErrorCode::LimitExceeded,
                            format!(
                                "room: this connection is joined to {} rooms, the most allowed; leave one first",
                                self.joined.len()
                            ),
                        ),
                    ));
                }
                self.joined.insert(j.room.clone());
            }
            ClientFrame::Leave(l) => {
                self.joined.remove(&l.room);
            }
            ClientFrame::LeaveRoom(l) | ClientFrame::DeleteRoom(l) => {
                self.joined.remove(&l.room);
            }
            ClientFrame::Presence(p) => {
                if let Some(status) = p.status {
                    // The client's choice replaces any automatic status.
                    self.chosen = status;
                    self.auto_away = false;
                    self.status_change = None;
                    self.last_active = now;
                }
            }
            _ => {}
        }
        Ok(Output::Request(frame))
    }
}

/// The field rules of one request from `user`, shared by every transport and
/// the REST API: refuses bad values with a `bad_request` that names the field,
/// and normalizes what it accepts (trimmed names, default page sizes).
pub fn check_request(
    frame: &mut ClientFrame,
    user: &UserId,
    limits: &SessionLimits,
) -> Result<(), WireError> {
    let bad = |m: String| WireError::bad_request(m);
    let max_body = limits.max_body_chars;
    match frame {
        ClientFrame::Hello(_) | ClientFrame::Ping(_) => {}
        ClientFrame::CreateRoom(c) => {
            if c.room
                .as_ref()
                .is_some_and(crate::router::is_direct_room_id)
            {
                return Err(bad(
                    "room: ids of the form d + 40 hex digits are reserved for direct rooms".into(),
                ));
            }
            c.name = room_name(&c.name).map_err(bad)?;
            if let Some(d) = &c.description {
                description(d).map_err(bad)?;
            }
        }
        ClientFrame::Join(j) => {
            if j.invite
                .as_ref()
                .is_some_and(|c| c.is_empty() || c.len() > MAX_INVITE_LEN)
            {
                return Err(bad(format!("invite: must be 1 to {MAX_INVITE_LEN} bytes")));
            }
        }
        ClientFrame::Send(s) => {
            let caption_only = !s.kind.is_text();
            body("body", &s.body, max_body, caption_only).map_err(bad)?;
            if let Some(l) = &s.local_id {
                local_id(l).map_err(bad)?;
            }
            attachments(s.kind, &s.attachments, limits.max_attachment_bytes).map_err(bad)?;
            if s.reply_to == Some(0) {
                return Err(bad("reply_to: must be at least 1".into()));
            }
        }
        ClientFrame::Edit(e) => body("body", &e.body, max_body, true).map_err(bad)?,
        ClientFrame::React(r) => emoji(&r.emoji).map_err(bad)?,
        ClientFrame::History(h) => {
            let limit = h.limit.unwrap_or(DEFAULT_HISTORY_LIMIT);
            if limit == 0 || limit > MAX_HISTORY_LIMIT {
                return Err(bad(format!("limit: must be 1 to {MAX_HISTORY_LIMIT}")));
            }
            h.limit = Some(limit);
            if h.before == Some(0) {
                return Err(bad("before: must be at least 1".into()));
            }
            if h.before.is_some() && h.after.is_some() {
                return Err(bad("before, after: give at most one".into()));
            }
        }
        ClientFrame::PublicRooms(p) => {
            let limit = p.limit.unwrap_or(50);
            if limit == 0 || limit > MAX_DIRECTORY_LIMIT {
                return Err(bad(format!("limit: must be 1 to {MAX_DIRECTORY_LIMIT}")));
            }
            p.limit = Some(limit);
            if let Some(prefix) = &p.prefix {
                directory_prefix(prefix).map_err(bad)?;
            }
            if p.after
                .as_ref()
                .is_some_and(|a| a.len() > 512 || hex::decode(a).is_err())
            {
                return Err(bad("after: not a cursor from a previous page".into()));
            }
        }
        ClientFrame::UpdateRoom(u) => {
            if let Some(n) = &u.name {
                u.name = Some(room_name(n).map_err(bad)?);
            }
            if let Some(d) = &u.description {
                description(d).map_err(bad)?;
            }
            if u.name.is_none() && u.description.is_none() && u.private.is_none() {
                return Err(bad(
                    "nothing to change: give name, description or private".into()
                ));
            }
        }
        ClientFrame::Presence(p) => {
            if p.status == Some(crate::proto::types::Status::Offline) {
                return Err(bad(
                    "status: set online or away (disconnect to go offline)".into()
                ));
            }
            if p.users.len() > 1000 {
                return Err(bad("users: at most 1000 per query".into()));
            }
            if p.status.is_none() && p.users.is_empty() {
                return Err(bad("give status to set, or users to query".into()));
            }
        }
        ClientFrame::StartDirect(d) => {
            if d.user.as_str() == user.public() {
                return Err(bad("user: a direct room needs another user".into()));
            }
        }
        ClientFrame::Favorite(f) => {
            if f.room.is_some() == f.user.is_some() {
                return Err(bad("give exactly one of room or user".into()));
            }
        }
        ClientFrame::CreateInvite(c) => {
            if c.max_uses == Some(0) || c.expires_in_s == Some(0) {
                return Err(bad("max_uses and expires_in_s must be positive".into()));
            }
        }
        ClientFrame::Delete(_)
        | ClientFrame::Leave(_)
        | ClientFrame::LeaveRoom(_)
        | ClientFrame::DeleteRoom(_)
        | ClientFrame::Read(_)
        | ClientFrame::Receipts(_)
        | ClientFrame::Typing(_)
        | ClientFrame::Rooms(_)
        | ClientFrame::Members(_)
        | ClientFrame::Kick(_)
        | ClientFrame::Ban(_)
        | ClientFrame::Unban(_)
        | ClientFrame::SetRole(_)
        | ClientFrame::Transfer(_)
        | ClientFrame::Invites(_)
        | ClientFrame::RevokeInvite(_)
        | ClientFrame::Favorites(_) => {}
    }
    // Last, on the plain ids the rules above checked: the sender's tenant.
    crate::tenant::scope_request(frame, user)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn limits() -> SessionLimits {
        SessionLimits {
            hello_timeout: Duration::from_secs(10),
            heartbeat: Duration::from_secs(15),
            idle_timeout: Duration::from_secs(30),
            max_frame: 1024,
            max_body_chars: 10,
            max_attachment_bytes: 1000,
            away_after: None,
            ping_rate: Some("2:3".parse().unwrap()),
            max_joined: 3,
        }
    }

    fn error_of(out: Output) -> crate::proto::server::ErrorFrame {
        match out {
            Output::Reply(ServerFrame::Error(e)) => e,
            other => panic!("expected an error reply, got {other:?}"),
        }
    }

    #[test]
    fn pings_have_a_rate() {
        let t0 = Instant::now();
        let mut s = active(t0);
        for i in 0..3 {
            let out = s.handle_frame(&p(json!({"t": "ping", "id": i})), t0, &auth());
            assert!(
                matches!(out, Output::Reply(ServerFrame::Pong(_))),
                "{out:?}"
            );
        }
        let e = error_of(s.handle_frame(&p(json!({"t": "ping", "id": 9})), t0, &auth()));
        assert_eq!(e.code, ErrorCode::RateLimited);
        let retry = e.retry_after_ms.expect("a retry hint");
        assert!((1..=500).contains(&retry), "{retry}");
        let later = t0 + Duration::from_millis(retry);
        let out = s.handle_frame(&p(json!({"t": "ping", "id": 10})), later, &auth());
        assert!(
            matches!(out, Output::Reply(ServerFrame::Pong(_))),
            "{out:?}"
        );
    }

    #[test]
    fn joined_rooms_per_connection_are_capped() {
        let t0 = Instant::now();
        let mut s = active(t0);
        for r in ["a", "b", "c", "a"] {
            let out = s.handle_frame(&p(json!({"t": "join", "id": 2, "room": r})), t0, &auth());
            assert!(matches!(out, Output::Request(_)), "{out:?}");
        }
        let e =
            error_of(s.handle_frame(&p(json!({"t": "join", "id": 3, "room": "d"})), t0, &auth()));
        assert_eq!(e.code, ErrorCode::LimitExceeded);
        let out = s.handle_frame(&p(json!({"t": "leave", "id": 4, "room": "a"})), t0, &auth());
        assert!(matches!(out, Output::Request(_)), "{out:?}");
        let out = s.handle_frame(&p(json!({"t": "join", "id": 5, "room": "d"})), t0, &auth());
        assert!(
            matches!(out, Output::Request(_)),
            "leaving frees a slot: {out:?}"
        );
    }

    fn p(v: serde_json::Value) -> Vec<u8> {
        rmp_serde::to_vec_named(&v).unwrap()
    }

    fn auth() -> Authenticator {
        Authenticator::hs256(b"0123456789abcdef")
    }

    fn active(now: Instant) -> Session {
        let a = auth();
        let mut s = Session::new(SessionId(1), limits(), now);
        let token = a.mint("alice", 60).unwrap();
        let out = s.handle_frame(
            &p(json!({"t": "hello", "v": 1, "token": token, "id": 1})),
            now,
            &a,
        );
        assert!(
            matches!(
                out,
                Output::Admit {
                    id: Some(1),
                    sync: false,
                    ..
                }
            ),
            "{out:?}"
        );
        s
    }

    #[test]
    fn hello_deadline_closes() {
        let t0 = Instant::now();
        let mut s = Session::new(SessionId(1), limits(), t0);
        assert_eq!(s.deadline(), t0 + Duration::from_secs(10));
        assert_eq!(s.handle_timeout(t0 + Duration::from_secs(9)), Output::None);
        let out = s.handle_timeout(t0 + Duration::from_secs(10));
        assert!(matches!(
            out,
            Output::Close(WireError {
                code: ErrorCode::HelloTimeout,
                ..
            })
        ));
        assert!(s.is_closed());
    }

    #[test]
    fn requests_before_hello_close_unauthorized() {
        let t0 = Instant::now();
        let mut s = Session::new(SessionId(1), limits(), t0);
        let out = s.handle_frame(&p(json!({"t": "ping"})), t0, &auth());
        assert!(matches!(
            out,
            Output::Close(WireError {
                code: ErrorCode::Unauthorized,
                ..
            })
        ));
    }

    #[test]
    fn bad_token_and_version_close() {
        let t0 = Instant::now();
        let mut s = Session::new(SessionId(1), limits(), t0);
        let out = s.handle_frame(
            &p(json!({"t": "hello", "v": 1, "token": "x.y.z"})),
            t0,
            &auth(),
        );
        assert!(matches!(
            out,
            Output::Close(WireError {
                code: ErrorCode::Unauthorized,
                ..
            })
        ));
        let mut s = Session::new(SessionId(1), limits(), t0);
        let out = s.handle_frame(&p(json!({"t": "hello", "v": 2, "token": "x"})), t0, &auth());
        assert!(matches!(
            out,
            Output::Close(WireError {
                code: ErrorCode::UnsupportedVersion,
                ..
            })
        ));
    }

    #[test]
    fn idle_timeout_follows_last_frame() {
        let t0 = Instant::now();
        let mut s = active(t0);
        let t1 = t0 + Duration::from_secs(20);
        let out = s.handle_frame(&p(json!({"t": "ping", "id": 2})), t1, &auth());
        assert!(matches!(out, Output::Reply(ServerFrame::Pong(_))));
        assert_eq!(s.deadline(), t1 + Duration::from_secs(30));
        assert_eq!(s.handle_timeout(t0 + Duration::from_secs(31)), Output::None);
        let out = s.handle_timeout(t1 + Duration::from_secs(30));
        assert!(matches!(
            out,
            Output::Close(WireError {
                code: ErrorCode::IdleTimeout,
                ..
            })
        ));
    }

    fn active_with_away(now: Instant, away_after: Duration) -> Session {
        let a = auth();
        let limits = SessionLimits {
            away_after: Some(away_after),
            ..limits()
        };
        let mut s = Session::new(SessionId(1), limits, now);
        let token = a.mint("alice", 60).unwrap();
        let out = s.handle_frame(
            &p(json!({"t": "hello", "v": 1, "token": token, "id": 1})),
            now,
            &a,
        );
        assert!(matches!(out, Output::Admit { .. }), "{out:?}");
        s
    }

    #[test]
    fn inactivity_turns_away_and_activity_turns_online() {
        let t0 = Instant::now();
        let secs = Duration::from_secs;
        let mut s = active_with_away(t0, secs(10));
        let a = auth();
        assert_eq!(s.deadline(), t0 + secs(10), "the away deadline comes first");
        // Heartbeats do not count as activity.
        s.handle_frame(&p(json!({"t": "ping", "id": 2})), t0 + secs(5), &a);
        assert_eq!(s.deadline(), t0 + secs(10));
        assert_eq!(s.handle_timeout(t0 + secs(9)), Output::None);
        assert_eq!(s.poll_status(), None);
        assert_eq!(s.handle_timeout(t0 + secs(10)), Output::None);
        assert_eq!(s.poll_status(), Some(Status::Away));
        assert_eq!(s.poll_status(), None, "reported once");
        assert_eq!(
            s.deadline(),
            t0 + secs(5) + secs(30),
            "now only the idle deadline"
        );
        // A request: online again, and the away clock restarts.
        let out = s.handle_frame(
            &p(json!({"t": "typing", "id": 3, "room": "r"})),
            t0 + secs(12),
            &a,
        );
        assert!(matches!(out, Output::Request(_)));
        assert_eq!(s.poll_status(), Some(Status::Online));
        assert_eq!(s.deadline(), t0 + secs(22));
        // Activity while online changes nothing.
        s.handle_frame(
            &p(json!({"t": "typing", "id": 4, "room": "r"})),
            t0 + secs(13),
            &a,
        );
        assert_eq!(s.poll_status(), None);
    }

    #[test]
    fn a_chosen_status_overrides_the_automatic_one() {
        let t0 = Instant::now();
        let secs = Duration::from_secs;
        let mut s = active_with_away(t0, secs(10));
        let a = auth();
        s.handle_timeout(t0 + secs(10));
        assert_eq!(s.poll_status(), Some(Status::Away));
        // The client says away itself: activity no longer brings it back.
        let out = s.handle_frame(
            &p(json!({"t": "presence", "id": 2, "status": "away"})),
            t0 + secs(11),
            &a,
        );
        assert!(matches!(out, Output::Request(_)));
        s.handle_frame(
            &p(json!({"t": "typing", "id": 3, "room": "r"})),
            t0 + secs(12),
            &a,
        );
        assert_eq!(s.poll_status(), None, "away by choice stays away");
        assert_eq!(s.deadline(), t0 + secs(12) + secs(30), "no away deadline");
        // Online by choice: the inactivity clock runs again.
        s.handle_frame(
            &p(json!({"t": "presence", "id": 4, "status": "online"})),
            t0 + secs(20),
            &a,
        );
        assert_eq!(s.poll_status(), None, "the request itself sets it");
        assert_eq!(s.deadline(), t0 + secs(30));
        // Presence queries are not activity.
        s.handle_frame(
            &p(json!({"t": "presence", "id": 5, "users": ["bob"]})),
            t0 + secs(25),
            &a,
        );
        assert_eq!(s.deadline(), t0 + secs(30));
    }

    #[test]
    fn validation_errors_keep_the_session() {
        let t0 = Instant::now();
        let mut s = active(t0);
        let a = auth();
        let out = s.handle_frame(
            &p(json!({"t": "send", "id": 5, "room": "r", "body": "x".repeat(11)})),
            t0,
            &a,
        );
        let Output::Reply(ServerFrame::Error(e)) = out else {
            panic!("{out:?}")
        };
        assert_eq!(
            (e.id, e.code, e.close),
            (Some(5), ErrorCode::BadRequest, false)
        );
        assert!(e.message.starts_with("body"));
        // Ten characters of four bytes each are within a 10-character limit.
        let out = s.handle_frame(
            &p(json!({"t": "send", "id": 6, "room": "r", "body": "😀".repeat(10)})),
            t0,
            &a,
        );
        assert!(matches!(out, Output::Request(ClientFrame::Send(ref f)) if f.id == 6));
        let out = s.handle_frame(
            &p(json!({"t": "history", "id": 7, "room": "r", "limit": 500})),
            t0,
            &a,
        );
        assert!(matches!(out, Output::Reply(ServerFrame::Error(_))));
        let out = s.handle_frame(b"\xc1", t0, &a);
        assert!(matches!(out, Output::Reply(ServerFrame::Error(_))));
        assert!(!s.is_closed());
    }

    #[test]
    fn joined_rooms_are_tracked() {
        let t0 = Instant::now();
        let mut s = active(t0);
        let a = auth();
        s.handle_frame(&p(json!({"t": "join", "id": 2, "room": "a"})), t0, &a);
        s.handle_frame(&p(json!({"t": "join", "id": 3, "room": "b"})), t0, &a);
        s.handle_frame(&p(json!({"t": "leave", "id": 4, "room": "a"})), t0, &a);
        let joined: Vec<_> = s.joined().map(|r| r.as_str().to_string()).collect();
        assert_eq!(joined, vec!["b".to_string()]);
    }
}
