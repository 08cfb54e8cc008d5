//! Server configuration: every knob, its default, its flag and its
//! `ROOMCAST_*` environment variable, in one struct.
//!
//! Precedence, highest first: command-line flag, environment variable, the
//! TOML file given with `--config`, the built-in default.

use clap::builder::BoolishValueParser;
use clap::parser::ValueSource;
use clap::{ArgMatches, Args, FromArgMatches};
use figment::providers::{Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

/// Words every boolean setting accepts (flags, environment, TOML), any case.
pub fn parse_bool(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" | "y" | "t" => Some(true),
        "false" | "0" | "no" | "off" | "n" | "f" => Some(false),
        _ => None,
    }
}

/// A boolean from TOML: `true`/`false`, `0`/`1`, or one of the words of [`parse_bool`].
fn boolish<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Any {
        Bool(bool),
        Int(i64),
        Str(String),
    }
    let parsed = match Any::deserialize(d)? {
        Any::Bool(b) => Some(b),
        Any::Int(0) => Some(false),
        Any::Int(1) => Some(true),
        Any::Int(_) => None,
        Any::Str(s) => parse_bool(&s),
    };
    parsed.ok_or_else(|| serde::de::Error::custom("expected true/false/1/0/yes/no/on/off"))
}

fn default_node_lease_ms() -> u64 {
    10_000
}

fn default_node_renew_ms() -> u64 {
    3_000
}

fn default_system_user() -> String {
    "system".into()
}

/// When the embedded store syncs its journal to disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum FsyncPolicy {
    /// fdatasync once per group commit, before any message in the group is acknowledged.
    /// Acknowledged messages survive a process crash and a power loss.
    Always,
    /// Write each group commit to the OS before acknowledging, never fsync explicitly.
    /// Acknowledged messages survive a process crash (kill -9), not a power loss.
    Never,
}

/// Which message store the server uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    /// fjall under `--data-dir`: one process, no external service (the default).
    Embedded,
    /// ScyllaDB (or any CQL database) at `--scylla-nodes`, shared by every node.
    Scylla,
}

/// CQL consistency of the ScyllaDB store's reads and writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
#[value(rename_all = "snake_case")]
pub enum CqlConsistency {
    One,
    Quorum,
    LocalQuorum,
    All,
    LocalOne,
    EachQuorum,
}

/// How `roomcast serve` writes its logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// A token-bucket rate: `PER_SECOND:BURST`, e.g. `10:30`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RateSpec {
    pub per_second: f64,
    pub burst: u32,
}

impl FromStr for RateSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (rate, burst) = s
            .split_once(':')
            .ok_or_else(|| format!("rate {s:?}: expected PER_SECOND:BURST, e.g. 10:30"))?;
        let per_second: f64 = rate
            .trim()
            .parse()
            .map_err(|_| format!("rate {s:?}: bad per-second number"))?;
        let burst: u32 = burst
            .trim()
            .parse()
            .map_err(|_| format!("rate {s:?}: bad burst"))?;
        if !(per_second > 0.0 && per_second.is_finite()) || burst == 0 {
            return Err(format!("rate {s:?}: both numbers must be positive"));
        }
        Ok(Self { per_second, burst })
    }
}

impl TryFrom<String> for RateSpec {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<RateSpec> for String {
    fn from(r: RateSpec) -> String {
        r.to_string()
    }
}

impl fmt::Display for RateSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.per_second, self.burst)
    }
}

/// `roomcast serve` options.
#[derive(Clone, Debug, Args, Serialize, Deserialize)]
pub struct Config {
    /// TOML file with any of these settings (keys as the long flag names with `_`).
    #[arg(long, env = "ROOMCAST_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,

    /// TCP listener for the framed MessagePack protocol.
    #[arg(long, env = "ROOMCAST_TCP", default_value = "127.0.0.1:7400")]
    pub tcp: SocketAddr,

    /// QUIC listener (UDP) for the same protocol: ALPN `roomcast/1`, one bidirectional
    /// stream per connection carrying the TCP framing (docs/TRANSPORTS.md).
    #[arg(long, env = "ROOMCAST_QUIC", default_value = "127.0.0.1:7401")]
    pub quic: SocketAddr,

    /// TLS-over-TCP listener for the same protocol (off unless given), using the
    /// certificate of `--tls-cert` / `--tls-key` or the generated one.
    #[arg(long, env = "ROOMCAST_TLS_TCP")]
    pub tls_tcp: Option<SocketAddr>,

    /// PEM certificate chain for TLS and QUIC. Unset (with `--tls-key` unset): a
    /// self-signed one is generated in DATA_DIR/tls/ on first run and reused.
    #[arg(long, env = "ROOMCAST_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key (PKCS#8, PKCS#1 or SEC1) for `--tls-cert`.
    #[arg(long, env = "ROOMCAST_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// HTTP listener: `GET /health`, and `GET /ws` (the WebSocket bridge).
    #[arg(long, env = "ROOMCAST_HTTP", default_value = "127.0.0.1:7480")]
    pub http: SocketAddr,

    /// HTTPS listener (off unless given): the HTTP listener's routes over TLS
    /// (`wss://HOST/ws` for browsers on https pages, `https://HOST/health`), with
    /// the certificate of `--tls-cert` / `--tls-key` or the generated one.
    #[arg(long, env = "ROOMCAST_HTTPS")]
    pub https: Option<SocketAddr>,

