//! A real `redis-server` for tests, started on a free port and stopped on drop.
//! Without the binary the caller is told to skip — unless ROOMCAST_REQUIRE_REDIS=1
//! (CI), where a missing Redis fails the test.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct RedisServer {
    child: Option<Child>,
    pub port: u16,
    dir: tempfile::TempDir,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Whether `bin` runs; if not, panics under ROOMCAST_REQUIRE_REDIS=1 and
/// otherwise prints that the test is skipped.
fn installed(bin: &str) -> bool {
    let found = Command::new(bin)
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok();
    if !found {
        if std::env::var("ROOMCAST_REQUIRE_REDIS").is_ok_and(|v| v == "1") {
            panic!("ROOMCAST_REQUIRE_REDIS=1 but {bin} is not installed");
        }
        eprintln!(
            "SKIP: {bin} is not installed (apt-get install -y redis-server); Redis tests skipped"
        );
    }
    found
}

impl RedisServer {
    /// Starts Redis, or returns None (after printing why) when it is not installed.
    pub fn start() -> Option<RedisServer> {
        if !installed("redis-server") {
            return None;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let mut server = RedisServer {
            child: None,
            port: free_port(),
            dir,
        };
        server.spawn();
        Some(server)
    }

    fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server");
        self.child = Some(child);
        let until = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < until, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    pub fn target(&self) -> roomcast::redis::Target {
        roomcast::redis::Target::new(&self.url(), false).expect("target")
    }

    /// Kills Redis (losing its data, as a crash would) and starts it again on the same port.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A real three-shard Redis Cluster (no replicas) on free ports, built with
/// `redis-cli --cluster create`; stopped on drop.
pub struct RedisCluster {
    children: Vec<Child>,
    pub ports: Vec<u16>,
    _dirs: Vec<tempfile::TempDir>,
}

impl RedisCluster {
    /// Starts the cluster, or returns None (after printing why) when Redis is not installed.
    pub fn start() -> Option<RedisCluster> {
        if !installed("redis-server") || !installed("redis-cli") {
            return None;
        }
        let mut cluster = RedisCluster {
            children: Vec::new(),
            ports: Vec::new(),
            _dirs: Vec::new(),
        };
        for _ in 0..3 {
            let dir = tempfile::tempdir().expect("tempdir");
            let port = free_port();
            let child = Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no"])
                .args(["--cluster-enabled", "yes", "--cluster-node-timeout", "2000"])
                .args(["--cluster-config-file", "nodes.conf"])
                .arg("--dir")
                .arg(dir.path())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn redis-server");
            cluster.children.push(child);
            cluster.ports.push(port);
            cluster._dirs.push(dir);
        }
        let until = Instant::now() + Duration::from_secs(10);
        for &p in &cluster.ports {
            while std::net::TcpStream::connect(("127.0.0.1", p)).is_err() {
                assert!(Instant::now() < until, "redis-server did not start");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let nodes: Vec<String> = cluster
            .ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        let out = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&nodes)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("redis-cli --cluster create");
        assert!(
            out.status.success(),
            "cluster create: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let until = Instant::now() + Duration::from_secs(20);
        for &p in &cluster.ports {
            while !cluster
                .cli(p, &["CLUSTER", "INFO"])
                .contains("cluster_state:ok")
            {
                assert!(Instant::now() < until, "cluster did not converge");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Some(cluster)
    }

    /// The seed node URLs, comma-separated (what `--redis` takes with `--redis-cluster`).
    pub fn url(&self) -> String {
        self.ports
            .iter()
            .map(|p| format!("redis://127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn target(&self) -> roomcast::redis::Target {
        roomcast::redis::Target::new(&self.url(), true).expect("target")
    }

    /// Runs one command with redis-cli against one node; returns its output.
    pub fn cli(&self, port: u16, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-p", &port.to_string()])
            .args(args)
            .output()
            .expect("redis-cli");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Lines of output of `args` run on every node (e.g. PUBSUB SHARDCHANNELS).
    pub fn on_every_node(&self, args: &[&str]) -> Vec<Vec<String>> {
        self.ports
            .iter()
            .map(|&p| {
                self.cli(p, args)
                    .lines()
                    .map(str::to_string)
                    .filter(|l| !l.is_empty())
                    .collect()
            })
            .collect()
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
