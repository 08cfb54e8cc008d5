//! Offline notifications: for each stored message, the room members who are
//! not online anywhere are listed in one `message.created` event appended to a
//! capped Redis stream, for a push-notification service to consume with a
//! consumer group (format: docs/OFFLINE_NOTIFICATIONS.md).

use super::timed;
use super::Conn;
use crate::ids::{RoomId, UserId};
use crate::presence::{Presence, Status};
use crate::router::cluster::Notice;
use std::sync::Arc;
use tokio::sync::mpsc;

/// Recipients listed per stream entry (a message for more people takes several entries).
const RECIPIENTS_PER_ENTRY: usize = 500;

struct Job {
    room: RoomId,
    members: Vec<UserId>,
    messages: Vec<Notice>,
}

#[derive(Clone)]
pub struct OfflineNotifier {
    tx: mpsc::UnboundedSender<Job>,
}

impl OfflineNotifier {
    /// Starts the notifier task: presence lookups and XADDs happen off the routers.
    pub fn start(conn: Conn, presence: Arc<dyn Presence>, stream: String, maxlen: usize) -> Self {
        let (tx, mut rx) = mpsc::unbounded_channel::<Job>();
        tokio::spawn(async move {
            let mut conn = conn;
            while let Some(job) = rx.recv().await {
                let statuses = presence.get_many(&job.members).await;
                let offline: Vec<&UserId> = statuses
                    .iter()
                    .filter(|p| p.status == Status::Offline)
                    .map(|p| &p.user)
                    .collect();
                if offline.is_empty() {
                    continue;
                }
                let mut pipe = redis::pipe();
                for m in &job.messages {
                    let recipients: Vec<&&UserId> =
                        offline.iter().filter(|u| ***u != m.from).collect();
                    for chunk in recipients.chunks(RECIPIENTS_PER_ENTRY) {
                        // Ids as the tenant's apps know them, and the tenant.
                        let to: Vec<&str> = chunk.iter().map(|u| u.public()).collect();
                        let mut event = crate::proto::ids::public_ids(|| {
                            serde_json::json!({
                                "type": "message.created",
                                "room": job.room,
                                "seq": m.seq,
                                "from": m.from,
                                "ts": m.ts,
                                "kind": m.kind,
                                "preview": m.preview,
                                "recipients": to,
                            })
                        });
                        if let Some(tenant) = job.room.tenant() {
                            event["tenant"] = tenant.into();
                        }
                        pipe.cmd("XADD")
                            .arg(&stream)
                            .arg("MAXLEN")
                            .arg("~")
                            .arg(maxlen)
                            .arg("*")
                            .arg("event")
                            .arg(event.to_string())
                            .ignore();
                    }
                }
                if let Err(e) = timed(pipe.exec_async(&mut conn)).await {
                    tracing::warn!(error = %e, room = %job.room, "offline notifications not written");
                }
            }
        });
        Self { tx }
    }

    pub fn notify(&self, room: RoomId, members: Vec<UserId>, messages: Vec<Notice>) {
        let _ = self.tx.send(Job {
            room,
            members,
            messages,
        });
    }
}
