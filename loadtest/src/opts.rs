//! Command-line options: the ones every scenario shares ([`Common`]) and one
//! struct per scenario. The library API takes the same structs, so tests and
//! other tools build them with `::defaults()` and change fields.

use crate::clock::parse_duration;
use crate::transport::{Target, Transport, Trust};
use clap::{Args, Parser};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Args, Clone, Debug)]
pub struct Common {
    /// Server address for the transport [default: tcp 127.0.0.1:7400, quic 127.0.0.1:7401,
    /// ws 127.0.0.1:7480 (the HTTP listener), tls 127.0.0.1:7403 (the server's --tls-tcp)].
    #[arg(long, env = "ROOMCAST_LOAD_ADDR")]
    pub addr: Option<SocketAddr>,
    /// Transport: tcp, tls (TCP + TLS), quic (one bidirectional stream) or ws (GET /ws).
    #[arg(long, value_enum, default_value = "tcp")]
    pub transport: Transport,
    /// SHA-256 of the server's certificate (the `sha256=...` it prints at startup), for
    /// tls and quic; hex, with or without `:` separators or a `sha256:` prefix.
    #[arg(long, env = "ROOMCAST_LOAD_PIN")]
    pub pin: Option<String>,
    /// tls and quic: accept any server certificate (loopback benchmarking only).
    #[arg(long, conflicts_with = "pin")]
    pub insecure: bool,
    /// HS256 secret to mint tokens with (the server's ROOMCAST_JWT_SECRET).
    #[arg(long, env = "ROOMCAST_JWT_SECRET", hide_env_values = true)]
    pub secret: Option<String>,
    /// Command printing a token on stdout, run with `sh -c`; `{user}` is replaced by
    /// the user id (run per connection), else it runs once and all connections share it.
    #[arg(long)]
    pub token_cmd: Option<String>,
    /// Spread client sockets over source addresses 127.0.0.1..=127.0.0.N (loopback
    /// targets only), so more than ~28k connections fit; 0 lets the kernel choose.
    #[arg(long, default_value_t = 32)]
    pub source_addrs: u8,
    /// With `--transport ws`: offer permessage-deflate (RFC 7692); the server
    /// agrees if it runs with `--ws-compression true`.
    #[arg(long)]
    pub ws_compression: bool,
    /// Connections being set up (connect + hello + join) at the same time.
    #[arg(long, default_value_t = 256)]
    pub connect_concurrency: usize,
    /// Time allowed for one connection's setup (connect, hello, join).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub setup_timeout: Duration,
    /// Server process id: report its CPU and RSS (from /proc).
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Write the machine-readable report here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// No live progress line.
    #[arg(long)]
    pub quiet: bool,
    /// Prefix of the simulated users' ids (`PREFIX-N`).
    #[arg(long, default_value = "load")]
    pub user_prefix: String,
    /// Exit with status 2 unless the run is clean (no loss, duplicate, reorder, failure).
    #[arg(long)]
    pub strict: bool,
    /// Room scenarios: a command run with `sh -c` (and waited for) after the setup,
    /// right before publishing starts, e.g. `callgrind_control -z PID` to profile the
    /// publishing phase only (loadtest/scripts/profile.sh).
    #[arg(long)]
    pub on_run: Option<String>,
}

impl Common {
    /// The server address: `--addr`, or the transport's default.
    pub fn addr(&self) -> SocketAddr {
        self.addr.unwrap_or_else(|| self.transport.default_addr())
    }

    /// How to trust the server's certificate (`--pin` / `--insecure`).
    pub fn trust(&self) -> anyhow::Result<Option<Trust>> {
        if let Some(pin) = &self.pin {
            let pin = roomcast::tls::parse_pin(pin).map_err(|e| anyhow::anyhow!("--pin: {e}"))?;
            return Ok(Some(Trust::Pin(pin)));
        }
        Ok(self.insecure.then_some(Trust::Insecure))
    }

    pub fn target(&self) -> anyhow::Result<Target> {
        Ok(Target::new(
            self.transport,
            self.addr(),
            self.source_addrs,
            self.trust()?,
        )?
        .with_ws_compression(self.ws_compression))
    }

    /// Defaults pointed at `addr` with `secret` (for tests and embedding).
    pub fn for_target(addr: SocketAddr, secret: &str) -> Common {
        #[derive(Parser)]
        struct W {
            #[command(flatten)]
            c: Common,
        }
        let mut c = W::parse_from(["roomcast-load"]).c;
        c.addr = Some(addr);
        c.secret = Some(secret.to_string());
        c.token_cmd = None;
        c.quiet = true;
        c
    }
}

/// Rooms, members and publishers: the `fanout`, `bigroom`, `latency` and `idle` scenarios.
#[derive(Args, Clone, Debug, serde::Serialize)]
pub struct RoomsArgs {
    /// Rooms created for the run.
    #[arg(long, default_value_t = 10)]
    pub rooms: usize,
    /// Connections joined to each room (publishers included).
    #[arg(long, default_value_t = 100)]
    pub members: usize,
    /// Publishing members per room.
    #[arg(long, default_value_t = 1)]
    pub publishers: usize,
    /// Sends in flight per publisher (written, not yet acknowledged).
    #[arg(long, default_value_t = 64)]
    pub inflight: usize,
    /// Total publish rate over all publishers, per second; 0 = as fast as acks allow.
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,
    /// Most sends per publisher.
    #[arg(long, default_value_t = 10_000_000)]
    pub messages: u64,
    /// Publishing time (or, with no publishers, how long to hold the connections).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    #[serde(serialize_with = "secs")]
    pub duration: Duration,
    /// After the last ack, how long to wait for the remaining deliveries.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    #[serde(serialize_with = "secs")]
    pub drain: Duration,
    /// Message body size in bytes (at least 16: the send timestamp).
    #[arg(long, default_value_t = 100)]
    pub body_bytes: usize,
    /// Initial read buffer per connection, bytes (grows only for a larger frame).
    #[arg(long, default_value_t = 32 * 1024)]
    pub read_buffer: usize,
    /// With `--server-pid`: sample the server's RSS this often while publishing
    /// (the report keeps every sample and the peak).
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    #[serde(serialize_with = "secs")]
    pub rss_every: Duration,
}

