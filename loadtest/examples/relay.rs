//! A trivial relay: the baseline that shows what `roomcast-load` itself can
//! receive. It speaks just enough of v1 for the tool's scenarios (hello →
//! welcome without checking the token, create_room, join, send → sent plus a
//! `msg` to every member, ping) with no auth, no store, no serde, no limits:
//! each push is encoded once and copied into every member's output buffer,
//! which a writer task per connection flushes in one syscall.
//!
//!     cargo run --release -p roomcast-load --example relay -- 127.0.0.1:7500
//!     taskset -c 0 ./target/release/examples/relay 127.0.0.1:7500
//!     taskset -c 1 ./target/release/roomcast-load --addr 127.0.0.1:7500 --secret any-16-byte-secret fanout

use roomcast_load::wire;
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

struct Peer {
    out: RefCell<Vec<u8>>,
    ready: Notify,
}

impl Peer {
    fn push(&self, frame: &[u8]) {
        let mut out = self.out.borrow_mut();
        let was_empty = out.is_empty();
        out.extend_from_slice(frame);
        if was_empty {
            self.ready.notify_one();
        }
    }
}

#[derive(Default)]
struct Room {
    seq: u64,
    members: Vec<Rc<Peer>>,
}

type Rooms = Rc<RefCell<HashMap<Vec<u8>, Room>>>;

fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:7500".into());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async move {
        let listener = TcpListener::bind(&addr).await?;
        eprintln!("relay listening on {}", listener.local_addr()?);
        let rooms: Rooms = Rc::default();
        let next_room_id = Rc::new(RefCell::new(0u64));
        loop {
            let (socket, _) = listener.accept().await?;
            socket.set_nodelay(true)?;
            tokio::task::spawn_local(serve(socket, rooms.clone(), next_room_id.clone()));
        }
    })
}

async fn serve(socket: TcpStream, rooms: Rooms, room_ids: Rc<RefCell<u64>>) {
    let (mut r, mut w) = socket.into_split();
    let me = Rc::new(Peer {
        out: RefCell::new(Vec::with_capacity(4096)),
        ready: Notify::new(),
    });
    let writer = {
        let me = me.clone();
        tokio::task::spawn_local(async move {
            let mut buf = Vec::with_capacity(64 * 1024);
            loop {
                if me.out.borrow().is_empty() {
                    me.ready.notified().await;
                    continue;
                }
                std::mem::swap(&mut *me.out.borrow_mut(), &mut buf);
                if w.write_all(&buf).await.is_err() {
                    return;
                }
                buf.clear();
            }
        })
    };
    let mut rbuf = vec![0u8; 64 * 1024];
    let (mut start, mut end) = (0usize, 0usize);
    let mut reply = Vec::with_capacity(256);
    let mut push = Vec::with_capacity(256);
    let mut joined: Vec<Vec<u8>> = Vec::new();
    'conn: loop {
        if start == end {
            (start, end) = (0, 0);
        } else if end == rbuf.len() {
            rbuf.copy_within(start..end, 0);
            (start, end) = (0, end - start);
        }
        let n = match r.read(&mut rbuf[end..]).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        end += n;
        while let Ok(Some(range)) = wire::frame_range(&rbuf[start..end], 1 << 20) {
            let payload = &rbuf[start + range.start..start + range.end];
            start += range.end;
            let Ok(f) = wire::parse(payload) else {
                break 'conn;
            };
            let id = f.id.unwrap_or(0);
            let t = payload_type(payload);
            let s = wire::begin(&mut reply);
            match t {
                b"hello" => {
                    wire::map(&mut reply, 7);
                    kv_str(&mut reply, b"t", b"welcome");
                    kv_uint(&mut reply, b"id", id);
                    kv_uint(&mut reply, b"v", 1);
                    kv_str(&mut reply, b"user", b"relay");
                    kv_str(&mut reply, b"session", b"relay");
                    kv_uint(&mut reply, b"heartbeat_ms", 15_000);
                    kv_uint(&mut reply, b"max_frame", 1 << 20);
                }
                b"create_room" => {
                    let n = {
                        let mut ids = room_ids.borrow_mut();
                        *ids += 1;
                        *ids
                    };
                    let room = format!("relay{n}");
                    rooms
                        .borrow_mut()
                        .insert(room.as_bytes().to_vec(), Room::default());
                    wire::map(&mut reply, 5);
                    kv_str(&mut reply, b"t", b"created");
                    kv_uint(&mut reply, b"id", id);
                    kv_str(&mut reply, b"room", room.as_bytes());
                    kv_str(&mut reply, b"name", room.as_bytes());
                    wire::str(&mut reply, b"private");
                    wire::boolean(&mut reply, false);
                }
                b"join" => {
                    let mut rooms = rooms.borrow_mut();
                    let room = rooms.entry(f.room.to_vec()).or_default();
                    room.members.push(me.clone());
                    joined.push(f.room.to_vec());
                    wire::map(&mut reply, 4);
                    kv_str(&mut reply, b"t", b"joined");
                    kv_uint(&mut reply, b"id", id);
                    kv_str(&mut reply, b"room", f.room);
                    kv_uint(&mut reply, b"seq", room.seq);
                }
                b"send" => {
                    let mut rooms = rooms.borrow_mut();
                    let room = rooms.entry(f.room.to_vec()).or_default();
                    room.seq += 1;
                    wire::map(&mut reply, 5);
                    kv_str(&mut reply, b"t", b"sent");
                    kv_uint(&mut reply, b"id", id);
                    kv_str(&mut reply, b"room", f.room);
                    kv_uint(&mut reply, b"seq", room.seq);
                    kv_uint(&mut reply, b"ts", 0);
                    wire::end(&mut reply, s);
                    me.push(&reply);
                    reply.clear();
                    push.clear();
                    let p = wire::begin(&mut push);
                    wire::map(&mut push, 6);
                    kv_str(&mut push, b"t", b"msg");
                    kv_str(&mut push, b"room", f.room);
                    kv_uint(&mut push, b"seq", room.seq);
                    kv_str(&mut push, b"from", b"relay");
                    kv_str(&mut push, b"body", f.body);
                    kv_uint(&mut push, b"ts", 0);
                    wire::end(&mut push, p);
                    for m in &room.members {
                        m.push(&push);
                    }
                    continue;
                }
                _ => {
                    wire::map(&mut reply, 2);
                    kv_str(&mut reply, b"t", b"pong");
                    kv_uint(&mut reply, b"id", id);
                }
            }
            wire::end(&mut reply, s);
            me.push(&reply);
            reply.clear();
        }
    }
    let mut rooms = rooms.borrow_mut();
    for room in joined {
        if let Some(r) = rooms.get_mut(&room) {
            r.members.retain(|m| !Rc::ptr_eq(m, &me));
        }
    }
    writer.abort();
}

/// The request's `t` (client frames from the tool always put it first).
fn payload_type(payload: &[u8]) -> &[u8] {
    // 0x8N, 0xa1 't', 0xaL <type>
    match payload {
        [_, 0xa1, b't', m, rest @ ..] if (0xa0..0xc0).contains(m) => {
            let n = usize::from(m & 0x1f);
            rest.get(..n).unwrap_or(b"")
        }
        _ => b"",
    }
}

fn kv_str(buf: &mut Vec<u8>, k: &[u8], v: &[u8]) {
    wire::str(buf, k);
    wire::str(buf, v);
}

fn kv_uint(buf: &mut Vec<u8>, k: &[u8], v: u64) {
    wire::str(buf, k);
    wire::uint(buf, v);
}
