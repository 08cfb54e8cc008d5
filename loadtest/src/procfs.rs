//! What `/proc` says about a process: resident memory and CPU time (Linux).

/// `VmRSS` of `pid` ("self" for this process), in KiB.
pub fn rss_kib(pid: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// User + system CPU time of `pid` in seconds (from `/proc/PID/stat`, USER_HZ = 100).
pub fn cpu_secs(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the `(comm)`: state is field 3; utime, stime are 14 and 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some((utime + stime) as f64 / 100.0)
}

/// This process's soft limit on open files.
pub fn open_files_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// Raises this process's soft limit on open files to its hard limit (no
/// privilege needed); returns the new soft limit.
pub fn raise_open_files_limit() -> Option<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed in.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return None;
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                lim = raised;
            }
        }
    }
    Some(lim.rlim_cur)
}

/// CPU time of a process between two points, as a share of wall time.
#[derive(Clone, Debug)]
pub struct CpuMeter {
    pid: String,
    start: Option<f64>,
    at: std::time::Instant,
}

impl CpuMeter {
    pub fn start(pid: impl Into<String>) -> Self {
        let pid = pid.into();
        Self {
            start: cpu_secs(&pid),
            pid,
            at: std::time::Instant::now(),
        }
    }

    /// Percent of one core used since `start` (100 = one core busy).
    pub fn percent(&self) -> Option<f64> {
        let now = cpu_secs(&self.pid)?;
        let start = self.start?;
        let wall = self.at.elapsed().as_secs_f64();
        (wall > 0.0).then(|| 100.0 * (now - start) / wall)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_itself() {
        assert!(super::rss_kib("self").unwrap() > 0);
        assert!(super::cpu_secs("self").is_some());
        assert!(super::open_files_limit().unwrap() > 0);
    }
}