    /// Browser origins allowed to open `/ws`, comma-separated (e.g.
    /// `https://app.example.com`); `*` allows any. Requests without an `Origin`
    /// header (native clients) are always allowed.
    #[arg(
        long,
        env = "ROOMCAST_WS_ALLOWED_ORIGINS",
        value_delimiter = ',',
        default_value = "*"
    )]
    pub ws_allowed_origins: Vec<String>,

    /// Offer per-message compression (RFC 7692 permessage-deflate) on `/ws`.
    /// Off by default: every compressed message costs a deflate per subscriber,
    /// where uncompressed ones share one encoding (docs/TRANSPORTS.md).
    #[arg(
        long,
        env = "ROOMCAST_WS_COMPRESSION",
        default_value_t = false,
        action = clap::ArgAction::Set,
        num_args = 0..=1,
        default_missing_value = "true",
        value_parser = BoolishValueParser::new(),
    )]
    #[serde(deserialize_with = "boolish")]
    pub ws_compression: bool,

    /// Deflate level for `/ws` compression, 1 (fastest) to 9 (smallest).
    #[arg(long, env = "ROOMCAST_WS_COMPRESSION_LEVEL", default_value_t = 1)]
    pub ws_compression_level: u32,

    /// Messages smaller than this many bytes go out uncompressed (acks, typing,
    /// receipts rarely shrink under deflate).
    #[arg(long, env = "ROOMCAST_WS_COMPRESSION_MIN_BYTES", default_value_t = 256)]
    pub ws_compression_min_bytes: usize,

    /// Keep the deflate window between messages (better ratio, about 370 KiB of
    /// state per connection). Off: every message is compressed on its own with
    /// state borrowed from a shared pool, so idle connections cost no more.
    #[arg(
        long,
        env = "ROOMCAST_WS_COMPRESSION_CONTEXT_TAKEOVER",
        default_value_t = false,
        action = clap::ArgAction::Set,
        num_args = 0..=1,
        default_missing_value = "true",
        value_parser = BoolishValueParser::new(),
    )]
    #[serde(deserialize_with = "boolish")]
    pub ws_compression_context_takeover: bool,

    /// Serve the web chat (a single-page app built on the browser SDK, embedded
    /// in the binary) at `/` on the HTTP and HTTPS listeners. Off: `/` is 404.
    #[arg(long, env = "ROOMCAST_WEB_CHAT", default_value_t = true, action = clap::ArgAction::Set,
          value_parser = clap::builder::BoolishValueParser::new())]
    pub web_chat: bool,

    /// The web chat also offers a form to paste a JWT (from `roomcast token` or
    /// your identity provider). Off: it offers the built-in accounts' forms when
    /// `--accounts true`, else it only says how to get a token. A page setting,
    /// not a security boundary: `/ws` takes any valid JWT either way.
    #[arg(long, env = "ROOMCAST_WEB_CHAT_DEV_TOKEN", default_value_t = false, action = clap::ArgAction::Set,
          value_parser = clap::builder::BoolishValueParser::new())]
    #[serde(default)]
    pub web_chat_dev_token: bool,

    /// Keys of the server API (`/api/...`, header `X-Api-Key`) for app backends,
    /// comma-separated; give several to rotate (add the new key, move the
    /// backends, drop the old one). Empty: the server API refuses every request.
    /// Never accepted on the user API, where only JWTs are (docs/HTTP_API.md).
    #[arg(
        long,
        env = "ROOMCAST_API_KEYS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    #[serde(default)]
    pub api_keys: Vec<String>,

    /// Largest REST request body, in bytes; larger ones get `413` (`bad_request`).
    #[arg(long, env = "ROOMCAST_HTTP_MAX_BODY_BYTES", default_value_t = 256 * 1024)]
    pub http_max_body_bytes: usize,

    /// How long a REST request waits for its room's answer, in ms (then `503`, `unavailable`).
    #[arg(
        long,
        env = "ROOMCAST_HTTP_REQUEST_TIMEOUT_MS",
        default_value_t = 10_000
    )]
    pub http_request_timeout_ms: u64,

    /// Directory for the embedded store and the generated JWT secret.
    #[arg(long, env = "ROOMCAST_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,

    /// HS256 secret for JWTs. Unset: a random one is created in DATA_DIR/jwt-secret.
    #[arg(long, env = "ROOMCAST_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,

    /// PEM public key (RSA for RS256, EC P-256 for ES256); replaces the HS256 secret.
    #[arg(long, env = "ROOMCAST_JWT_PUBLIC_KEY")]
    pub jwt_public_key: Option<PathBuf>,

    /// Most simultaneous connections; more are refused with `server_busy`.
    #[arg(long, env = "ROOMCAST_MAX_CONNECTIONS", default_value_t = 100_000)]
    pub max_connections: usize,

    /// Largest frame payload in bytes; a larger declared length gets `frame_too_large` and close.
    #[arg(long, env = "ROOMCAST_MAX_FRAME", default_value_t = 1024 * 1024)]
    pub max_frame: usize,

    /// Time a new connection has to send `hello`, in ms.
    #[arg(long, env = "ROOMCAST_HELLO_TIMEOUT_MS", default_value_t = 10_000)]
    pub hello_timeout_ms: u64,

    /// Heartbeat interval announced in `welcome`, in ms; a client silent for twice this is closed.
    #[arg(long, env = "ROOMCAST_HEARTBEAT_MS", default_value_t = 15_000)]
    pub heartbeat_ms: u64,

    /// Longest message body, in Unicode scalar values (characters).
    #[arg(long, env = "ROOMCAST_MAX_BODY_CHARS", default_value_t = 5_000)]
    pub max_body_chars: usize,

    /// Outbound queue bound per connection, in bytes; overflow closes with `slow_consumer`.
    #[arg(long, env = "ROOMCAST_OUTBOX_BYTES", default_value_t = 4 * 1024 * 1024)]
    pub outbox_bytes: usize,

    /// Room router shards; 0 means one per available core.
    #[arg(long, env = "ROOMCAST_SHARDS", default_value_t = 0)]
    pub shards: usize,

    /// Embedded store fsync policy (see docs/ARCHITECTURE.md, "Durability").
    #[arg(long, env = "ROOMCAST_FSYNC", value_enum, default_value = "always")]
    pub fsync: FsyncPolicy,

    /// Message store: `embedded` (fjall under DATA_DIR) or `scylla` (see docs/STORAGE.md).
    #[arg(long, env = "ROOMCAST_STORE", value_enum, default_value = "embedded")]
    pub store: StoreKind,

    /// Deadline of every store call, in ms; past it the client gets `unavailable`
    /// with a retry hint (a write's outcome is then unknown; retries are idempotent).
    #[arg(long, env = "ROOMCAST_STORE_TIMEOUT_MS", default_value_t = 5_000)]
    pub store_timeout_ms: u64,

    /// Store commits in flight per room shard. At the bound, writes wait in the
    /// shard's pending batch (at most 64 requests per allowed commit; more get
    /// `unavailable`), and a batch that waits past `--store-timeout-ms` is
    /// answered `unavailable` with a retry hint (docs/STORAGE.md, "Back-pressure").
    #[arg(long, env = "ROOMCAST_SHARD_MAX_COMMITS", default_value_t = 64)]
    pub shard_max_commits: usize,

    /// TEST ONLY: delay the store reads of loaded rooms' commands by this many ms
    /// (`src/store/delayed.rs`; CONTRIBUTING.md, "Test-only settings").
    #[arg(
        long,
        env = "ROOMCAST_TEST_STORE_READ_DELAY_MS",
        default_value_t = 0,
        hide = true
    )]
    pub test_store_read_delay_ms: u64,

    /// TEST ONLY: delay every store commit by this many ms (`src/store/delayed.rs`).
    #[arg(
        long,
        env = "ROOMCAST_TEST_STORE_WRITE_DELAY_MS",
        default_value_t = 0,
        hide = true
    )]
    pub test_store_write_delay_ms: u64,

    /// ScyllaDB contact points, `host:port,...` (with `--store scylla`).
    #[arg(long, env = "ROOMCAST_SCYLLA_NODES", default_value = "127.0.0.1:9042")]
    pub scylla_nodes: String,

    /// ScyllaDB keyspace (created with `--scylla-replication` if missing).
    #[arg(long, env = "ROOMCAST_SCYLLA_KEYSPACE", default_value = "roomcast")]
    pub scylla_keyspace: String,

    /// Replication of a keyspace roomcast creates: `simple:N` (development) or
    /// `dc1:3,dc2:3` (NetworkTopologyStrategy, production).
    #[arg(long, env = "ROOMCAST_SCYLLA_REPLICATION", default_value = "simple:1")]
    pub scylla_replication: String,

    /// Consistency of every read and write; nothing is acknowledged below it.
    #[arg(
        long,
        env = "ROOMCAST_SCYLLA_CONSISTENCY",
        value_enum,
        default_value = "local_quorum"
    )]
    pub scylla_consistency: CqlConsistency,

    /// ScyllaDB user name (password authentication).
    #[arg(long, env = "ROOMCAST_SCYLLA_USERNAME")]
    pub scylla_username: Option<String>,

    /// ScyllaDB password.
    #[arg(long, env = "ROOMCAST_SCYLLA_PASSWORD", hide_env_values = true)]
    pub scylla_password: Option<String>,

    /// PEM CA file: connect to ScyllaDB over TLS, verifying the nodes against it.
    #[arg(long, env = "ROOMCAST_SCYLLA_TLS_CA")]
    pub scylla_tls_ca: Option<PathBuf>,

    /// Most ScyllaDB requests in flight from this node; more wait (within the deadline).
    #[arg(long, env = "ROOMCAST_SCYLLA_MAX_INFLIGHT", default_value_t = 1024)]
    pub scylla_max_inflight: usize,

    /// Per-room window of recent `local_id`s kept in memory for idempotent resends
    /// (older ones are looked up in the store).
    #[arg(long, env = "ROOMCAST_DEDUPE_WINDOW", default_value_t = 4096)]
    pub dedupe_window: usize,

    /// How long authors may edit a message, in seconds.
    #[arg(long, env = "ROOMCAST_EDIT_WINDOW_SECS", default_value_t = 900)]
    pub edit_window_secs: u64,

    /// Sending a message marks the room read up to it for the sender.
    #[arg(
        long,
        env = "ROOMCAST_READ_ON_SEND",
        default_value_t = true,
        action = clap::ArgAction::Set,
        num_args = 0..=1,
        default_missing_value = "true",
        value_parser = BoolishValueParser::new(),
    )]
    #[serde(deserialize_with = "boolish")]
    pub read_on_send: bool,

    /// Joining (opening) a room marks it read up to its latest message.
    #[arg(
        long,
        env = "ROOMCAST_READ_ON_JOIN",
        default_value_t = false,
        action = clap::ArgAction::Set,
        num_args = 0..=1,
        default_missing_value = "true",
        value_parser = BoolishValueParser::new(),
    )]
    #[serde(deserialize_with = "boolish")]
    pub read_on_join: bool,

    /// A typing indicator ends after this long without a refresh, in ms.
    #[arg(long, env = "ROOMCAST_TYPING_TTL_MS", default_value_t = 5_000)]
    pub typing_ttl_ms: u64,

    /// A session that sends nothing but heartbeats for this long turns `away`
    /// by itself, and `online` again with its next request. 0: never.
    #[arg(long, env = "ROOMCAST_PRESENCE_AWAY_AFTER_MS", default_value_t = 0)]
    pub presence_away_after_ms: u64,

    /// Rooms with at most this many members list who is online and get presence pushes;
    /// larger rooms get online counts only.
    #[arg(long, env = "ROOMCAST_PRESENCE_LIST_MAX", default_value_t = 100)]
    pub presence_list_max: usize,

    /// Largest attachment size accepted in message metadata, in bytes.
    #[arg(long, env = "ROOMCAST_MAX_ATTACHMENT_BYTES", default_value_t = 100 * 1024 * 1024)]
    pub max_attachment_bytes: u64,

    /// Turn every rate limit off (load tests, benchmarks).
    #[arg(
        long,
        env = "ROOMCAST_NO_RATE_LIMITS",
        default_value_t = false,
        action = clap::ArgAction::Set,
        num_args = 0..=1,
        default_missing_value = "true",
        value_parser = BoolishValueParser::new(),
    )]
    #[serde(deserialize_with = "boolish")]
    pub no_rate_limits: bool,

    /// Per-user `send` limit, PER_SECOND:BURST.
    #[arg(long, env = "ROOMCAST_LIMIT_SEND", default_value = "10:30")]
    pub limit_send: RateSpec,

    /// Per-user `join` limit, PER_SECOND:BURST.
    #[arg(long, env = "ROOMCAST_LIMIT_JOIN", default_value = "10:50")]
    pub limit_join: RateSpec,

    /// Per-user `create_room` limit, PER_SECOND:BURST.
    #[arg(long, env = "ROOMCAST_LIMIT_CREATE_ROOM", default_value = "1:10")]
    pub limit_create_room: RateSpec,

    /// Per-user `history` limit, PER_SECOND:BURST.
    #[arg(long, env = "ROOMCAST_LIMIT_HISTORY", default_value = "10:50")]
    pub limit_history: RateSpec,

    /// Per-user `typing` limit, PER_SECOND:BURST.
    #[arg(long, env = "ROOMCAST_LIMIT_TYPING", default_value = "2:10")]
    pub limit_typing: RateSpec,

    /// Per-user limit on other requests (edits, reactions, reads, admin, lists), PER_SECOND:BURST.
    #[arg(long, env = "ROOMCAST_LIMIT_OTHER", default_value = "20:100")]
    pub limit_other: RateSpec,

    /// Per-user connect (`hello`) limit, PER_SECOND:BURST.
    #[arg(long, env = "ROOMCAST_LIMIT_CONNECT", default_value = "5:20")]
    pub limit_connect: RateSpec,

    /// Redis URL (e.g. redis://127.0.0.1:6379/0): presence, rate limits and cross-node
    /// fan-out shared by every node. Unset: in-memory, single node.
    #[arg(long, env = "ROOMCAST_REDIS")]
    pub redis: Option<String>,

    /// `--redis` is a Redis Cluster: comma-separated seed node URLs. Room
    /// traffic then uses sharded pub/sub (SPUBLISH/SSUBSCRIBE).
    #[arg(
        long,
        env = "ROOMCAST_REDIS_CLUSTER",
        default_value_t = false,
        action = clap::ArgAction::Set,
        num_args = 0..=1,
        default_missing_value = "true",
        value_parser = BoolishValueParser::new(),
    )]
    #[serde(deserialize_with = "boolish")]
    pub redis_cluster: bool,

    /// Rate limiting when Redis cannot answer: `open` allows, `closed` refuses.
    #[arg(
        long,
        env = "ROOMCAST_REDIS_FAILURE",
        value_enum,
        default_value = "open"
    )]
    pub redis_failure: crate::redis::FailurePolicy,

    /// Log what the rate limits would refuse, without refusing.
    #[arg(
        long,
        env = "ROOMCAST_RATE_LIMIT_DRY_RUN",
        default_value_t = false,
        action = clap::ArgAction::Set,
        num_args = 0..=1,
        default_missing_value = "true",
        value_parser = BoolishValueParser::new(),
    )]
    #[serde(deserialize_with = "boolish")]
    pub rate_limit_dry_run: bool,

    /// With Redis: a session's presence lapses this long after its node last refreshed it.
    #[arg(long, env = "ROOMCAST_PRESENCE_TTL_MS", default_value_t = 30_000)]
    pub presence_ttl_ms: u64,

    /// A seq gap in a room's live stream is skipped after this long: with Redis, a
    /// seq a node allocated and never committed; with any store, a send of
    /// unknown outcome whose retry (same `local_id`) has not come.
    #[arg(long, env = "ROOMCAST_GAP_TIMEOUT_MS", default_value_t = 5_000)]
    pub gap_timeout_ms: u64,

    /// With Redis: the stream receiving `message.created` events for offline members.
    #[arg(
        long,
        env = "ROOMCAST_OFFLINE_STREAM",
        default_value = "roomcast:offline"
    )]
    pub offline_stream: String,

    /// With Redis: approximate cap on the offline stream's length.
    #[arg(
        long,
        env = "ROOMCAST_OFFLINE_STREAM_MAXLEN",
        default_value_t = 100_000
    )]
    pub offline_stream_maxlen: usize,

    /// With Redis: this node's id in the cluster (letters, digits, `-`, `_`,
    /// `.`; at most 64). Unset: random per process. Give each node a stable
    /// one (e.g. the pod name) so operators can tell them apart.
    #[arg(long, env = "ROOMCAST_NODE_ID")]
    #[serde(default)]
    pub node_id: Option<String>,

    /// With Redis: a node's registration lease, in ms. A node that stops
    /// renewing (killed, cut off from Redis) leaves the live set this long
    /// after its last renewal, and its `/ready` turns false by then too.
    #[arg(long, env = "ROOMCAST_NODE_LEASE_MS", default_value_t = 10_000)]
    #[serde(default = "default_node_lease_ms")]
    pub node_lease_ms: u64,

    /// With Redis: how often a node renews its lease, in ms (at most a third
    /// of `--node-lease-ms`, so a failed renewal is retried in time).
    #[arg(long, env = "ROOMCAST_NODE_RENEW_MS", default_value_t = 3_000)]
    #[serde(default = "default_node_renew_ms")]
    pub node_renew_ms: u64,

    /// TEST ONLY: run `--redis` nodes on node-local embedded stores (live delivery,
    /// presence and limits work across nodes; history and resume do not).
    #[arg(
        long,
        env = "ROOMCAST_UNSAFE_NODE_LOCAL_STORE",
        default_value_t = false,
        hide = true,
        action = clap::ArgAction::Set,
        num_args = 0..=1,
        default_missing_value = "true",
        value_parser = BoolishValueParser::new(),
    )]
    #[serde(deserialize_with = "boolish")]
    pub unsafe_node_local_store: bool,

    /// Requests awaiting their reply per connection (unacknowledged sends included);
    /// while a connection has this many, the server reads nothing more from it.
    #[arg(long, env = "ROOMCAST_MAX_IN_FLIGHT", default_value_t = 64)]
    pub max_in_flight: usize,

    /// Per-connection `ping` limit, PER_SECOND:BURST (apps ping every heartbeat).
    #[arg(long, env = "ROOMCAST_LIMIT_PING", default_value = "2:20")]
    pub limit_ping: RateSpec,

    /// Simultaneous connections of one user on this node; more are refused
    /// with `limit_exceeded`.
    #[arg(long, env = "ROOMCAST_MAX_CONNECTIONS_PER_USER", default_value_t = 32)]
    pub max_connections_per_user: usize,

    /// Connections from one IP address that have not completed `hello` yet;
    /// more are refused with `limit_exceeded`.
    #[arg(
        long,
        env = "ROOMCAST_MAX_UNAUTHENTICATED_PER_ADDR",
        default_value_t = 64
    )]
    pub max_unauthenticated_per_addr: usize,

    /// Rooms (not direct rooms) one user may have created and not deleted.
    #[arg(long, env = "ROOMCAST_MAX_ROOMS_PER_USER", default_value_t = 500)]
    pub max_rooms_per_user: usize,

    /// Rooms (direct rooms included) one user may be a member of; also the most
    /// rooms one connection may be joined to.
    #[arg(
        long,
        env = "ROOMCAST_MAX_MEMBERSHIPS_PER_USER",
        default_value_t = 2000
    )]
    pub max_memberships_per_user: usize,

    /// Unused invites one room may hold.
    #[arg(long, env = "ROOMCAST_MAX_INVITES_PER_ROOM", default_value_t = 1000)]
    pub max_invites_per_room: usize,

    /// Favorite rooms per user.
    #[arg(long, env = "ROOMCAST_MAX_FAVORITES_PER_USER", default_value_t = 500)]
    pub max_favorites_per_user: usize,

    /// HTTP connections (REST, health, WebSocket upgrades not yet upgraded); more are
    /// answered `503` and closed. Upgraded WebSockets count against `max_connections`.
    #[arg(long, env = "ROOMCAST_MAX_HTTP_CONNECTIONS", default_value_t = 1024)]
    pub max_http_connections: usize,

    /// Time an HTTP connection has to send a request's headers, counted from the
    /// connection's start or the end of its previous response (so also the
    /// keep-alive idle timeout), in ms.
    #[arg(
        long,
        env = "ROOMCAST_HTTP_HEADER_TIMEOUT_MS",
        default_value_t = 10_000
    )]
    pub http_header_timeout_ms: u64,

    /// Return freed heap memory to the OS every this many seconds (glibc's
    /// `malloc_trim`; after a burst the process otherwise stays at its peak). 0: never.
    #[arg(long, env = "ROOMCAST_MALLOC_TRIM_SECS", default_value_t = 10)]
    pub malloc_trim_secs: u64,

    /// Time allowed for a graceful shutdown (SIGTERM / Ctrl-C), in ms.
    #[arg(long, env = "ROOMCAST_SHUTDOWN_TIMEOUT_MS", default_value_t = 10_000)]
    pub shutdown_timeout_ms: u64,

    /// At shutdown, keep serving this long (in ms) with `/ready` answering 503,
    /// so load balancers stop routing new clients here before connections are
    /// asked to leave. 0: ask them at once.
    #[arg(long, env = "ROOMCAST_SHUTDOWN_DRAIN_MS", default_value_t = 0)]
    pub shutdown_drain_ms: u64,

    /// Built-in accounts: register, log in, refresh, profile under `/v1/auth`
    /// and `/v1/me` (docs/OPERATIONS.md). Off: tokens come from your identity
    /// provider, and none of those routes exist.
    #[arg(long, env = "ROOMCAST_ACCOUNTS", default_value_t = false, action = clap::ArgAction::Set,
          value_parser = clap::builder::BoolishValueParser::new())]
    pub accounts: bool,

    /// Built-in accounts: lifetime of issued access tokens (JWTs), in seconds.
    #[arg(long, env = "ROOMCAST_ACCESS_TOKEN_TTL_SECS", default_value_t = 900)]
    pub access_token_ttl_secs: u64,

    /// Built-in accounts: lifetime of refresh tokens, in seconds (each use
    /// replaces the token with a new one of full lifetime).
    #[arg(long, env = "ROOMCAST_REFRESH_TOKEN_TTL_SECS", default_value_t = 30 * 24 * 3600)]
    pub refresh_token_ttl_secs: u64,

    /// Built-in accounts: login attempts per account and per address,
    /// PER_SECOND:BURST (also registrations per address).
    #[arg(long, env = "ROOMCAST_LIMIT_LOGIN", default_value = crate::accounts::DEFAULT_LIMIT_LOGIN)]
    pub limit_login: RateSpec,

    /// Built-in accounts: password hashes computed at once (each takes ~19 MiB
    /// and ~20 ms of a core); more wait for a turn.
    #[arg(long, env = "ROOMCAST_ACCOUNTS_HASH_CONCURRENCY", default_value_t = 2)]
    pub accounts_hash_concurrency: usize,

    /// Log format on stderr: `text` (human) or `json` (one object per line).
    #[arg(long, env = "ROOMCAST_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,

    /// Browser origins allowed to call the HTTP API cross-origin (CORS),
    /// comma-separated, e.g. `https://app.example.com`; `*` allows any. Empty
    /// (the default): no CORS headers, so browsers allow same-origin pages only.
    #[arg(long, env = "ROOMCAST_CORS_ORIGINS", value_delimiter = ',')]
    #[serde(default)]
    pub cors_origins: Vec<String>,

    /// Tenants: every JWT must carry a `tenant` claim, every `--api-keys` entry
    /// is `TENANT:KEY`, and each tenant's rooms, users, directory, presence and
    /// limits are apart from every other's (docs/HTTP_API.md, "Tenants"). Off:
    /// one implicit tenant, and a token with a `tenant` claim is refused.
    #[arg(
        long,
        env = "ROOMCAST_TENANTS",
        default_value_t = false,
        action = clap::ArgAction::Set,
        num_args = 0..=1,
        default_missing_value = "true",
        value_parser = BoolishValueParser::new(),
    )]
    #[serde(default, deserialize_with = "boolish")]
    pub tenants: bool,

    /// The system sender: the user id of messages an app backend publishes as
    /// the system (server API), which may post into any room without being a
    /// member. No token may claim it (a JWT whose `sub` is this id is refused).
    #[arg(long, env = "ROOMCAST_SYSTEM_USER", default_value = "system")]
    #[serde(default = "default_system_user")]
    pub system_user: String,
}

