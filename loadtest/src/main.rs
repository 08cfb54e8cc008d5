//! The `roomcast-load` binary: parses a scenario, runs it on a Tokio runtime
//! of `--threads` workers (default 1: pin the tool to one core with taskset),
//! prints the summary and writes `--json`.

use clap::{Parser, Subcommand};
use roomcast_load::opts::{Common, MixedArgs, ReconnectArgs, RoomsArgs, StormArgs};
use roomcast_load::scenario;
use roomcast_load::Report;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "roomcast-load",
    version,
    about = "Load generator for roomcast: fan-out, latency, big room, idle connections, connect and reconnect storms, mixed chat",
    after_help = "Every scenario is bounded in count and time and stops by itself. See loadtest/README.md."
)]
struct Cli {
    #[command(flatten)]
    common: Common,
    /// Runtime worker threads (1 = a single-threaded runtime, the cheapest on one core).
    #[arg(long, default_value_t = 1, global = true)]
    threads: usize,
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Subcommand)]
enum Scenario {
    /// Rooms x members, publishers at max rate with a bounded window in flight.
    Fanout(RoomsArgs),
    /// One room of many members (defaults: 1 room x 2,000 members, 1 publisher).
    #[command(
        mut_arg("rooms", |a| a.default_value("1")),
        mut_arg("members", |a| a.default_value("2000"))
    )]
    Bigroom(RoomsArgs),
    /// Fixed total publish rate; send-to-delivery latency (defaults: 1,000/s into 10 rooms of 100).
    #[command(
        mut_arg("rate", |a| a.default_value("1000")),
        mut_arg("inflight", |a| a.default_value("1024"))
    )]
    Latency(RoomsArgs),
    /// N connections, each authenticated and joined to a room, then held (memory per connection).
    #[command(
        mut_arg("rooms", |a| a.default_value("100")),
        mut_arg("members", |a| a.default_value("200")),
        mut_arg("publishers", |a| a.default_value("0")),
        mut_arg("read_buffer", |a| a.default_value("1024"))
    )]
    Idle(RoomsArgs),
    /// Small rooms: `fanout` with defaults 1,000 rooms x 4 members, 1 publisher each.
    #[command(
        mut_arg("rooms", |a| a.default_value("1000")),
        mut_arg("members", |a| a.default_value("4"))
    )]
    Smallrooms(RoomsArgs),
    /// Direct messages: `fanout` with defaults 10,000 rooms x 2 members, 1 publisher each.
    #[command(
        mut_arg("rooms", |a| a.default_value("10000")),
        mut_arg("members", |a| a.default_value("2"))
    )]
    Direct(RoomsArgs),
    /// More than the server sustains: 1,000 rooms x 4, every member publishing with 64 in
    /// flight; server RSS over time (--server-pid) and the ack latency distribution.
    #[command(
        mut_arg("rooms", |a| a.default_value("1000")),
        mut_arg("members", |a| a.default_value("4")),
        mut_arg("publishers", |a| a.default_value("4")),
        mut_arg("duration", |a| a.default_value("30s")),
        mut_arg("drain", |a| a.default_value("30s"))
    )]
    Overload(RoomsArgs),
    /// Handshakes per second (connect + hello + welcome).
    ConnectStorm(StormArgs),
    /// N clients connected; the server restarts (--restart-cmd or the operator); how fast all are back.
    ReconnectStorm(ReconnectArgs),
    /// A chat profile: joins, sends, history reads, leaves.
    Mixed(MixedArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = if cli.threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(cli.threads)
            .enable_all()
            .build()
    };
    let rt = match rt {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("roomcast-load: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(&cli)) {
        Ok(report) => {
            print!("{}", report.summary());
            if let Some(path) = &cli.common.json {
                let written = serde_json::to_vec_pretty(&report)
                    .map_err(anyhow::Error::from)
                    .and_then(|b| std::fs::write(path, b).map_err(anyhow::Error::from));
                if let Err(e) = written {
                    eprintln!("roomcast-load: writing {}: {e}", path.display());
                    return ExitCode::FAILURE;
                }
            }
            if cli.common.strict && !report.is_clean() {
                eprintln!("roomcast-load: --strict: the run was not clean");
                return ExitCode::from(2);
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("roomcast-load: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: &Cli) -> anyhow::Result<Report> {
    let c = &cli.common;
    match &cli.scenario {
        Scenario::Fanout(a) => scenario::rooms::run("fanout", c, a).await,
        Scenario::Bigroom(a) => scenario::rooms::run("bigroom", c, a).await,
        Scenario::Latency(a) => scenario::rooms::run("latency", c, a).await,
        Scenario::Idle(a) => scenario::rooms::run("idle", c, a).await,
        Scenario::Smallrooms(a) => scenario::rooms::run("smallrooms", c, a).await,
        Scenario::Direct(a) => scenario::rooms::run("direct", c, a).await,
        Scenario::Overload(a) => scenario::rooms::run("overload", c, a).await,
        Scenario::ConnectStorm(a) => scenario::storm::run(c, a).await,
        Scenario::ReconnectStorm(a) => scenario::reconnect::run(c, a).await,
        Scenario::Mixed(a) => scenario::mixed::run(c, a).await,
    }
}
