//! The scenarios. Each one is bounded in count and time, stops by itself and
//! returns a [`Report`](crate::report::Report).
//!
//! - [`rooms`]: rooms × members × publishers (`fanout`, `bigroom`, `latency`, `idle`).
//! - [`storm`]: handshakes per second (`connect-storm`).
//! - [`reconnect`]: every client back after a server restart (`reconnect-storm`).
//! - [`mixed`]: a chat profile of joins, sends, history reads and leaves (`mixed`).

pub mod mixed;
pub mod reconnect;
pub mod rooms;
pub mod storm;

use crate::opts::Common;
use crate::transport::Transport;

/// Where a run is; every connection task watches it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Setup,
    Run,
    Stop,
}

/// A short id for this run (room names carry it, to tell runs apart in the store).
pub fn run_id() -> String {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros());
    format!("{:x}", t & 0xff_ffff_ffff)
}

pub fn user_id(common: &Common, suffix: &str) -> String {
    format!("{}-{suffix}", common.user_prefix)
}

pub fn room_name(scenario: &str, run: &str, k: usize) -> String {
    format!("{scenario}-{run}-{k}")
}

/// Fails early, with the fix, when the open-files limit cannot hold `conns` sockets.
pub fn check_fd_limit(conns: usize, transport: Transport) -> anyhow::Result<()> {
    // QUIC connections share a few UDP sockets; every other transport holds
    // one descriptor per connection.
    if transport == Transport::Quic {
        return Ok(());
    }
    let limit = crate::procfs::raise_open_files_limit().or_else(crate::procfs::open_files_limit);
    if let Some(limit) = limit {
        let need = conns as u64 + 64;
        anyhow::ensure!(
            need <= limit,
            "{conns} connections need about {need} open files but the limit is {limit} (the \
             hard limit, already raised to): raise the hard limit first (root: `ulimit -Hn {}`), \
             for the server too, or use --transport quic (one UDP socket for many connections)",
            (need * 2).max(200_000)
        );
    }
    Ok(())
}