impl Config {
    /// Resolves the final configuration from parsed `serve` arguments: values the
    /// user gave as flags or environment variables win over the TOML file, which
    /// wins over the defaults.
    pub fn resolve(matches: &ArgMatches) -> anyhow::Result<Config> {
        let parsed = Config::from_arg_matches(matches)?;
        let Some(path) = parsed.config.clone() else {
            return Ok(parsed);
        };
        let as_value = serde_json::to_value(&parsed)?;
        let mut explicit = serde_json::Map::new();
        if let serde_json::Value::Object(map) = as_value {
            for (key, value) in map {
                if matches!(
                    matches.value_source(&key),
                    Some(ValueSource::CommandLine | ValueSource::EnvVariable)
                ) {
                    explicit.insert(key, value);
                }
            }
        }
        let mut config: Config = Figment::from(Serialized::defaults(&parsed))
            .merge(Toml::file_exact(&path))
            .merge(Serialized::defaults(explicit))
            .extract()
            .map_err(|e| anyhow::anyhow!("config file {}: {e}", path.display()))?;
        config.config = Some(path);
        Ok(config)
    }

    /// The defaults, with listeners on port 0 and the given data dir: for tests.
    pub fn for_tests(data_dir: impl Into<PathBuf>) -> Config {
        #[derive(clap::Parser)]
        struct Wrapper {
            #[command(flatten)]
            config: Config,
        }
        let mut c = <Wrapper as clap::Parser>::parse_from(["roomcast"]).config;
        c.tcp = ([127, 0, 0, 1], 0).into();
        c.quic = ([127, 0, 0, 1], 0).into();
        c.http = ([127, 0, 0, 1], 0).into();
        c.tls_tcp = Some(([127, 0, 0, 1], 0).into());
        c.https = Some(([127, 0, 0, 1], 0).into());
        c.data_dir = data_dir.into();
        c.jwt_secret = Some("test-secret-test-secret-test-secret".into());
        c.fsync = FsyncPolicy::Never;
        c
    }

