//! The `roomcast` binary: `serve`, `migrate`, `check-config`, `token` and `import-accounts`.

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use roomcast::auth::Authenticator;
use roomcast::config::{Config, LogFormat};
use roomcast::server::Server;
use std::path::PathBuf;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(name = "roomcast", version, about = "Real-time rooms messaging server")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the server (embedded store and in-memory limits by default).
    Serve(Box<Config>),
    /// Create or upgrade the ScyllaDB schema (`--scylla-*` settings as for `serve`), then exit.
    /// Idempotent; `serve --store scylla` also applies it at startup.
    Migrate(Box<Config>),
    /// Check a configuration as `serve` would (flags, environment and
    /// `--config` TOML, every `serve` setting), without opening the store or
    /// binding anything; prints a summary and exits 0 if it is accepted.
    CheckConfig(Box<Config>),
    /// Mint a development JWT with the configured HS256 secret.
    Token(TokenArgs),
    /// Import accounts with bcrypt hashes from an older system into the
    /// built-in accounts (server stopped): one JSON object per line,
    /// `{"user": "...", "bcrypt": "$2b$...", "display_name": "..."}`.
    ImportAccounts(ImportArgs),
}

#[derive(clap::Args)]
struct ImportArgs {
    /// The JSON-lines file (`-` for stdin).
    file: PathBuf,
    /// Data dir of the server (same as `serve`).
    #[arg(long, env = "ROOMCAST_DATA_DIR", default_value = "./data")]
    data_dir: PathBuf,
}

#[derive(clap::Args)]
struct TokenArgs {
    /// The user id (JWT `sub`).
    #[arg(long)]
    user: String,
    /// The user's tenant (JWT claim `tenant`), for servers run with `--tenants`.
    #[arg(long)]
    tenant: Option<String>,
    /// Validity, e.g. `30m`, `24h`, `7d`.
    #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
    ttl: Duration,
    /// Data dir holding the generated secret (same as `serve`).
    #[arg(long, env = "ROOMCAST_DATA_DIR", default_value = "./data")]
    data_dir: PathBuf,
    /// HS256 secret (same as `serve`).
    #[arg(long, env = "ROOMCAST_JWT_SECRET", hide_env_values = true)]
    jwt_secret: Option<String>,
}

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("roomcast: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches)?;
    match cli.command {
        Cmd::Token(t) => {
            let auth = Authenticator::from_config(t.jwt_secret.as_deref(), None, &t.data_dir)?;
            if let Some(tenant) = &t.tenant {
                roomcast::proto::ids::check_tenant(tenant).map_err(|e| anyhow::anyhow!(e))?;
            }
            println!(
                "{}",
                auth.mint_in(t.tenant.as_deref(), &t.user, t.ttl.as_secs())?
            );
            Ok(())
        }
        Cmd::Migrate(_) => {
            let sub = matches
                .subcommand_matches("migrate")
                .ok_or_else(|| anyhow::anyhow!("migrate arguments missing"))?;
            let config = Config::resolve(sub)?;
            let cfg = roomcast::store::scylla::ScyllaConfig::from_config(&config)?;
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let version = runtime.block_on(roomcast::store::scylla::migrate(&cfg))?;
            println!("keyspace {} is at schema version {version}", cfg.keyspace);
            Ok(())
        }
        Cmd::CheckConfig(_) => {
            let sub = matches
                .subcommand_matches("check-config")
                .ok_or_else(|| anyhow::anyhow!("check-config arguments missing"))?;
            let config = Config::resolve(sub)?;
            config.check()?;
            let store = match config.store {
                roomcast::config::StoreKind::Embedded => {
                    format!("embedded data_dir={}", config.data_dir.display())
                }
                roomcast::config::StoreKind::Scylla => format!(
                    "scylla nodes={} keyspace={} replication={} consistency={:?}",
                    config.scylla_nodes,
                    config.scylla_keyspace,
                    config.scylla_replication,
                    config.scylla_consistency
                ),
            };
            println!(
                "config ok: store={store} tcp={} http={} redis={}",
                config.tcp,
                config.http,
                if config.redis.is_some() { "on" } else { "off" }
            );
            Ok(())
        }
        Cmd::ImportAccounts(a) => {
            let input: Box<dyn std::io::BufRead> = if a.file.as_os_str() == "-" {
                Box::new(std::io::stdin().lock())
            } else {
                let f = std::fs::File::open(&a.file)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", a.file.display()))?;
                Box::new(std::io::BufReader::new(f))
            };
            let done = roomcast::accounts::import_jsonl(
                &a.data_dir,
                roomcast::config::FsyncPolicy::Always,
                input,
            )?;
            println!(
                "imported {} accounts ({} already existed, left as they were)",
                done.added, done.existing
            );
            Ok(())
        }
        Cmd::Serve(_) => {
            let sub = matches
                .subcommand_matches("serve")
                .ok_or_else(|| anyhow::anyhow!("serve arguments missing"))?;
            let config = Config::resolve(sub)?;
            serve(config)
        }
    }
}

fn serve(config: Config) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,fjall=warn,lsm_tree=warn"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match config.log_format {
        LogFormat::Text => logs.init(),
        // One JSON object per line: timestamp, level, target, message and fields flattened.
        LogFormat::Json => logs
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .init(),
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let data_dir = config.data_dir.clone();
        let server = Server::bind(config).await?;
        let tcp = server.tcp_addr()?;
        let http = server.http_addr()?;
        let quic = server.quic_addr()?;
        let tls = match server.tls_addr()? {
            Some(a) => a.to_string(),
            None => "off".to_string(),
        };
        let https = match server.https_addr()? {
            Some(a) => a.to_string(),
            None => "off".to_string(),
        };
        // One line on stdout that scripts and tests can parse. `ws` is
        // `ws://HTTP/ws`; the fingerprint is the SHA-256 of the TLS/QUIC
        // certificate, for clients that pin it.
        println!(
            "roomcast listening tcp={tcp} quic={quic} tls={tls} http={http} https={https} sha256={} data_dir={}",
            server.tls_fingerprint(),
            data_dir.display()
        );
        let shutdown = CancellationToken::new();
        let signal = shutdown.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            signal.cancel();
        });
        server.run(shutdown).await
    })
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM; Ctrl-C only");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
