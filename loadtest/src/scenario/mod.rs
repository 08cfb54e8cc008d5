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
pub fn check_fd_limit(conns: usize) -> anyhow::Result<()> {
    if let Some(limit) = crate::procfs::open_files_limit() {
        let need = conns as u64 + 64;
        anyhow::ensure!(
            need <= limit,
            "{conns} connections need about {need} open files but the limit is {limit}: \
             raise it first (e.g. `ulimit -n {}`), for the server too",
            (need * 2).max(200_000)
        );
    }
    Ok(())
}