    pub fn hello_timeout(&self) -> Duration {
        Duration::from_millis(self.hello_timeout_ms)
    }

    pub fn heartbeat(&self) -> Duration {
        Duration::from_millis(self.heartbeat_ms)
    }

    /// A client silent for this long is closed with `idle_timeout`.
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_millis(self.heartbeat_ms.saturating_mul(2))
    }

    pub fn store_timeout(&self) -> Duration {
        Duration::from_millis(self.store_timeout_ms)
    }

    pub fn shutdown_timeout(&self) -> Duration {
        Duration::from_millis(self.shutdown_timeout_ms)
    }

    /// The node lease settings (`--node-lease-ms`, `--node-renew-ms`).
    pub fn node_settings(&self) -> crate::cluster::NodeSettings {
        crate::cluster::NodeSettings {
            lease: Duration::from_millis(self.node_lease_ms),
            renew: Duration::from_millis(self.node_renew_ms),
        }
    }

    pub fn shard_count(&self) -> usize {
        if self.shards > 0 {
            self.shards
        } else {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        }
    }

    /// Everything `serve` refuses before it touches the network or the disk:
    /// [`validate`](Self::validate), the store's own settings, and the
    /// combinations refused at startup. `roomcast check-config` runs exactly
    /// this (deploy/ files are checked with it in CI).
    pub fn check(&self) -> anyhow::Result<()> {
        self.validate()?;
        if self.store == StoreKind::Scylla {
            crate::store::scylla::ScyllaConfig::from_config(self)?;
            anyhow::ensure!(!self.accounts, "{ACCOUNTS_NEED_EMBEDDED}");
        }
        if self.redis.is_some() {
            anyhow::ensure!(self.unsafe_node_local_store, "{REDIS_NEEDS_SHARED_STORE}");
        }
        Ok(())
    }

    /// Checks values that clap's types alone cannot.
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(self.max_frame >= 64, "max_frame must be at least 64 bytes");
        anyhow::ensure!(
            (1..=9).contains(&self.ws_compression_level),
            "ws_compression_level must be between 1 and 9"
        );
        anyhow::ensure!(
            self.max_frame <= u32::MAX as usize,
            "max_frame must fit in 32 bits"
        );
        anyhow::ensure!(
            self.heartbeat_ms >= 100,
            "heartbeat_ms must be at least 100"
        );
        anyhow::ensure!(
            self.hello_timeout_ms >= 10,
            "hello_timeout_ms must be at least 10"
        );
        anyhow::ensure!(self.max_connections > 0, "max_connections must be positive");
        for (name, v) in [
            ("max_in_flight", self.max_in_flight),
            ("max_connections_per_user", self.max_connections_per_user),
            (
                "max_unauthenticated_per_addr",
                self.max_unauthenticated_per_addr,
            ),
            ("max_rooms_per_user", self.max_rooms_per_user),
            ("max_memberships_per_user", self.max_memberships_per_user),
            ("max_invites_per_room", self.max_invites_per_room),
            ("max_favorites_per_user", self.max_favorites_per_user),
            ("max_http_connections", self.max_http_connections),
        ] {
            anyhow::ensure!(v > 0, "{name} must be positive");
        }
        anyhow::ensure!(
            self.http_header_timeout_ms >= 10,
            "http_header_timeout_ms must be at least 10"
        );
        anyhow::ensure!(
            self.api_keys.iter().all(|k| k.trim().len() >= 16),
            "api_keys: every key must be at least 16 characters"
        );
        anyhow::ensure!(
            self.http_max_body_bytes >= 1024,
            "http_max_body_bytes must be at least 1024"
        );
        anyhow::ensure!(
            self.http_request_timeout_ms >= 10,
            "http_request_timeout_ms must be at least 10"
        );
        anyhow::ensure!(
            self.store_timeout_ms >= 10,
            "store_timeout_ms must be at least 10"
        );
        anyhow::ensure!(
            self.shard_max_commits >= 1,
            "shard_max_commits must be at least 1"
        );
        anyhow::ensure!(
            self.scylla_max_inflight > 0,
            "scylla_max_inflight must be positive"
        );
        anyhow::ensure!(
            self.outbox_bytes >= 4096,
            "outbox_bytes must be at least 4096"
        );
        anyhow::ensure!(self.max_body_chars > 0, "max_body_chars must be positive");
        anyhow::ensure!(
            self.tls_cert.is_some() == self.tls_key.is_some(),
            "tls_cert and tls_key must be given together"
        );
        anyhow::ensure!(
            self.access_token_ttl_secs > 0 && self.refresh_token_ttl_secs > 0,
            "access_token_ttl_secs and refresh_token_ttl_secs must be positive"
        );
        anyhow::ensure!(
            self.accounts_hash_concurrency > 0,
            "accounts_hash_concurrency must be positive"
        );
        crate::http::cors::check_origins(&self.cors_origins)?;
        self.node_settings()
            .check()
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        if let Some(id) = &self.node_id {
            crate::cluster::NodeId::new(id).map_err(|e| anyhow::anyhow!("node_id: {e}"))?;
        }
        crate::ids::UserId::plain(&self.system_user)
            .map_err(|e| anyhow::anyhow!("system_user: {e}"))?;
        if self.tenants {
            anyhow::ensure!(
                !self.accounts,
                "accounts and tenants: the built-in accounts are single-tenant; \
                 with --tenants, tokens come from your identity provider"
            );
            for k in &self.api_keys {
                crate::tenant::api_key(k.trim()).map_err(|e| anyhow::anyhow!("api_keys: {e}"))?;
            }
        }
        Ok(())
    }
}

