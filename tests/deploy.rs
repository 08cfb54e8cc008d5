//! The deploy files stay in step with the server: the TOML config in the
//! Kubernetes ConfigMap is parsed by the server's own config loader.

use clap::{CommandFactory, Parser};
use roomcast::config::{Config, FsyncPolicy};

#[derive(Parser)]
struct Wrapper {
    #[command(flatten)]
    config: Config,
}

/// The `roomcast.toml: |` block of deploy/k8s/roomcast.yaml.
fn configmap_toml() -> String {
    let yaml = include_str!("../deploy/k8s/roomcast.yaml");
    let mut lines = yaml
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("roomcast.toml: |"));
    lines.next();
    lines
        .take_while(|l| l.starts_with("    ") || l.trim().is_empty())
        .map(|l| l.trim_start())
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_kubernetes_config_is_accepted() {
    let toml = configmap_toml();
    assert!(toml.contains("tcp ="), "{toml}");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("roomcast.toml");
    std::fs::write(&path, &toml).unwrap();
    let matches =
        Wrapper::command().get_matches_from(["roomcast", "--config", path.to_str().unwrap()]);
    let c = Config::resolve(&matches).expect("the ConfigMap's TOML parses");
    c.validate().unwrap();
    assert_eq!(c.tcp.to_string(), "0.0.0.0:7400");
    assert_eq!(c.quic.to_string(), "0.0.0.0:7401");
    assert_eq!(
        c.tls_tcp.map(|a| a.to_string()).as_deref(),
        Some("0.0.0.0:7443")
    );
    assert_eq!(c.http.to_string(), "0.0.0.0:7480");
    assert_eq!(
        c.https.map(|a| a.to_string()).as_deref(),
        Some("0.0.0.0:7481")
    );
    assert_eq!(c.fsync, FsyncPolicy::Always);
    assert_eq!(c.data_dir.to_str(), Some("/data"));
    assert_eq!(c.shutdown_drain_ms, 5000);
    assert!(
        c.shutdown_drain_ms < c.shutdown_timeout_ms,
        "the drain fits in the shutdown budget"
    );
}

#[test]
fn probes_use_ready_and_health() {
    let k8s = include_str!("../deploy/k8s/roomcast.yaml");
    let probe = |name: &str| {
        let at = k8s.find(name).unwrap_or_else(|| panic!("{name} missing"));
        k8s[at..].lines().nth(1).unwrap_or_default().to_string()
    };
    assert!(
        probe("readinessProbe:").contains("path: /ready"),
        "k8s readiness"
    );
    assert!(
        probe("livenessProbe:").contains("path: /health"),
        "k8s liveness"
    );
    let dockerfile = include_str!("../deploy/Dockerfile");
    assert!(
        dockerfile
            .lines()
            .any(|l| l.starts_with("HEALTHCHECK") && l.contains("/ready")),
        "Dockerfile HEALTHCHECK"
    );
    let compose = include_str!("../deploy/docker-compose.yml");
    assert!(
        compose.contains("healthcheck:") && compose.contains("7480/ready"),
        "compose healthcheck"
    );
}

#[test]
fn the_image_and_compose_use_the_server_ports() {
    let dockerfile = include_str!("../deploy/Dockerfile");
    let compose = include_str!("../deploy/docker-compose.yml");
    for port in ["7400", "7401", "7443", "7480", "7481"] {
        assert!(
            dockerfile.contains(port) && compose.contains(port),
            "port {port}"
        );
    }
}
