//! Turns a session's validated requests into router commands, after the rate
//! limits. Every refusal becomes an `error` reply here.

use super::outbox::Outbox;
use crate::ids::{now_ms, RoomId, SessionId, UserId};
use crate::proto::{ErrorCode, ServerFrame, WireError};
use crate::ratelimit::{Action, Decision};
use crate::router::{Command, ReplyTo};
use crate::server::Core;
use crate::session::Request;
use crate::store::RoomMeta;
use std::sync::Arc;

fn limited(action: Action, retry: std::time::Duration) -> WireError {
    let ms = (retry.as_millis() as u64).max(1);
    WireError::new(
        ErrorCode::RateLimited,
        format!("{action:?} rate limit; retry in {ms} ms"),
    )
    .with_retry(ms)
}

/// Connect-time checks for a verified user.
pub async fn admit(core: &Arc<Core>, session: SessionId, user: &UserId) -> Result<(), WireError> {
    if let Decision::Deny { retry_after } = core.limiter.check(user, Action::Connect).await {
        return Err(limited(Action::Connect, retry_after));
    }
    core.presence.connected(user, session).await;
    Ok(())
}

pub async fn request(
    core: &Arc<Core>,
    session: SessionId,
    user: &UserId,
    outbox: &Outbox,
    req: Request,
) {
    let (id, action) = match &req {
        Request::CreateRoom { id, .. } => (*id, Action::CreateRoom),
        Request::Join { id, .. } => (*id, Action::Join),
        Request::Leave { id, .. } => (*id, Action::Join),
        Request::Send { id, .. } => (*id, Action::Send),
        Request::History { id, .. } => (*id, Action::History),
    };
    let reply = ReplyTo {
        id,
        outbox: outbox.clone(),
    };
    // Leaving is never refused: it only frees resources.
    if !matches!(req, Request::Leave { .. }) {
        if let Decision::Deny { retry_after } = core.limiter.check(user, action).await {
            reply.error(limited(action, retry_after));
            return;
        }
    }
    let (room, cmd) = match req {
        Request::CreateRoom { name, private, .. } => {
            let room = RoomId::random();
            let meta = RoomMeta {
                id: room.clone(),
                name,
                private,
                created_by: user.clone(),
                created_at: now_ms(),
            };
            (room, Command::Create { meta, reply })
        }
        Request::Join { room, .. } => (
            room,
            Command::Join {
                session,
                user: user.clone(),
                reply,
            },
        ),
        Request::Leave { room, .. } => (room, Command::Leave { session, reply }),
        Request::Send {
            room,
            body,
            local_id,
            ..
        } => (
            room,
            Command::Send {
                user: user.clone(),
                body,
                local_id,
                reply,
            },
        ),
        Request::History {
            room,
            before,
            limit,
            ..
        } => (
            room,
            Command::History {
                user: user.clone(),
                before,
                limit,
                reply,
            },
        ),
    };
    if core.router.send(room, cmd).await.is_err() {
        outbox.send(&ServerFrame::error(
            Some(id),
            WireError::new(ErrorCode::ShuttingDown, "server is shutting down")
                .with_retry(core.reconnect_hint_ms()),
        ));
    }
}