fn secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

impl RoomsArgs {
    /// The defaults of `fanout`.
    pub fn defaults() -> RoomsArgs {
        #[derive(Parser)]
        struct W {
            #[command(flatten)]
            a: RoomsArgs,
        }
        W::parse_from(["roomcast-load"]).a
    }
}

/// `connect-storm`: handshakes per second.
#[derive(Args, Clone, Debug, serde::Serialize)]
pub struct StormArgs {
    /// Handshakes (connect + hello + welcome) in total.
    #[arg(long, default_value_t = 20_000)]
    pub connections: usize,
    /// Handshakes in progress at once.
    #[arg(long, default_value_t = 128)]
    pub concurrency: usize,
    /// Keep every connection open until the end instead of closing it after `welcome`.
    #[arg(long)]
    pub hold: bool,
    /// Stop starting handshakes after this long.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    #[serde(serialize_with = "secs")]
    pub duration: Duration,
}

/// `mixed`: a chat profile of joins, sends, history reads and leaves.
#[derive(Args, Clone, Debug, serde::Serialize)]
pub struct MixedArgs {
    /// Simulated clients (one connection each).
    #[arg(long, default_value_t = 200)]
    pub clients: usize,
    /// Rooms they move between.
    #[arg(long, default_value_t = 20)]
    pub rooms: usize,
    /// Requests per second per client.
    #[arg(long, default_value_t = 5.0)]
    pub rate: f64,
    /// Weights of join:send:history:leave.
    #[arg(long, default_value = "10:70:10:10")]
    pub mix: String,
    /// Running time.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    #[serde(serialize_with = "secs")]
    pub duration: Duration,
    /// Message body size in bytes (at least 16).
    #[arg(long, default_value_t = 100)]
    pub body_bytes: usize,
    /// Page size of history reads.
    #[arg(long, default_value_t = 50)]
    pub history_limit: u32,
}

impl MixedArgs {
    pub fn defaults() -> MixedArgs {
        #[derive(Parser)]
        struct W {
            #[command(flatten)]
            a: MixedArgs,
        }
        W::parse_from(["roomcast-load"]).a
    }

    /// The parsed `--mix` weights.
    pub fn weights(&self) -> anyhow::Result<[u32; 4]> {
        let parts: Vec<u32> = self
            .mix
            .split(':')
            .map(|p| p.trim().parse())
            .collect::<Result<_, _>>()
            .map_err(|_| {
                anyhow::anyhow!("--mix {:?}: expected J:S:H:L, e.g. 10:70:10:10", self.mix)
            })?;
        anyhow::ensure!(
            parts.len() == 4 && parts.iter().sum::<u32>() > 0,
            "--mix {:?}: expected four weights J:S:H:L, not all zero",
            self.mix
        );
        Ok([parts[0], parts[1], parts[2], parts[3]])
    }
}

impl StormArgs {
    pub fn defaults() -> StormArgs {
        #[derive(Parser)]
        struct W {
            #[command(flatten)]
            a: StormArgs,
        }
        W::parse_from(["roomcast-load"]).a
    }
}

/// `reconnect-storm`: N clients connected, the server restarts, how fast all N are back.
#[derive(Args, Clone, Debug, serde::Serialize)]
pub struct ReconnectArgs {
    /// Clients (one connection each).
    #[arg(long, default_value_t = 1_000)]
    pub connections: usize,
    /// Command that restarts the server, run with `sh -c` once every client is
    /// connected (it must return: start the new server in the background).
    /// Without it the tool waits for the operator to restart the server.
    #[arg(long)]
    pub restart_cmd: Option<String>,
    /// How long to wait for the server to go away once every client is connected.
    #[arg(long, default_value = "120s", value_parser = parse_duration)]
    #[serde(serialize_with = "secs")]
    pub wait: Duration,
    /// After the first disconnect, how long clients keep trying to come back.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    #[serde(serialize_with = "secs")]
    pub duration: Duration,
    /// Bound of one reconnect attempt (connect + hello + welcome).
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    #[serde(serialize_with = "secs")]
    pub attempt_timeout: Duration,
    /// First backoff after a failure without `retry_after_ms` (refused, reset, timeout).
    #[arg(long, default_value = "100ms", value_parser = parse_duration)]
    #[serde(serialize_with = "secs")]
    pub backoff_initial: Duration,
    /// Largest backoff (it doubles per failed attempt up to this).
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    #[serde(serialize_with = "secs")]
    pub backoff_max: Duration,
    /// A server's `retry_after_ms` is waited for, plus up to this fraction of it at random.
    #[arg(long, default_value_t = 0.5)]
    pub jitter: f64,
}

impl ReconnectArgs {
    pub fn defaults() -> ReconnectArgs {
        #[derive(Parser)]
        struct W {
            #[command(flatten)]
            a: ReconnectArgs,
        }
        W::parse_from(["roomcast-load"]).a
    }
}
