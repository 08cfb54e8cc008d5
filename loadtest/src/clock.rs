//! One monotonic clock for the whole process: nanoseconds since the first
//! call. Publishers stamp bodies with it and receivers (same process) read it,
//! so send-to-delivery latency needs no clock synchronisation.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

static BASE: OnceLock<Instant> = OnceLock::new();

fn base() -> Instant {
    *BASE.get_or_init(Instant::now)
}

/// Nanoseconds since the process's clock base.
#[inline]
pub fn now_ns() -> u64 {
    base().elapsed().as_nanos() as u64
}

/// `t` as nanoseconds since the clock base (0 if before it).
pub fn ns_of(t: Instant) -> u64 {
    t.saturating_duration_since(base()).as_nanos() as u64
}

/// Parses `500ms`, `10s`, `2m`, `1h` or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("duration {s:?}: expected e.g. 500ms, 10s, 2m"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "" | "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("duration {s:?}: unit must be ms, s, m or h")),
    };
    if !(secs >= 0.0 && secs.is_finite()) {
        return Err(format!("duration {s:?}: must be a non-negative number"));
    }
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("3").unwrap(), Duration::from_secs(3));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert!(parse_duration("x").is_err());
        assert!(parse_duration("5 parsecs").is_err());
    }
}
