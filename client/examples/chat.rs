//! A terminal chat client on the SDK: any transport, create or join a room,
//! print events (including reconnects and resumes), send lines, `/history`.
//!
//! ```text
//! roomcast serve                                   # prints tcp=, quic=, http= and sha256=
//! cargo run -p roomcast-client --example chat -- --url tcp://127.0.0.1:7400 \
//!     --token "$(roomcast token --user alice)" --create General
//! cargo run -p roomcast-client --example chat -- --url quic://127.0.0.1:7401 --pin SHA256 \
//!     --token "$(roomcast token --user bob)" --room ROOM_ID
//! ```
//! URLs: `tcp://HOST:PORT`, `tls://HOST:PORT`, `quic://HOST:PORT` (with
//! `--pin`), `ws://HOST:PORT/ws`. Lines typed are sent (queued while
//! offline); `/history` prints the last 20 messages; `/quit` leaves.

use roomcast_client::proto::ids::RoomId;
use roomcast_client::{Client, ClientConfig, Endpoint, Event, OutgoingMessage, Trust};
use std::error::Error;
use std::net::ToSocketAddrs;
use tokio::io::{AsyncBufReadExt, BufReader};

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn endpoint(url: &str, pin: Option<&str>) -> Result<Endpoint, Box<dyn Error>> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or("url must be SCHEME://HOST:PORT")?;
    if scheme == "ws" {
        return Ok(Endpoint::Ws(url.to_string()));
    }
    if scheme == "wss" {
        let pin = pin.ok_or("wss needs --pin (the server's sha256=)")?;
        return Ok(Endpoint::Wss {
            url: url.to_string(),
            trust: Trust::Pin(roomcast_client::parse_pin(pin)?),
        });
    }
    let host = rest.rsplit_once(':').map_or(rest, |(h, _)| h).to_string();
    let addr = rest.to_socket_addrs()?.next().ok_or("no address")?;
    let trust = || -> Result<Trust, Box<dyn Error>> {
        let pin = pin.ok_or("tls and quic need --pin (the server's sha256=)")?;
        Ok(Trust::Pin(roomcast_client::parse_pin(pin)?))
    };
    Ok(match scheme {
        "tcp" => Endpoint::Tcp(addr),
        "tls" => Endpoint::Tls {
            addr,
            server_name: host,
            trust: trust()?,
        },
        "quic" => Endpoint::Quic {
            addr,
            server_name: host,
            trust: trust()?,
        },
        other => return Err(format!("unknown transport {other}").into()),
    })
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let url = arg("--url").unwrap_or_else(|| "tcp://127.0.0.1:7400".into());
    let token = arg("--token").ok_or("--token is required")?;
    let mut config = ClientConfig::new(endpoint(&url, arg("--pin").as_deref())?, token);
    config.queue_file = arg("--queue-file").map(Into::into);
    let (client, mut events) = Client::connect(config).await?;
    let room = match (arg("--room"), arg("--create")) {
        (Some(r), _) => RoomId::new(&r)?,
        (None, Some(name)) => {
            let created = client.create_room(&name, false).await?;
            println!(
                "created room {} (join it with --room {})",
                created.name, created.room
            );
            created.room
        }
        (None, None) => return Err("give --room ID or --create NAME".into()),
    };
    let joined = client.join(&room).await?;
    println!(
        "joined {room} at seq {} ({} online)",
        joined.seq, joined.online_count
    );

    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    loop {
        tokio::select! {
            line = lines.next_line() => match line?.as_deref().map(str::trim) {
                None | Some("/quit") => break,
                Some("/history") => match client.history(&room, None, Some(20)).await {
                    Ok(page) => for m in page.messages {
                        let mark = if m.deleted { " (deleted)" } else if m.edited_at.is_some() { " (edited)" } else { "" };
                        println!("  #{} {}: {}{mark}", m.seq, m.from, m.body);
                    },
                    Err(e) => eprintln!("history: {e}"),
                },
                Some("") => {}
                Some(text) => match client.enqueue(OutgoingMessage::text(&room, text)).await {
                    // The ack comes back later (after a reconnect if need be).
                    Ok(pending) => { tokio::spawn(async move {
                        if let Err(e) = pending.await { eprintln!("send failed: {e}"); }
                    }); }
                    Err(e) => eprintln!("send: {e}"),
                },
            },
            ev = events.next() => match ev {
                Some(Event::Message(m)) => println!("#{} {}: {}", m.seq, m.from, m.body),
                Some(Event::Edit(e)) => println!("#{} {} edited #{}: {}", e.seq, e.from, e.target, e.body),
                Some(Event::Delete(d)) => println!("#{} {} deleted #{}", d.seq, d.by, d.target),
                Some(Event::Reaction(r)) => println!("#{} {} {} {} on #{}", r.seq, r.user, if r.on { "+" } else { "-" }, r.emoji, r.target),
                Some(Event::Typing(t)) if t.on => println!("  {} is typing", t.user),
                Some(Event::MemberJoined(m)) => println!("  {} joined", m.user),
                Some(Event::MemberLeft(m)) => println!("  {} left", m.user),
                Some(Event::Connected { reconnect: true, session, .. }) => println!("-- reconnected (session {session})"),
                Some(Event::Disconnected { code, message, retry_in }) => {
                    println!("-- disconnected ({}: {message}); retrying in {retry_in:?}", code.map_or("network".into(), |c| c.to_string()));
                }
                Some(Event::ReconnectFailed { error, retry_in }) => println!("-- reconnect failed: {error}; next try in {retry_in:?}"),
                Some(Event::Resumed { room, from, to, .. }) => println!("-- resumed {room}: caught up on #{}..#{to}", from + 1),
                Some(Event::Closed { reason }) => { println!("-- closed: {reason}"); break; }
                Some(_) => {}
                None => break,
            },
        }
    }
    client.shutdown();
    Ok(())
}
