//! Giving freed memory back to the operating system.
//!
//! glibc's malloc keeps memory freed inside its arenas (one per thread that
//! allocated, up to 8 per core) instead of returning it, and raises its mmap
//! threshold after large frees so that later large buffers come from the
//! arenas too. After a burst (a flood of large replies, a reconnect storm)
//! the process then stays at its peak size although almost nothing is live.
//! A background task calls `malloc_trim(0)` every `--malloc-trim-secs`
//! (off with 0), which returns the free pages of every arena; it runs on the
//! blocking pool and costs about a millisecond per hundred MiB of heap
//! (docs/PERFORMANCE.md, "Memory after load"). On other C libraries it is a
//! no-op.

use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Returns free arena memory to the OS now; true if any was returned.
pub fn trim() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: malloc_trim only walks and releases malloc's own free lists;
        // it is thread-safe and has no preconditions.
        unsafe { libc::malloc_trim(0) == 1 }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

/// Trims every `every` until `stop`.
pub async fn trim_periodically(every: Duration, stop: CancellationToken) {
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        match tokio::task::spawn_blocking(trim).await {
            Ok(true) => tracing::debug!("returned free heap memory to the OS"),
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "malloc_trim task failed"),
        }
    }
}
