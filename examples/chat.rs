//! A terminal chat client on the crate's minimal client.
//!
//! ```text
//! cargo run --example chat -- --addr 127.0.0.1:7400 --token "$(roomcast token --user alice)" --create "General"
//! cargo run --example chat -- --addr 127.0.0.1:7400 --token "$(roomcast token --user bob)" --room <id>
//! ```
//! Lines typed on stdin are sent; pushes are printed. `/history` prints the last 20 messages.

use roomcast::client::Client;
use roomcast::ids::RoomId;
use roomcast::proto::ServerFrame;
use tokio::io::{AsyncBufReadExt, BufReader};

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let addr = arg("--addr")
        .unwrap_or_else(|| "127.0.0.1:7400".into())
        .parse()?;
    let token = arg("--token").ok_or_else(|| anyhow::anyhow!("--token is required"))?;
    let (mut client, welcome) = Client::connect_with_token(addr, &token).await?;
    println!(
        "connected as {} (session {})",
        welcome.user, welcome.session
    );
    let room = match (arg("--room"), arg("--create")) {
        (Some(r), _) => RoomId::new(&r).map_err(|e| anyhow::anyhow!(e))?,
        (None, Some(name)) => {
            let r = client.create_room(&name, false).await?;
            println!("created room {r}");
            r
        }
        (None, None) => anyhow::bail!("give --room ID or --create NAME"),
    };
    let joined = client.join(&room).await?;
    println!("joined {room} at seq {}", joined.seq);

    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let heartbeat = std::time::Duration::from_millis(welcome.heartbeat_ms);
    let mut ping = tokio::time::interval(heartbeat);
    loop {
        tokio::select! {
            line = lines.next_line() => match line? {
                Some(l) if l.trim() == "/history" => {
                    for m in client.history(&room, None, Some(20)).await?.messages {
                        println!("  #{} {}: {}", m.seq, m.from, m.body);
                    }
                }
                Some(l) if !l.trim().is_empty() => {
                    if let Err(e) = client.send(&room, &l, None).await {
                        eprintln!("send failed: {e}");
                    }
                }
                Some(_) => {}
                None => break,
            },
            ev = client.next_event() => match ev {
                Some(ServerFrame::Msg(m)) => println!("#{} {}: {}", m.seq, m.from, m.body),
                Some(ServerFrame::Error(e)) => {
                    eprintln!("server: {} {}", e.code, e.message);
                    if e.close { break; }
                }
                Some(_) => {}
                None => { eprintln!("disconnected"); break; }
            },
            _ = ping.tick() => { let _ = client.ping().await; }
        }
    }
    Ok(())
}