/// Why `--accounts` is refused on the ScyllaDB store.
pub const ACCOUNTS_NEED_EMBEDDED: &str = "--accounts needs the embedded store: the built-in \
     accounts keep their table in it and have no CQL table yet (docs/STORAGE.md)";

/// Why `--redis` is refused (unless the hidden test-only switch is on).
pub const REDIS_NEEDS_SHARED_STORE: &str = "--redis joins this node to a multi-node cluster, \
     whose nodes must share one message store for history and resume; multi-node on the \
     ScyllaDB store is not enabled yet and the embedded store is node-local. Run without \
     --redis for a single node.";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_refuses_what_serve_refuses() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Config::for_tests(dir.path());
        c.check().unwrap();
        c.redis = Some("redis://127.0.0.1:6379".into());
        assert!(c.check().unwrap_err().to_string().contains("--redis"));
        c.redis = None;
        c.store = StoreKind::Scylla;
        c.check().unwrap();
        c.accounts = true;
        assert!(c.check().unwrap_err().to_string().contains("--accounts"));
        c.accounts = false;
        c.scylla_replication = "three".into();
        assert!(c.check().is_err(), "the ScyllaDB settings are checked");
    }

    #[test]
    fn node_settings_come_from_flags_and_toml_and_are_checked() {
        #[derive(clap::Parser)]
        struct Wrapper {
            #[command(flatten)]
            config: Config,
        }
        use clap::CommandFactory;
        let parse = |args: &[&str]| {
            let mut all = vec!["roomcast"];
            all.extend_from_slice(args);
            Config::resolve(&Wrapper::command().get_matches_from(all)).unwrap()
        };
        let c = parse(&[]);
        assert_eq!(
            (c.node_id.as_deref(), c.node_lease_ms, c.node_renew_ms),
            (None, 10_000, 3_000)
        );
        c.validate().unwrap();
        let c = parse(&[
            "--node-id",
            "eu-1",
            "--node-lease-ms",
            "3000",
            "--node-renew-ms",
            "1000",
        ]);
        c.validate().unwrap();
        assert_eq!(c.node_settings().lease, Duration::from_secs(3));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("roomcast.toml");
        std::fs::write(&path, "node_id = \"pod-7\"\nnode_lease_ms = 9000\n").unwrap();
        let c = parse(&["--config", path.to_str().unwrap()]);
        assert_eq!(
            (c.node_id.as_deref(), c.node_lease_ms, c.node_renew_ms),
            (Some("pod-7"), 9000, 3000)
        );
        c.validate().unwrap();
        for bad in [
            &["--node-renew-ms", "4000"][..],
            &["--node-lease-ms", "200", "--node-renew-ms", "50"],
            &["--node-renew-ms", "0"],
            &["--node-id", "a b"],
        ] {
            assert!(parse(bad).validate().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn rate_spec_parses() {
        let r: RateSpec = "10:30".parse().unwrap();
        assert_eq!((r.per_second, r.burst), (10.0, 30));
        assert!("10".parse::<RateSpec>().is_err());
        assert!("0:3".parse::<RateSpec>().is_err());
        assert!("1:0".parse::<RateSpec>().is_err());
    }

    #[test]
    fn toml_file_sits_under_flags_and_over_defaults() {
        use clap::{CommandFactory, Parser};
        #[derive(Parser)]
        struct Wrapper {
            #[command(flatten)]
            config: Config,
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("roomcast.toml");
        std::fs::write(
            &path,
            "max_frame = 2048\nheartbeat_ms = 500\ntcp = \"127.0.0.1:9999\"\nlimit_send = \"3:4\"\nfsync = \"never\"\n",
        )
        .unwrap();
        let matches = Wrapper::command().get_matches_from([
            "roomcast",
            "--config",
            path.to_str().unwrap(),
            "--heartbeat-ms",
            "700",
        ]);
        let c = Config::resolve(&matches).unwrap();
        assert_eq!(c.max_frame, 2048, "from the file");
        assert_eq!(c.heartbeat_ms, 700, "the flag wins over the file");
        assert_eq!(c.tcp, "127.0.0.1:9999".parse().unwrap());
        assert_eq!(c.limit_send, "3:4".parse().unwrap());
        assert_eq!(c.fsync, FsyncPolicy::Never);
        assert_eq!(c.hello_timeout_ms, 10_000, "default");

        std::fs::write(&path, "max_frame = \"lots\"\n").unwrap();
        let matches =
            Wrapper::command().get_matches_from(["roomcast", "--config", path.to_str().unwrap()]);
        let err = Config::resolve(&matches).unwrap_err().to_string();
        assert!(err.contains("max_frame"), "{err}");
    }

    #[test]
    fn booleans_take_every_spelling_from_flags_env_and_toml() {
        use clap::{CommandFactory, Parser};
        #[derive(Parser)]
        struct Wrapper {
            #[command(flatten)]
            config: Config,
        }
        let parse = |args: &[&str]| {
            let mut all = vec!["roomcast"];
            all.extend_from_slice(args);
            Config::resolve(&Wrapper::command().get_matches_from(all)).unwrap()
        };
        for (word, want) in [
            ("true", true),
            ("1", true),
            ("yes", true),
            ("on", true),
            ("TRUE", true),
            ("false", false),
            ("0", false),
            ("no", false),
            ("off", false),
        ] {
            let c = parse(&[
                &format!("--no-rate-limits={word}"),
                "--read-on-send",
                word,
                "--tenants",
                word,
            ]);
            assert_eq!(
                (c.no_rate_limits, c.read_on_send, c.tenants),
                (want, want, want),
                "{word}"
            );
        }
        assert!(
            parse(&["--no-rate-limits"]).no_rate_limits,
            "a bare flag is true"
        );
        assert!(Wrapper::command()
            .try_get_matches_from(["roomcast", "--read-on-send=maybe"])
            .is_err());

        // The environment, as the README promises: ROOMCAST_NO_RATE_LIMITS=1.
        // (Only this test sets these variables.)
        std::env::set_var("ROOMCAST_NO_RATE_LIMITS", "1");
        std::env::set_var("ROOMCAST_READ_ON_JOIN", "on");
        let c = parse(&[]);
        std::env::remove_var("ROOMCAST_NO_RATE_LIMITS");
        std::env::remove_var("ROOMCAST_READ_ON_JOIN");
        assert!(c.no_rate_limits && c.read_on_join);

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("roomcast.toml");
        std::fs::write(
            &path,
            "no_rate_limits = \"yes\"\nread_on_send = 0\nws_compression = \"on\"\nredis_cluster = true\ntenants = \"yes\"\n",
        )
        .unwrap();
        let c = parse(&["--config", path.to_str().unwrap()]);
        assert!(
            c.no_rate_limits && !c.read_on_send && c.ws_compression && c.redis_cluster && c.tenants
        );
        std::fs::write(&path, "no_rate_limits = \"maybe\"\n").unwrap();
        let err = Config::resolve(&Wrapper::command().get_matches_from([
            "roomcast",
            "--config",
            path.to_str().unwrap(),
        ]))
        .unwrap_err()
        .to_string();
        assert!(err.contains("true/false/1/0/yes/no/on/off"), "{err}");
    }

    #[test]
    fn defaults_are_valid() {
        let c = Config::for_tests("/tmp/x");
        c.validate().unwrap();
        assert_eq!(c.max_frame, 1024 * 1024);
        assert_eq!(c.hello_timeout_ms, 10_000);
        assert_eq!(c.max_body_chars, 5_000);
        assert!(!c.ws_compression, "WebSocket compression is off by default");
    }

    #[test]
    fn web_chat_is_on_by_default_and_takes_boolish_values() {
        use clap::Parser;
        #[derive(Parser)]
        struct Wrapper {
            #[command(flatten)]
            config: Config,
        }
        assert!(Config::for_tests("/tmp/x").web_chat);
        assert!(!Config::for_tests("/tmp/x").web_chat_dev_token);
        for (v, on) in [
            ("off", false),
            ("no", false),
            ("0", false),
            ("yes", true),
            ("on", true),
        ] {
            let c = Wrapper::parse_from(["roomcast", "--web-chat", v]).config;
            assert_eq!(c.web_chat, on, "{v}");
        }
    }

    #[test]
    fn tenants_need_tenant_keys_and_no_accounts() {
        let mut c = Config::for_tests("/tmp/x");
        assert!(!c.tenants, "off by default");
        c.tenants = true;
        c.api_keys = vec!["acme:acme-key-0123456789".into()];
        c.validate().unwrap();
        c.api_keys = vec!["acme-key-0123456789".into()];
        assert!(c.validate().is_err(), "a key without a tenant");
        c.api_keys = vec!["bad tenant:acme-key-0123456789".into()];
        assert!(c.validate().is_err());
        c.api_keys = vec!["acme:short".into()];
        assert!(c.validate().is_err());
        c.api_keys.clear();
        c.accounts = true;
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("single-tenant"), "{err}");
    }

    #[test]
    fn ws_compression_level_is_checked() {
        let mut c = Config::for_tests("/tmp/x");
        c.ws_compression_level = 0;
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("ws_compression_level"), "{err}");
        c.ws_compression_level = 9;
        c.validate().unwrap();
    }

    #[test]
    fn store_settings_come_from_flags_and_toml() {
        use clap::{CommandFactory, Parser};
        #[derive(Parser)]
        struct Wrapper {
            #[command(flatten)]
            config: Config,
        }
        let c = Config::for_tests("/tmp/x");
        assert_eq!(
            c.store,
            StoreKind::Embedded,
            "the embedded store is the default"
        );
        assert_eq!(c.scylla_consistency, CqlConsistency::LocalQuorum);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("roomcast.toml");
        std::fs::write(
            &path,
            "store = \"scylla\"\nscylla_nodes = \"10.0.0.1:9042,10.0.0.2:9042\"\n\
             scylla_consistency = \"local_one\"\nscylla_replication = \"dc1:3\"\n\
             scylla_max_inflight = 64\nstore_timeout_ms = 2000\n",
        )
        .unwrap();
        let matches = Wrapper::command().get_matches_from([
            "roomcast",
            "--config",
            path.to_str().unwrap(),
            "--scylla-keyspace",
            "chat",
            "--scylla-consistency",
            "each_quorum",
        ]);
        let c = Config::resolve(&matches).unwrap();
        assert_eq!(c.store, StoreKind::Scylla);
        assert_eq!(c.scylla_nodes, "10.0.0.1:9042,10.0.0.2:9042");
        assert_eq!(c.scylla_keyspace, "chat");
        assert_eq!(
            c.scylla_consistency,
            CqlConsistency::EachQuorum,
            "the flag wins"
        );
        assert_eq!((c.scylla_max_inflight, c.store_timeout_ms), (64, 2000));
        let s = crate::store::scylla::ScyllaConfig::from_config(&c).unwrap();
        assert_eq!(s.nodes.len(), 2);
        let mut bad = c.clone();
        bad.scylla_keyspace = "Chat; DROP".into();
        assert!(crate::store::scylla::ScyllaConfig::from_config(&bad).is_err());
    }
}
