//! Configuration: one typed struct, loaded from a file (TOML or JSON), then the
//! environment (`HITVAULT_*`), then command-line flags, each layer overriding
//! the one before. Every setting has one name, documented in `docs/reference/configuration.md`.
//!
//! Loading takes the environment as an argument, so tests never touch the real
//! one. Unknown keys, unknown `HITVAULT_*` variables and bad values fail with
//! the setting's name, where it came from, and why.
//!
//! What the sandbox allows follows from here (see `confinement`): `data_dir`
//! read-write, the `listen` port bound; `geoip_database`, `ingest_token_file`
//! and the config file are read before confinement, so no rule grants them
//! afterwards; `tls.cert_file` and `tls.key_file` are read again whenever
//! they change, so their directories are readable. `user`, `seccomp` and
//! `landlock` choose how the sandbox is applied.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// Default data directory, relative to the working directory.
pub const DEFAULT_DATA_DIR: &str = "./data";
/// Default data directory when started as root: a system path every
/// service account can reach (and the systemd unit's `StateDirectory=`),
/// where `./data` may lie under a home only root can enter.
pub const ROOT_DATA_DIR: &str = "/var/lib/hitvault";
/// The value of `user` that picks the account: as root the first of
/// [`AUTO_ACCOUNTS`] that exists; otherwise the current account.
pub const AUTO_USER: &str = "auto";
/// The accounts `user = "auto"` tries as root, in this order.
pub const AUTO_ACCOUNTS: [&str; 2] = ["hitvault", "nobody"];
/// Default HTTP address: loopback only until the operator chooses otherwise.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

/// Most names `hostnames` may hold.
pub const MAX_HOSTNAMES: usize = 32;

/// A bad setting: which one, from where, and why.
#[derive(Debug, thiserror::Error)]
#[error("invalid setting `{key}` (from {origin}): {reason}")]
pub struct ConfigError {
    pub key: String,
    pub origin: String,
    pub reason: String,
}

pub(crate) fn bad(key: &str, origin: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        key: key.into(),
        origin: origin.into(),
        reason: reason.into(),
    }
}

/// A site declared in the configuration: a hostname, or a hostname with aliases.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum SiteDecl {
    Name(String),
    Full {
        hostname: String,
        #[serde(default)]
        aliases: Vec<String>,
    },
}

/// A byte size: an integer, or a string such as `"512MiB"` or `"1GB"`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Size {
    Bytes(u64),
    Text(String),
}

/// The configuration file, as written. Every field is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub data_dir: Option<PathBuf>,
    pub listen: Option<String>,
    pub sites: Option<Vec<SiteDecl>>,
    pub trusted_proxies: Option<Vec<String>>,
    pub excluded_addresses: Option<Vec<String>>,
    pub ingest_token_file: Option<PathBuf>,
    pub geoip_database: Option<PathBuf>,
    pub referrer_spam: Option<Vec<String>>,
    pub log_level: Option<String>,
    pub log_format: Option<String>,
    pub queue: Option<QueueFile>,
    pub store: Option<StoreFile>,
    pub batch: Option<BatchFile>,
    pub retention: Option<RetentionFile>,
    pub user: Option<String>,
    pub seccomp: Option<String>,
    pub landlock: Option<String>,
    pub hostnames: Option<Vec<String>>,
    pub allow_plain_http: Option<bool>,
    pub tls: Option<TlsFile>,
    pub accounts: Option<AccountsFile>,
    pub cluster: Option<ClusterFile>,
}

/// `[cluster]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterFile {
    pub enable: Option<bool>,
    pub node_id: Option<i64>,
    pub bind: Option<String>,
    pub peers: Option<BTreeMap<String, String>>,
    pub key_file: Option<PathBuf>,
    pub ack: Option<String>,
    pub init: Option<bool>,
    pub snapshot_every: Option<i64>,
}

/// When a cluster node answers 202.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Ack {
    /// Once the batch holding the hit is committed on a majority of voters.
    Majority,
    /// Once the hit is fsync'd in this node's queue, as a single node does:
    /// a node that never comes back loses what it had not yet sent.
    Local,
}

/// A cluster node's settings (`[cluster]` with `enable = true`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ClusterConfig {
    /// This node's id: 1 to 65535, unique in the cluster's life.
    pub node_id: u64,
    /// Address of the cluster RPC, on the cluster network only.
    pub bind: SocketAddr,
    /// The other nodes: id to address.
    pub peers: BTreeMap<u64, SocketAddr>,
    /// The shared key that authenticates every cluster frame.
    pub key_file: PathBuf,
    pub ack: Ack,
    /// On a node's first start, form the cluster from this node and
    /// `peers` (set on every founding node alike); unset, wait to be added.
    pub init: bool,
    /// A snapshot is built after this many log entries were applied since
    /// the last one; the log it covers is then dropped but for its last
    /// `snapshot_every` entries (see [`ClusterConfig::snapshots`]).
    pub snapshot_every: u64,
}

/// `cluster.snapshot_every`'s default and bounds.
pub const SNAPSHOT_EVERY: u64 = 20_000;
pub const SNAPSHOT_EVERY_MIN: u64 = 10;
pub const SNAPSHOT_EVERY_MAX: u64 = 10_000_000;

impl ClusterConfig {
    /// When snapshots are built and how much log they leave: a whole
    /// interval. A node that installs a snapshot then finds the log that
    /// follows it on the leader as long as the install took less than one
    /// interval; with less kept, a node installing a large store under
    /// heavy load would find it purged again, and again (measured: with a
    /// tenth kept, a new node in the netns test installed 40 snapshots in
    /// a row and never caught up).
    pub fn snapshots(&self) -> hitvault_cluster::Snapshots {
        hitvault_cluster::Snapshots {
            every: self.snapshot_every,
            keep: self.snapshot_every,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountsFile {
    pub require_second_factor: Option<bool>,
    pub session_idle_minutes: Option<u64>,
    pub session_lifetime_hours: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFile {
    pub mode: Option<String>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueFile {
    pub max_bytes: Option<Size>,
    pub segment_bytes: Option<Size>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreFile {
    pub memory_limit: Option<String>,
    pub threads: Option<u16>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchFile {
    pub max_rows: Option<usize>,
    pub max_wait_ms: Option<u64>,
}

/// `[retention]`: numbers are read as signed so that a negative one is
/// refused naming its key.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionFile {
    pub days: Option<i64>,
    pub sites: Option<BTreeMap<String, i64>>,
    pub archive_dir: Option<PathBuf>,
}

/// Longest retention period that can be configured (about 100 years).
pub const MAX_RETENTION_DAYS: u32 = 36_500;

/// Log output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// What the seccomp filter does with a system call its allow-list does not name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SeccompSetting {
    /// Name the call on stderr, then die of SIGSYS (production).
    Enforce,
    /// Log the call (kernel audit record type=1326) and let it through: for
    /// finding a missing syscall, never for production.
    Audit,
}

impl SeccompSetting {
    /// The sandbox crate's mode.
    pub fn mode(self) -> hitvault_sandbox::seccomp::Mode {
        match self {
            SeccompSetting::Enforce => hitvault_sandbox::seccomp::Mode::Enforce,
            SeccompSetting::Audit => hitvault_sandbox::seccomp::Mode::Audit,
        }
    }
}

/// What to do when the kernel cannot enforce the Landlock rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LandlockSetting {
    /// Enforce what the kernel supports, log the level reached, and carry on
    /// (with a warning) when Landlock is missing or refused.
    BestEffort,
    /// Refuse to start unless the file and TCP-port rules are enforced
    /// (Landlock ABI 4 or later).
    Required,
}

/// Where the listener's TLS certificate comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TlsMode {
    /// The appliance's own CA, created in `<data_dir>/tls/`, issues the
    /// certificate (the default on a listener other machines can reach).
    LocalCa,
    /// `tls.cert_file` and `tls.key_file` (the default when they are set).
    Files,
    /// No TLS: plain HTTP only (the default on a loopback listener).
    Off,
}

impl TlsMode {
    /// The setting's value, as written.
    pub fn name(self) -> &'static str {
        match self {
            TlsMode::LocalCa => "local-ca",
            TlsMode::Files => "files",
            TlsMode::Off => "off",
        }
    }
}

/// The effective configuration, with every default filled in.
#[derive(Clone, Debug, Serialize)]
pub struct Config {
    /// Where everything is kept: `hitvault.duckdb`, `queue/`, `salts/`, `control.sock`.
    pub data_dir: PathBuf,
    /// HTTP listen address (`host:port`).
    pub listen: SocketAddr,
    /// Declared sites; merged with sites added at run time.
    pub sites: Vec<SiteDecl>,
    /// Peers whose `X-Forwarded-For` is believed. Empty: none.
    #[serde(serialize_with = "as_strings")]
    pub trusted_proxies: Vec<IpNet>,
    /// Client addresses whose hits are dropped.
    #[serde(serialize_with = "as_strings")]
    pub excluded_addresses: Vec<IpNet>,
    /// File holding the bearer token of `POST /api/ingest/batch`; unset disables it.
    pub ingest_token_file: Option<PathBuf>,
    /// A country database (mmdb with `country_code`) replacing the bundled one.
    pub geoip_database: Option<PathBuf>,
    /// Extra referrer-spam domains, added to the built-in list.
    pub referrer_spam: Vec<String>,
    /// `error`, `warn`, `info`, `debug`, `trace`, or a tracing filter.
    pub log_level: String,
    pub log_format: LogFormat,
    /// Most bytes of queue segments not yet in DuckDB; beyond, ingest answers 503.
    pub queue_max_bytes: u64,
    /// Size of one queue segment file.
    pub queue_segment_bytes: u64,
    /// DuckDB memory limit.
    pub store_memory_limit: String,
    /// DuckDB query threads.
    pub store_threads: u16,
    /// Most hits in one DuckDB transaction.
    pub batch_max_rows: usize,
    /// Longest wait for more hits before committing a smaller batch.
    pub batch_max_wait_ms: u64,
    /// Days a hit is kept, for every site without its own period; 0 keeps
    /// hits forever (the default).
    pub retention_days: u32,
    /// Per-site retention periods (normalised hostname -> days; 0: forever).
    pub retention_sites: BTreeMap<String, u32>,
    /// Where expired hits are archived (Takeout Parquet) before they are
    /// deleted; unset: `<data_dir>/archive`.
    pub archive_dir: Option<PathBuf>,
    /// The unprivileged account to switch to when started as root (required
    /// then); `auto` picks one (see [`Config::started_as`]).
    pub user: Option<String>,
    /// What seccomp does with unlisted system calls.
    pub seccomp: SeccompSetting,
    /// Whether the daemon may run when Landlock is not (fully) available.
    pub landlock: LandlockSetting,
    /// The DNS names (or IP addresses) the appliance answers to: the
    /// certificate's names, and the only `Host` values the dashboard and
    /// the API are served to besides the loopback names.
    pub hostnames: Vec<String>,
    /// Serve plain HTTP to peers that are not on this machine (a TLS proxy
    /// in front); otherwise they are redirected to https.
    pub allow_plain_http: bool,
    /// Where the TLS certificate comes from.
    pub tls_mode: TlsMode,
    /// The organisation's certificate chain (PEM, leaf first).
    pub tls_cert_file: Option<PathBuf>,
    /// Its private key (PEM).
    pub tls_key_file: Option<PathBuf>,
    /// Every user needs a passkey or an authenticator app besides a password.
    pub require_second_factor: bool,
    /// Minutes without a request after which a session ends.
    pub session_idle_minutes: u64,
    /// Hours after sign-in after which a session ends, used or not.
    pub session_lifetime_hours: u64,
    /// The cluster node this daemon is; `None`: a single node.
    #[serde(serialize_with = "cluster_table")]
    pub cluster: Option<ClusterConfig>,
    /// `tls.mode` was set by some layer (else it follows `listen` and the files).
    #[serde(skip)]
    tls_mode_set: bool,
    /// `data_dir` was set by the file, the environment or a flag (so the
    /// default for root does not replace it).
    #[serde(skip)]
    data_dir_set: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            listen: DEFAULT_LISTEN.parse().expect("default listen address"),
            sites: vec![],
            trusted_proxies: vec![],
            excluded_addresses: vec![],
            ingest_token_file: None,
            geoip_database: None,
            referrer_spam: vec![],
            log_level: "info".into(),
            log_format: LogFormat::Text,
            queue_max_bytes: 1 << 30,
            queue_segment_bytes: 64 << 20,
            store_memory_limit: "1GB".into(),
            store_threads: 2,
            batch_max_rows: 10_000,
            batch_max_wait_ms: 200,
            retention_days: 0,
            retention_sites: BTreeMap::new(),
            archive_dir: None,
            user: None,
            seccomp: SeccompSetting::Enforce,
            landlock: LandlockSetting::BestEffort,
            hostnames: vec![],
            allow_plain_http: false,
            require_second_factor: false,
            session_idle_minutes: 60,
            session_lifetime_hours: 12,
            tls_mode: TlsMode::Off,
            tls_cert_file: None,
            tls_key_file: None,
            cluster: None,
            tls_mode_set: false,
            data_dir_set: false,
        }
    }
}

fn as_strings<S: serde::Serializer>(nets: &[IpNet], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(nets.iter().map(|n| n.to_string()))
}

/// Flags that override the file and the environment.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    pub config: Option<PathBuf>,
    pub data_dir: Option<PathBuf>,
    pub listen: Option<String>,
    pub user: Option<String>,
    pub seccomp: Option<String>,
    pub landlock: Option<String>,
}

/// Every environment variable the daemon reads.
pub const ENV_VARS: &[&str] = &[
    "HITVAULT_CONFIG",
    "HITVAULT_DATA_DIR",
    "HITVAULT_LISTEN",
    "HITVAULT_SITES",
    "HITVAULT_TRUSTED_PROXIES",
    "HITVAULT_EXCLUDED_ADDRESSES",
    "HITVAULT_INGEST_TOKEN_FILE",
    "HITVAULT_GEOIP_DATABASE",
    "HITVAULT_REFERRER_SPAM",
    "HITVAULT_LOG",
    "HITVAULT_LOG_FORMAT",
    "HITVAULT_QUEUE_MAX_BYTES",
    "HITVAULT_STORE_MEMORY_LIMIT",
    "HITVAULT_RETENTION_DAYS",
    "HITVAULT_RETENTION_SITES",
    "HITVAULT_ARCHIVE_DIR",
    "HITVAULT_USER",
    "HITVAULT_SECCOMP",
    "HITVAULT_LANDLOCK",
    "HITVAULT_HOSTNAMES",
    "HITVAULT_ALLOW_PLAIN_HTTP",
    "HITVAULT_TLS_MODE",
    "HITVAULT_TLS_CERT_FILE",
    "HITVAULT_TLS_KEY_FILE",
    "HITVAULT_REQUIRE_SECOND_FACTOR",
    "HITVAULT_SESSION_IDLE_MINUTES",
    "HITVAULT_SESSION_LIFETIME_HOURS",
];

/// `v` if it is within `lo..=hi`, else an error naming `key`.
fn check_range(key: &str, origin: &str, v: u64, lo: u64, hi: u64) -> Result<u64, ConfigError> {
    if (lo..=hi).contains(&v) {
        Ok(v)
    } else {
        Err(bad(
            key,
            origin,
            format!("{v} is not between {lo} and {hi}"),
        ))
    }
}

/// A whole number from an environment variable, or an error naming `key`.
fn parse_number(key: &str, origin: &str, v: &str) -> Result<u64, ConfigError> {
    v.trim()
        .parse()
        .map_err(|_| bad(key, origin, format!("{v:?} is not a whole number")))
}

pub fn parse_size(key: &str, origin: &str, s: &Size) -> Result<u64, ConfigError> {
    let text = match s {
        Size::Bytes(n) => return Ok(*n),
        Size::Text(t) => t.trim(),
    };
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (num, unit) = text.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| bad(key, origin, format!("{text:?} is not a size like 512MiB")))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1000,
        "kib" => 1 << 10,
        "m" | "mb" => 1_000_000,
        "mib" => 1 << 20,
        "g" | "gb" => 1_000_000_000,
        "gib" => 1 << 30,
        other => {
            return Err(bad(
                key,
                origin,
                format!("unknown size unit {other:?} (use B, KiB, MiB, GiB, KB, MB, GB)"),
            ));
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| bad(key, origin, "size is too large"))
}

fn parse_listen(key: &str, origin: &str, s: &str) -> Result<SocketAddr, ConfigError> {
    s.trim().parse().map_err(|_| {
        bad(
            key,
            origin,
            format!(
                "{s:?} is not host:port with a numeric IP address (e.g. 127.0.0.1:8080, [::]:443)"
            ),
        )
    })
}

/// `cluster` as the file's table: every key, `enable` false on a single node.
fn cluster_table<S: serde::Serializer>(c: &Option<ClusterConfig>, s: S) -> Result<S::Ok, S::Error> {
    let v = match c {
        Some(c) => serde_json::json!({
            "enable": true,
            "node_id": c.node_id,
            "bind": c.bind.to_string(),
            "peers": c.peers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>(),
            "key_file": c.key_file,
            "ack": c.ack,
            "init": c.init,
            "snapshot_every": c.snapshot_every,
        }),
        None => serde_json::json!({
            "enable": false,
            "node_id": null,
            "bind": null,
            "peers": {},
            "key_file": null,
            "ack": "majority",
            "init": false,
            "snapshot_every": SNAPSHOT_EVERY,
        }),
    };
    serde::Serialize::serialize(&v, s)
}

fn parse_cluster(origin: &str, c: ClusterFile) -> Result<Option<ClusterConfig>, ConfigError> {
    // A table with `enable` off is inert, whatever else it holds (the NixOS
    // module writes its defaults).
    if !c.enable.unwrap_or(false) {
        return Ok(None);
    }
    let max = hitvault_cluster::MAX_NODE_ID;
    let id = |key: &str, v: i64| -> Result<u64, ConfigError> {
        u64::try_from(v)
            .ok()
            .filter(|v| (1..=max).contains(v))
            .ok_or_else(|| bad(key, origin, format!("{v} is not a node id from 1 to {max}")))
    };
    let node_id = id(
        "cluster.node_id",
        c.node_id
            .ok_or_else(|| bad("cluster.node_id", origin, "a cluster node needs its id"))?,
    )?;
    let bind = parse_listen(
        "cluster.bind",
        origin,
        &c.bind.ok_or_else(|| {
            bad(
                "cluster.bind",
                origin,
                "a cluster node needs the address of its cluster RPC (host:port on the cluster \
                 network)",
            )
        })?,
    )?;
    if bind.ip().is_unspecified() || bind.port() == 0 {
        return Err(bad(
            "cluster.bind",
            origin,
            format!("{bind} must name one address of the cluster network and a port"),
        ));
    }
    let mut peers = BTreeMap::new();
    for (k, v) in c.peers.unwrap_or_default() {
        let key = format!("cluster.peers.{k}");
        let n = k
            .trim()
            .parse::<i64>()
            .map_err(|_| bad(&key, origin, format!("{k:?} is not a node id")))?;
        let n = id(&key, n)?;
        if n == node_id {
            return Err(bad(
                &key,
                origin,
                format!("{n} is this node's own id (`cluster.node_id`); list the other nodes"),
            ));
        }
        peers.insert(n, parse_listen(&key, origin, &v)?);
    }
    let key_file = c.key_file.ok_or_else(|| {
        bad(
            "cluster.key_file",
            origin,
            "a cluster node needs the cluster key (a file of at least 32 bytes, the same on \
             every node)",
        )
    })?;
    let ack = match c.ack.as_deref().map(str::trim) {
        None | Some("majority") => Ack::Majority,
        Some("local") => Ack::Local,
        Some(other) => {
            return Err(bad(
                "cluster.ack",
                origin,
                format!("{other:?} is not `majority` or `local`"),
            ));
        }
    };
    let snapshot_every = match c.snapshot_every {
        None => SNAPSHOT_EVERY,
        Some(n) => u64::try_from(n)
            .ok()
            .filter(|n| (SNAPSHOT_EVERY_MIN..=SNAPSHOT_EVERY_MAX).contains(n))
            .ok_or_else(|| {
                bad(
                    "cluster.snapshot_every",
                    origin,
                    format!(
                        "{n} is not a number of log entries from {SNAPSHOT_EVERY_MIN} to \
                         {SNAPSHOT_EVERY_MAX}"
                    ),
                )
            })?,
    };
    Ok(Some(ClusterConfig {
        node_id,
        bind,
        peers,
        key_file,
        ack,
        init: c.init.unwrap_or(false),
        snapshot_every,
    }))
}

fn parse_nets(key: &str, origin: &str, items: &[String]) -> Result<Vec<IpNet>, ConfigError> {
    items
        .iter()
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<IpNet>()
                .or_else(|_| s.parse::<std::net::IpAddr>().map(IpNet::from))
                .map_err(|_| {
                    bad(
                        key,
                        origin,
                        format!("{s:?} is not an IP address or CIDR range"),
                    )
                })
        })
        .collect()
}

fn parse_days(key: &str, origin: &str, v: i64) -> Result<u32, ConfigError> {
    u32::try_from(v)
        .ok()
        .filter(|d| *d <= MAX_RETENTION_DAYS)
        .ok_or_else(|| {
            bad(
                key,
                origin,
                format!(
                    "{v} is not a number of days from 0 (keep forever) to {MAX_RETENTION_DAYS}"
                ),
            )
        })
}

fn parse_site_days(
    origin: &str,
    sites: &BTreeMap<String, i64>,
) -> Result<BTreeMap<String, u32>, ConfigError> {
    sites
        .iter()
        .map(|(h, d)| {
            let key = format!("retention.sites.{h}");
            let host = hitvault_core::sites::normalize_host(h)
                .map_err(|e| bad(&key, origin, format!("{h:?} is not a hostname: {e}")))?;
            Ok((host, parse_days(&key, origin, *d)?))
        })
        .collect()
}

fn split_list(s: &str) -> Vec<String> {
    s.split(',')
        .map(|p| p.trim().to_owned())
        .filter(|p| !p.is_empty())
        .collect()
}

/// Reads a configuration file: JSON when it ends in `.json`, TOML otherwise.
pub fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let origin = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|e| bad("config", &origin, format!("cannot read: {e}")))?;
    if path.extension().is_some_and(|e| e == "json") {
        serde_json::from_str(&text).map_err(|e| {
            let msg = e.to_string();
            let key = msg.split('`').nth(1).unwrap_or("config").to_owned();
            bad(&key, &origin, msg)
        })
    } else {
        toml::from_str(&text).map_err(|e| {
            let msg = e.message().to_owned();
            let key = msg.split('`').nth(1).unwrap_or("config").to_owned();
            bad(&key, &origin, msg)
        })
    }
}

impl Config {
    /// Builds the effective configuration: defaults < file < `env` < `flags`.
    pub fn load(env: &BTreeMap<String, String>, flags: &Overrides) -> Result<Config, ConfigError> {
        for k in env.keys().filter(|k| k.starts_with("HITVAULT_")) {
            if !ENV_VARS.contains(&k.as_str()) {
                return Err(bad(
                    k,
                    "the environment",
                    format!("unknown variable; known: {}", ENV_VARS.join(", ")),
                ));
            }
        }
        let file_path = flags
            .config
            .clone()
            .or_else(|| env.get("HITVAULT_CONFIG").map(PathBuf::from));
        let mut c = Config::default();
        if let Some(path) = &file_path {
            c.apply_file(read_file(path)?, &path.display().to_string())?;
        }
        c.apply_env(env)?;
        if let Some(d) = &flags.data_dir {
            c.data_dir = d.clone();
            c.data_dir_set = true;
        }
        if let Some(l) = &flags.listen {
            c.listen = parse_listen("listen", "--listen", l)?;
        }
        if let Some(u) = &flags.user {
            c.user = Some(parse_user("--user", u)?);
        }
        if let Some(v) = &flags.seccomp {
            c.seccomp = parse_seccomp("--seccomp", v)?;
        }
        if let Some(v) = &flags.landlock {
            c.landlock = parse_landlock("--landlock", v)?;
        }
        c.settle_tls();
        c.validate()?;
        Ok(c)
    }

    pub fn apply_file(&mut self, f: FileConfig, origin: &str) -> Result<(), ConfigError> {
        if let Some(v) = f.data_dir {
            self.data_dir = v;
            self.data_dir_set = true;
        }
        if let Some(v) = f.listen {
            self.listen = parse_listen("listen", origin, &v)?;
        }
        if let Some(v) = f.sites {
            self.sites = v;
        }
        if let Some(v) = f.trusted_proxies {
            self.trusted_proxies = parse_nets("trusted_proxies", origin, &v)?;
        }
        if let Some(v) = f.excluded_addresses {
            self.excluded_addresses = parse_nets("excluded_addresses", origin, &v)?;
        }
        if let Some(v) = f.ingest_token_file {
            self.ingest_token_file = Some(v);
        }
        if let Some(v) = f.geoip_database {
            self.geoip_database = Some(v);
        }
        if let Some(v) = f.referrer_spam {
            self.referrer_spam = v;
        }
        if let Some(v) = f.log_level {
            self.log_level = v;
        }
        if let Some(v) = f.log_format {
            self.log_format = parse_log_format("log_format", origin, &v)?;
        }
        if let Some(q) = f.queue {
            if let Some(v) = q.max_bytes {
                self.queue_max_bytes = parse_size("queue.max_bytes", origin, &v)?;
            }
            if let Some(v) = q.segment_bytes {
                self.queue_segment_bytes = parse_size("queue.segment_bytes", origin, &v)?;
            }
        }
        if let Some(s) = f.store {
            if let Some(v) = s.memory_limit {
                self.store_memory_limit = v;
            }
            if let Some(v) = s.threads {
                self.store_threads = v;
            }
        }
        if let Some(b) = f.batch {
            if let Some(v) = b.max_rows {
                self.batch_max_rows = v;
            }
            if let Some(v) = b.max_wait_ms {
                self.batch_max_wait_ms = v;
            }
        }
        if let Some(r) = f.retention {
            if let Some(v) = r.days {
                self.retention_days = parse_days("retention.days", origin, v)?;
            }
            if let Some(v) = r.sites {
                self.retention_sites = parse_site_days(origin, &v)?;
            }
            if let Some(v) = r.archive_dir {
                self.archive_dir = Some(v);
            }
        }
        if let Some(v) = f.user {
            self.user = Some(parse_user(origin, &v)?);
        }
        if let Some(v) = f.seccomp {
            self.seccomp = parse_seccomp(origin, &v)?;
        }
        if let Some(v) = f.landlock {
            self.landlock = parse_landlock(origin, &v)?;
        }
        if let Some(v) = f.hostnames {
            self.hostnames = parse_hostnames(origin, &v)?;
        }
        if let Some(v) = f.allow_plain_http {
            self.allow_plain_http = v;
        }
        if let Some(t) = f.tls {
            if let Some(v) = t.mode {
                self.tls_mode = parse_tls_mode(origin, &v)?;
                self.tls_mode_set = true;
            }
            if let Some(v) = t.cert_file {
                self.tls_cert_file = Some(v);
            }
            if let Some(v) = t.key_file {
                self.tls_key_file = Some(v);
            }
        }
        if let Some(c) = f.cluster {
            self.cluster = parse_cluster(origin, c)?;
        }
        if let Some(a) = f.accounts {
            if let Some(v) = a.require_second_factor {
                self.require_second_factor = v;
            }
            if let Some(v) = a.session_idle_minutes {
                self.session_idle_minutes =
                    check_range("accounts.session_idle_minutes", origin, v, 1, 1440)?;
            }
            if let Some(v) = a.session_lifetime_hours {
                self.session_lifetime_hours =
                    check_range("accounts.session_lifetime_hours", origin, v, 1, 720)?;
            }
        }
        Ok(())
    }

    fn apply_env(&mut self, env: &BTreeMap<String, String>) -> Result<(), ConfigError> {
        let origin = |k: &str| format!("environment variable {k}");
        for (k, v) in env.iter().filter(|(k, _)| k.starts_with("HITVAULT_")) {
            let o = origin(k);
            match k.as_str() {
                "HITVAULT_CONFIG" => {}
                "HITVAULT_DATA_DIR" => {
                    self.data_dir = PathBuf::from(v);
                    self.data_dir_set = true;
                }
                "HITVAULT_LISTEN" => self.listen = parse_listen("listen", &o, v)?,
                "HITVAULT_SITES" => {
                    // Declarative: the variable replaces the file's list.
                    self.sites = split_list(v).into_iter().map(SiteDecl::Name).collect();
                }
                "HITVAULT_TRUSTED_PROXIES" => {
                    self.trusted_proxies = parse_nets("trusted_proxies", &o, &split_list(v))?
                }
                "HITVAULT_EXCLUDED_ADDRESSES" => {
                    self.excluded_addresses = parse_nets("excluded_addresses", &o, &split_list(v))?
                }
                "HITVAULT_INGEST_TOKEN_FILE" => self.ingest_token_file = Some(PathBuf::from(v)),
                "HITVAULT_GEOIP_DATABASE" => self.geoip_database = Some(PathBuf::from(v)),
                "HITVAULT_REFERRER_SPAM" => self.referrer_spam = split_list(v),
                "HITVAULT_LOG" => self.log_level = v.clone(),
                "HITVAULT_LOG_FORMAT" => self.log_format = parse_log_format("log_format", &o, v)?,
                "HITVAULT_QUEUE_MAX_BYTES" => {
                    self.queue_max_bytes =
                        parse_size("queue.max_bytes", &o, &Size::Text(v.clone()))?
                }
                "HITVAULT_STORE_MEMORY_LIMIT" => self.store_memory_limit = v.clone(),
                "HITVAULT_RETENTION_DAYS" => {
                    let n = v.trim().parse::<i64>().map_err(|_| {
                        bad(
                            "retention.days",
                            &o,
                            format!("{v:?} is not a number of days"),
                        )
                    })?;
                    self.retention_days = parse_days("retention.days", &o, n)?;
                }
                "HITVAULT_RETENTION_SITES" => {
                    // host=days,host=days; replaces the file's table.
                    let mut m = BTreeMap::new();
                    for item in split_list(v) {
                        let (h, d) = item
                            .split_once('=')
                            .and_then(|(h, d)| Some((h.trim(), d.trim().parse::<i64>().ok()?)))
                            .ok_or_else(|| {
                                bad("retention.sites", &o, format!("{item:?} is not host=days"))
                            })?;
                        m.insert(h.to_owned(), d);
                    }
                    self.retention_sites = parse_site_days(&o, &m)?;
                }
                "HITVAULT_ARCHIVE_DIR" => self.archive_dir = Some(PathBuf::from(v)),
                "HITVAULT_USER" => self.user = Some(parse_user(&o, v)?),
                "HITVAULT_SECCOMP" => self.seccomp = parse_seccomp(&o, v)?,
                "HITVAULT_LANDLOCK" => self.landlock = parse_landlock(&o, v)?,
                "HITVAULT_HOSTNAMES" => self.hostnames = parse_hostnames(&o, &split_list(v))?,
                "HITVAULT_ALLOW_PLAIN_HTTP" => {
                    self.allow_plain_http = match v.trim() {
                        "true" | "1" | "yes" => true,
                        "false" | "0" | "no" => false,
                        other => {
                            return Err(bad(
                                "allow_plain_http",
                                &o,
                                format!("{other:?} is not `true` or `false`"),
                            ));
                        }
                    }
                }
                "HITVAULT_TLS_MODE" => {
                    self.tls_mode = parse_tls_mode(&o, v)?;
                    self.tls_mode_set = true;
                }
                "HITVAULT_TLS_CERT_FILE" => self.tls_cert_file = Some(PathBuf::from(v)),
                "HITVAULT_TLS_KEY_FILE" => self.tls_key_file = Some(PathBuf::from(v)),
                "HITVAULT_REQUIRE_SECOND_FACTOR" => {
                    self.require_second_factor = match v.trim() {
                        "true" | "1" | "yes" => true,
                        "false" | "0" | "no" => false,
                        other => {
                            return Err(bad(
                                "accounts.require_second_factor",
                                &o,
                                format!("{other:?} is not `true` or `false`"),
                            ));
                        }
                    }
                }
                "HITVAULT_SESSION_IDLE_MINUTES" => {
                    let n = parse_number("accounts.session_idle_minutes", &o, v)?;
                    self.session_idle_minutes =
                        check_range("accounts.session_idle_minutes", &o, n, 1, 1440)?;
                }
                "HITVAULT_SESSION_LIFETIME_HOURS" => {
                    let n = parse_number("accounts.session_lifetime_hours", &o, v)?;
                    self.session_lifetime_hours =
                        check_range("accounts.session_lifetime_hours", &o, n, 1, 720)?;
                }
                _ => unreachable!("unknown variables were refused above"),
            }
        }
        Ok(())
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.data_dir.as_os_str().is_empty() {
            return Err(bad("data_dir", "the configuration", "must not be empty"));
        }
        if self
            .archive_dir
            .as_ref()
            .is_some_and(|d| d.as_os_str().is_empty())
        {
            return Err(bad(
                "retention.archive_dir",
                "the configuration",
                "must not be empty",
            ));
        }
        if let Some(c) = &self.cluster
            && c.bind.port() == self.listen.port()
            && (c.bind.ip() == self.listen.ip() || self.listen.ip().is_unspecified())
        {
            return Err(bad(
                "cluster.bind",
                "the configuration",
                format!("{} is the HTTP listener's address (`listen`)", c.bind),
            ));
        }
        if self.queue_segment_bytes < 64 * 1024 || self.queue_segment_bytes > (1 << 30) {
            return Err(bad(
                "queue.segment_bytes",
                "the configuration",
                "must be from 64KiB to 1GiB",
            ));
        }
        if self.queue_max_bytes < 2 * self.queue_segment_bytes {
            return Err(bad(
                "queue.max_bytes",
                "the configuration",
                "must be at least two segments (queue.segment_bytes)",
            ));
        }
        if !(1..=1_000_000).contains(&self.batch_max_rows) {
            return Err(bad(
                "batch.max_rows",
                "the configuration",
                "must be from 1 to 1000000",
            ));
        }
        if !(1..=60_000).contains(&self.batch_max_wait_ms) {
            return Err(bad(
                "batch.max_wait_ms",
                "the configuration",
                "must be from 1 to 60000",
            ));
        }
        if !(1..=256).contains(&self.store_threads) {
            return Err(bad(
                "store.threads",
                "the configuration",
                "must be from 1 to 256",
            ));
        }
        for s in &self.sites {
            let (host, aliases) = match s {
                SiteDecl::Name(h) => (h, &vec![]),
                SiteDecl::Full { hostname, aliases } => (hostname, aliases),
            };
            for h in std::iter::once(host).chain(aliases) {
                hitvault_core::sites::normalize_host(h)
                    .map_err(|e| bad("sites", "the configuration", format!("{h:?}: {e}")))?;
            }
        }
        tracing_subscriber::EnvFilter::try_new(&self.log_level)
            .map_err(|e| bad("log_level", "the configuration", e.to_string()))?;
        self.validate_tls()
    }

    /// `tls.mode` unset: `files` when a certificate file is configured,
    /// else `off` on a loopback listener and `local-ca` on any other.
    fn settle_tls(&mut self) {
        if self.tls_mode_set {
            return;
        }
        self.tls_mode = if self.tls_cert_file.is_some() || self.tls_key_file.is_some() {
            TlsMode::Files
        } else if self.listen.ip().to_canonical().is_loopback() {
            TlsMode::Off
        } else {
            TlsMode::LocalCa
        };
    }

    fn validate_tls(&self) -> Result<(), ConfigError> {
        let here = "the configuration";
        let empty = |p: &Option<PathBuf>| p.as_ref().is_some_and(|p| p.as_os_str().is_empty());
        if empty(&self.tls_cert_file) {
            return Err(bad("tls.cert_file", here, "must not be empty"));
        }
        if empty(&self.tls_key_file) {
            return Err(bad("tls.key_file", here, "must not be empty"));
        }
        match (self.tls_mode, &self.tls_cert_file, &self.tls_key_file) {
            (TlsMode::Files, Some(_), Some(_)) => {}
            (TlsMode::Files, None, _) => {
                return Err(bad(
                    "tls.cert_file",
                    here,
                    "must be set when tls.mode is `files` (with tls.key_file): the certificate \
                     chain, PEM, leaf first",
                ));
            }
            (TlsMode::Files, _, None) => {
                return Err(bad(
                    "tls.key_file",
                    here,
                    "must be set when tls.mode is `files` (with tls.cert_file): the private key \
                     of the certificate, PEM",
                ));
            }
            (mode, cert, key) if cert.is_some() || key.is_some() => {
                let key_name = if cert.is_some() {
                    "tls.cert_file"
                } else {
                    "tls.key_file"
                };
                return Err(bad(
                    key_name,
                    here,
                    format!(
                        "is set, but tls.mode is `{}`: set tls.mode = \"files\" (or leave \
                         tls.mode unset) to serve your own certificate",
                        mode.name()
                    ),
                ));
            }
            _ => {}
        }
        if self.tls_mode == TlsMode::Off
            && !self.listen.ip().to_canonical().is_loopback()
            && !self.allow_plain_http
        {
            return Err(bad(
                "tls.mode",
                here,
                format!(
                    "is `off`, but listen = {} is reachable from other machines, which are only \
                     served over TLS: set allow_plain_http = true if a TLS proxy in front of \
                     hitvault connects to it over plain HTTP, or use tls.mode = \"local-ca\" \
                     (the default there) or \"files\"",
                    self.listen
                ),
            ));
        }
        Ok(())
    }

    /// Settles the defaults that depend on how the process was started
    /// (`euid`; `exists` says whether an account exists): as root, an unset
    /// `data_dir` is [`ROOT_DATA_DIR`] and `user = "auto"` becomes the first
    /// of [`AUTO_ACCOUNTS`] that exists; not as root, `user = "auto"` means
    /// the current account (unset). Returns what it chose, one line each,
    /// for the log. Touches nothing on disk.
    pub fn started_as(
        &mut self,
        euid: u32,
        exists: impl Fn(&str) -> bool,
    ) -> Result<Vec<String>, ConfigError> {
        let mut chose = Vec::new();
        if euid == 0 && !self.data_dir_set {
            self.data_dir = PathBuf::from(ROOT_DATA_DIR);
            chose.push(format!(
                "started as root: data_dir is {ROOT_DATA_DIR} (the default as root; set \
                 `data_dir` to choose)"
            ));
        }
        if self.user.as_deref() == Some(AUTO_USER) {
            if euid == 0 {
                let name = AUTO_ACCOUNTS
                    .into_iter()
                    .find(|n| exists(n))
                    .ok_or_else(|| {
                        bad(
                            "user",
                            "the configuration",
                            format!(
                                "`auto` found neither of the accounts {AUTO_ACCOUNTS:?}: create \
                                 one (useradd --system --no-create-home --shell \
                                 /usr/sbin/nologin hitvault) or name an unprivileged account"
                            ),
                        )
                    })?;
                chose.push(format!(
                    "started as root: `user = auto` switches to the account {name:?}"
                ));
                self.user = Some(name.to_owned());
            } else {
                self.user = None;
            }
        }
        Ok(chose)
    }

    /// `data_dir` was set by no layer: it is the default (`./data`, or
    /// [`ROOT_DATA_DIR`] once [`Config::started_as`] saw root).
    pub fn data_dir_is_default(&self) -> bool {
        !self.data_dir_set
    }

    /// Where expired hits are archived.
    pub fn archive_dir(&self) -> PathBuf {
        self.archive_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("archive"))
    }

    /// The declared sites as (hostname, aliases), normalised.
    pub fn declared_sites(&self) -> Vec<(String, Vec<String>)> {
        let norm = |h: &str| hitvault_core::sites::normalize_host(h).expect("validated at load");
        self.sites
            .iter()
            .map(|s| match s {
                SiteDecl::Name(h) => (norm(h), vec![]),
                SiteDecl::Full { hostname, aliases } => {
                    (norm(hostname), aliases.iter().map(|a| norm(a)).collect())
                }
            })
            .collect()
    }
}

/// A user name as the password database spells one; never root.
fn parse_user(origin: &str, v: &str) -> Result<String, ConfigError> {
    let name = v.trim();
    let valid = !name.is_empty()
        && name.len() <= 32
        && !name.starts_with('-')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'$'));
    if !valid {
        return Err(bad("user", origin, format!("{v:?} is not a user name")));
    }
    if name == "root" {
        return Err(bad(
            "user",
            origin,
            "must be an unprivileged account, not root",
        ));
    }
    Ok(name.to_owned())
}

fn parse_tls_mode(origin: &str, v: &str) -> Result<TlsMode, ConfigError> {
    match v.trim() {
        "local-ca" => Ok(TlsMode::LocalCa),
        "files" => Ok(TlsMode::Files),
        "off" => Ok(TlsMode::Off),
        other => Err(bad(
            "tls.mode",
            origin,
            format!("{other:?} is not `local-ca`, `files` or `off`"),
        )),
    }
}

/// The names of `hostnames`: each a DNS name (letters, digits and `-` in
/// labels of at most 63 characters, at most 253 in all, the last label not
/// all digits) or an IP address; lower case, no trailing dot, no duplicates.
fn parse_hostnames(origin: &str, items: &[String]) -> Result<Vec<String>, ConfigError> {
    let mut out: Vec<String> = Vec::new();
    for raw in items {
        let n = raw.trim();
        let name = if let Ok(ip) = n.parse::<std::net::IpAddr>() {
            ip.to_canonical().to_string()
        } else {
            let name = n.strip_suffix('.').unwrap_or(n).to_ascii_lowercase();
            if let Err(why) = dns_name(&name) {
                return Err(bad(
                    "hostnames",
                    origin,
                    format!("{raw:?} is not a DNS name or an IP address: {why}"),
                ));
            }
            name
        };
        if !out.contains(&name) {
            out.push(name);
        }
    }
    if out.len() > MAX_HOSTNAMES {
        return Err(bad(
            "hostnames",
            origin,
            format!("{} names; at most {MAX_HOSTNAMES}", out.len()),
        ));
    }
    Ok(out)
}

fn dns_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("it is empty".into());
    }
    if name.len() > 253 {
        return Err("it is longer than 253 characters".into());
    }
    if name.contains('*') {
        return Err("wildcards are not supported: list each name".into());
    }
    for label in name.split('.') {
        if label.is_empty() {
            return Err("it has an empty label (two dots in a row, or a leading dot)".into());
        }
        if label.len() > 63 {
            return Err(format!("the label {label:?} is longer than 63 characters"));
        }
        if let Some(c) = label
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '-'))
        {
            return Err(format!(
                "{c:?} is not allowed (letters, digits, `-` and dots only; write an \
                 internationalised name in its xn-- form)"
            ));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(format!("the label {label:?} starts or ends with `-`"));
        }
    }
    if name
        .rsplit('.')
        .next()
        .is_some_and(|l| l.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err("its last label is all digits, which no DNS name has".into());
    }
    Ok(())
}

fn parse_seccomp(origin: &str, v: &str) -> Result<SeccompSetting, ConfigError> {
    match v.trim() {
        "enforce" => Ok(SeccompSetting::Enforce),
        "audit" => Ok(SeccompSetting::Audit),
        other => Err(bad(
            "seccomp",
            origin,
            format!("{other:?} is not `enforce` or `audit`"),
        )),
    }
}

fn parse_landlock(origin: &str, v: &str) -> Result<LandlockSetting, ConfigError> {
    match v.trim() {
        "best-effort" => Ok(LandlockSetting::BestEffort),
        "required" => Ok(LandlockSetting::Required),
        other => Err(bad(
            "landlock",
            origin,
            format!("{other:?} is not `best-effort` or `required`"),
        )),
    }
}

/// Started as root (`euid` 0), the daemon must know which account to become:
/// it never runs its store, queue and HTTP server as root.
pub fn require_user_when_root(cfg: &Config, euid: u32) -> Result<(), ConfigError> {
    if euid == 0 && cfg.user.is_none() {
        return Err(bad(
            "user",
            "the configuration",
            "hitvault was started as root, and it never keeps uid 0: set `user` \
             (--user, HITVAULT_USER) to the unprivileged account it should switch to, \
             e.g. `--user auto` (the account `hitvault` if it exists, else `nobody`), or \
             start it as that account",
        ));
    }
    Ok(())
}

fn parse_log_format(key: &str, origin: &str, v: &str) -> Result<LogFormat, ConfigError> {
    match v.trim() {
        "text" => Ok(LogFormat::Text),
        "json" => Ok(LogFormat::Json),
        other => Err(bad(
            key,
            origin,
            format!("{other:?} is not `text` or `json`"),
        )),
    }
}

/// Why a cluster node refuses an import.
pub const NO_IMPORT_ON_CLUSTER: &str = "a cluster node takes no imports yet: they are not replicated through the cluster's log, so \
 the nodes' data would differ (and the ids of sites, goals and funnels made later with \
 them); nothing was imported. See docs/operations/cluster.md#what-is-replicated";

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn embedded_defaults() {
        let c = Config::load(&env(&[("PATH", "/bin")]), &Overrides::default()).unwrap();
        assert_eq!(c.data_dir, PathBuf::from("./data"));
        assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
        assert!(c.trusted_proxies.is_empty());
    }

    #[test]
    fn file_then_env_then_flags() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("hv.toml");
        std::fs::write(
            &f,
            "data_dir = \"/srv/a\"\nlisten = \"127.0.0.1:1\"\nsites = [\"a.test\", { hostname = \"b.test\", aliases = [\"www.b.test\"] }]\n[queue]\nmax_bytes = \"256MiB\"\n",
        )
        .unwrap();
        let e = env(&[
            ("HITVAULT_CONFIG", f.to_str().unwrap()),
            ("HITVAULT_LISTEN", "127.0.0.1:2"),
        ]);
        let c = Config::load(&e, &Overrides::default()).unwrap();
        assert_eq!(c.data_dir, PathBuf::from("/srv/a"));
        assert_eq!(c.listen.port(), 2);
        assert_eq!(c.queue_max_bytes, 256 << 20);
        assert_eq!(
            c.declared_sites()[1],
            ("b.test".to_string(), vec!["www.b.test".to_string()])
        );
        let flags = Overrides {
            listen: Some("127.0.0.1:3".into()),
            ..Overrides::default()
        };
        assert_eq!(Config::load(&e, &flags).unwrap().listen.port(), 3);
    }

    #[test]
    fn json_file_works_too() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("hv.json");
        std::fs::write(&f, r#"{"sites":["a.test"],"trusted_proxies":["10.0.0.0/8","192.0.2.1"],"batch":{"max_rows":500}}"#)
            .unwrap();
        let c = Config::load(
            &env(&[]),
            &Overrides {
                config: Some(f),
                ..Overrides::default()
            },
        )
        .unwrap();
        assert_eq!(c.trusted_proxies.len(), 2);
        assert_eq!(c.batch_max_rows, 500);
    }

    #[test]
    fn unknown_keys_and_bad_values_name_the_setting() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("hv.toml");
        std::fs::write(&f, "listen = \"127.0.0.1:1\"\nlisen = 3\n").unwrap();
        let e = Config::load(
            &env(&[]),
            &Overrides {
                config: Some(f.clone()),
                ..Overrides::default()
            },
        )
        .unwrap_err();
        assert_eq!(e.key, "lisen", "{e}");
        std::fs::write(&f, "[queue]\nmax_bytes = \"3 parsecs\"\n").unwrap();
        let e = Config::load(
            &env(&[]),
            &Overrides {
                config: Some(f),
                ..Overrides::default()
            },
        )
        .unwrap_err();
        assert_eq!(e.key, "queue.max_bytes", "{e}");
        let e = Config::load(
            &env(&[("HITVAULT_LISTEN", "localhost")]),
            &Overrides::default(),
        )
        .unwrap_err();
        assert_eq!(e.key, "listen");
        assert!(e.to_string().contains("HITVAULT_LISTEN"), "{e}");
        let e = Config::load(
            &env(&[("HITVAULT_TRUSTED_PROXIES", "10.0.0.0/33")]),
            &Overrides::default(),
        )
        .unwrap_err();
        assert_eq!(e.key, "trusted_proxies");
        let e = Config::load(&env(&[("HITVAULT_LISTN", "x")]), &Overrides::default()).unwrap_err();
        assert_eq!(e.key, "HITVAULT_LISTN");
        let e = Config::load(
            &env(&[("HITVAULT_SITES", "good.test,bad host")]),
            &Overrides::default(),
        )
        .unwrap_err();
        assert_eq!(e.key, "sites");
    }

    #[test]
    fn sandbox_settings_from_file_env_and_flags() {
        let c = Config::load(&env(&[]), &Overrides::default()).unwrap();
        assert_eq!(
            (c.user.as_deref(), c.seccomp, c.landlock),
            (None, SeccompSetting::Enforce, LandlockSetting::BestEffort)
        );
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("hv.toml");
        std::fs::write(
            &f,
            "user = \"hitvault\"\nseccomp = \"audit\"\nlandlock = \"required\"\n",
        )
        .unwrap();
        let flags = Overrides {
            config: Some(f.clone()),
            ..Overrides::default()
        };
        let c = Config::load(&env(&[]), &flags).unwrap();
        assert_eq!(
            (c.user.as_deref(), c.seccomp, c.landlock),
            (
                Some("hitvault"),
                SeccompSetting::Audit,
                LandlockSetting::Required
            )
        );
        let c = Config::load(
            &env(&[("HITVAULT_SECCOMP", "enforce"), ("HITVAULT_USER", "hv")]),
            &flags,
        )
        .unwrap();
        assert_eq!(
            (c.user.as_deref(), c.seccomp),
            (Some("hv"), SeccompSetting::Enforce)
        );
        let flags = Overrides {
            landlock: Some("best-effort".into()),
            user: Some("web".into()),
            ..flags
        };
        let c = Config::load(&env(&[("HITVAULT_USER", "hv")]), &flags).unwrap();
        assert_eq!(c.user.as_deref(), Some("web"));
        assert_eq!(c.landlock, LandlockSetting::BestEffort);
    }

    #[test]
    fn bad_sandbox_settings_name_the_key() {
        for (var, value, key) in [
            ("HITVAULT_SECCOMP", "off", "seccomp"),
            ("HITVAULT_SECCOMP", "kill", "seccomp"),
            ("HITVAULT_LANDLOCK", "never", "landlock"),
            ("HITVAULT_USER", "root", "user"),
            ("HITVAULT_USER", "", "user"),
            ("HITVAULT_USER", "a b", "user"),
        ] {
            let e = Config::load(&env(&[(var, value)]), &Overrides::default()).unwrap_err();
            assert_eq!(e.key, key, "{var}={value}: {e}");
            assert!(e.to_string().contains(var), "{e}");
        }
        let flags = Overrides {
            seccomp: Some("audit-ish".into()),
            ..Overrides::default()
        };
        let e = Config::load(&env(&[]), &flags).unwrap_err();
        assert_eq!(e.key, "seccomp");
        assert!(e.to_string().contains("--seccomp"), "{e}");
    }

    #[test]
    fn retention_settings_and_bad_values_name_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("hv.toml");
        std::fs::write(
            &f,
            "[retention]\ndays = 400\narchive_dir = \"/srv/archive\"\n[retention.sites]\n\"Shop.Test\" = 30\n\"blog.test\" = 0\n",
        )
        .unwrap();
        let flags = Overrides {
            config: Some(f.clone()),
            ..Overrides::default()
        };
        let c = Config::load(&env(&[]), &flags).unwrap();
        assert_eq!(c.retention_days, 400);
        assert_eq!(c.retention_sites.get("shop.test"), Some(&30));
        assert_eq!(c.retention_sites.get("blog.test"), Some(&0));
        assert_eq!(c.archive_dir(), PathBuf::from("/srv/archive"));
        let c = Config::load(
            &env(&[
                ("HITVAULT_RETENTION_DAYS", "7"),
                ("HITVAULT_RETENTION_SITES", "a.test=1, b.test=2"),
            ]),
            &flags,
        )
        .unwrap();
        assert_eq!(c.retention_days, 7);
        assert_eq!(c.retention_sites.len(), 2);
        assert_eq!(
            Config::load(&env(&[]), &Overrides::default())
                .unwrap()
                .archive_dir(),
            PathBuf::from("./data/archive")
        );
        for (text, key) in [
            ("[retention]\ndays = -1\n", "retention.days"),
            ("[retention]\ndays = 36501\n", "retention.days"),
            (
                "[retention.sites]\n\"shop.test\" = -5\n",
                "retention.sites.shop.test",
            ),
            (
                "[retention.sites]\n\"bad host\" = 5\n",
                "retention.sites.bad host",
            ),
            ("[retention]\narchive_dir = \"\"\n", "retention.archive_dir"),
            ("[retention]\nkeep = 3\n", "keep"),
        ] {
            std::fs::write(&f, text).unwrap();
            let e = Config::load(&env(&[]), &flags).unwrap_err();
            assert_eq!(e.key, key, "{text}: {e}");
        }
        for (var, value) in [
            ("HITVAULT_RETENTION_DAYS", "ten"),
            ("HITVAULT_RETENTION_SITES", "a.test"),
        ] {
            let e = Config::load(&env(&[(var, value)]), &Overrides::default()).unwrap_err();
            assert!(e.key.starts_with("retention."), "{e}");
            assert!(e.to_string().contains(var), "{e}");
        }
    }

    #[test]
    fn cluster_settings_and_bad_values_name_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("hv.toml");
        let flags = Overrides {
            config: Some(f.clone()),
            ..Overrides::default()
        };
        let node =
            "[cluster]\nenable = true\nnode_id = 2\nbind = \"10.77.0.2:7400\"\nkey_file = \"/k\"\n";
        std::fs::write(
            &f,
            format!("{node}[cluster.peers]\n\"1\" = \"10.77.0.1:7400\"\n"),
        )
        .unwrap();
        let c = Config::load(&env(&[]), &flags).unwrap().cluster.unwrap();
        assert_eq!(c.node_id, 2);
        assert_eq!(c.peers.get(&1), Some(&"10.77.0.1:7400".parse().unwrap()));
        assert_eq!(c.ack, Ack::Majority);
        assert!(!c.init);
        // Off, the table is inert.
        std::fs::write(&f, "[cluster]\nenable = false\nack = \"local\"\n").unwrap();
        assert!(Config::load(&env(&[]), &flags).unwrap().cluster.is_none());
        for (text, key) in [
            ("[cluster]\nenable = true\n".to_owned(), "cluster.node_id"),
            (
                node.replace("node_id = 2", "node_id = 0"),
                "cluster.node_id",
            ),
            (
                node.replace("node_id = 2", "node_id = 65536"),
                "cluster.node_id",
            ),
            (
                node.replace("bind = \"10.77.0.2:7400\"\n", ""),
                "cluster.bind",
            ),
            (
                node.replace("10.77.0.2:7400", "0.0.0.0:7400"),
                "cluster.bind",
            ),
            (
                node.replace("10.77.0.2:7400", "127.0.0.1:8080"),
                "cluster.bind",
            ),
            (node.replace("key_file = \"/k\"\n", ""), "cluster.key_file"),
            (format!("{node}ack = \"all\"\n"), "cluster.ack"),
            (
                format!("{node}snapshot_every = 5\n"),
                "cluster.snapshot_every",
            ),
            (
                format!("{node}snapshot_every = -1\n"),
                "cluster.snapshot_every",
            ),
            (
                format!("{node}[cluster.peers]\n\"2\" = \"10.77.0.1:7400\"\n"),
                "cluster.peers.2",
            ),
            (
                format!("{node}[cluster.peers]\nx = \"10.77.0.1:7400\"\n"),
                "cluster.peers.x",
            ),
            (
                format!("{node}[cluster.peers]\n\"3\" = \"somewhere\"\n"),
                "cluster.peers.3",
            ),
        ] {
            std::fs::write(&f, &text).unwrap();
            let e = Config::load(&env(&[]), &flags).unwrap_err();
            assert_eq!(e.key, key, "{text}: {e}");
        }
    }

    #[test]
    fn tls_mode_follows_the_listener_and_the_files_unless_set() {
        let load = |pairs: &[(&str, &str)]| Config::load(&env(pairs), &Overrides::default());
        assert_eq!(load(&[]).unwrap().tls_mode, TlsMode::Off);
        assert_eq!(
            load(&[("HITVAULT_LISTEN", "0.0.0.0:8443")])
                .unwrap()
                .tls_mode,
            TlsMode::LocalCa
        );
        assert_eq!(
            load(&[("HITVAULT_LISTEN", "[::1]:8443")]).unwrap().tls_mode,
            TlsMode::Off
        );
        let files = [
            ("HITVAULT_TLS_CERT_FILE", "/etc/hv/tls/chain.pem"),
            ("HITVAULT_TLS_KEY_FILE", "/etc/hv/tls/key.pem"),
        ];
        let c = load(&files).unwrap();
        assert_eq!(c.tls_mode, TlsMode::Files);
        assert_eq!(
            c.tls_key_file.as_deref(),
            Some(Path::new("/etc/hv/tls/key.pem"))
        );
        let c = load(&[
            ("HITVAULT_LISTEN", "0.0.0.0:8080"),
            ("HITVAULT_TLS_MODE", "off"),
            ("HITVAULT_ALLOW_PLAIN_HTTP", "true"),
        ])
        .unwrap();
        assert_eq!((c.tls_mode, c.allow_plain_http), (TlsMode::Off, true));
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("hv.toml");
        std::fs::write(
            &f,
            "listen = \"0.0.0.0:443\"\nhostnames = [\"Analytics.Clinic.LAN.\", \"192.0.2.7\"]\n[tls]\nmode = \"local-ca\"\n",
        )
        .unwrap();
        let c = Config::load(
            &env(&[]),
            &Overrides {
                config: Some(f),
                ..Overrides::default()
            },
        )
        .unwrap();
        assert_eq!(c.hostnames, ["analytics.clinic.lan", "192.0.2.7"]);
        assert_eq!(c.tls_mode, TlsMode::LocalCa);
    }

    #[test]
    fn bad_tls_settings_and_hostnames_name_the_setting() {
        for (pairs, key, says) in [
            (vec![("HITVAULT_TLS_MODE", "acme")], "tls.mode", "local-ca"),
            (
                vec![("HITVAULT_TLS_MODE", "files")],
                "tls.cert_file",
                "files",
            ),
            (
                vec![("HITVAULT_TLS_CERT_FILE", "/c.pem")],
                "tls.key_file",
                "files",
            ),
            (
                vec![
                    ("HITVAULT_TLS_MODE", "local-ca"),
                    ("HITVAULT_TLS_CERT_FILE", "/c.pem"),
                    ("HITVAULT_TLS_KEY_FILE", "/k.pem"),
                ],
                "tls.cert_file",
                "tls.mode",
            ),
            (
                vec![
                    ("HITVAULT_LISTEN", "0.0.0.0:80"),
                    ("HITVAULT_TLS_MODE", "off"),
                ],
                "tls.mode",
                "allow_plain_http",
            ),
            (
                vec![("HITVAULT_ALLOW_PLAIN_HTTP", "maybe")],
                "allow_plain_http",
                "true",
            ),
            (
                vec![("HITVAULT_HOSTNAMES", "a.lan,bad_name.lan")],
                "hostnames",
                "'_'",
            ),
            (
                vec![("HITVAULT_HOSTNAMES", "*.clinic.lan")],
                "hostnames",
                "wildcards",
            ),
            (
                vec![("HITVAULT_HOSTNAMES", "a..lan")],
                "hostnames",
                "empty label",
            ),
            (vec![("HITVAULT_HOSTNAMES", "-a.lan")], "hostnames", "`-`"),
            (
                vec![("HITVAULT_HOSTNAMES", "1.2.3")],
                "hostnames",
                "all digits",
            ),
            (
                vec![("HITVAULT_HOSTNAMES", "https://a.lan/")],
                "hostnames",
                "':'",
            ),
        ] {
            let e = Config::load(&env(&pairs), &Overrides::default()).unwrap_err();
            assert_eq!(e.key, key, "{pairs:?}: {e}");
            assert!(e.to_string().contains(says), "{pairs:?}: {e}");
        }
        let many: Vec<String> = (0..=MAX_HOSTNAMES).map(|i| format!("h{i}.lan")).collect();
        let e = Config::load(
            &env(&[("HITVAULT_HOSTNAMES", &many.join(","))]),
            &Overrides::default(),
        )
        .unwrap_err();
        assert_eq!(e.key, "hostnames");
        // IP addresses are names too (for API clients); duplicates collapse.
        let c = Config::load(
            &env(&[(
                "HITVAULT_HOSTNAMES",
                "192.0.2.7, 2001:DB8::7, a.lan, A.lan.",
            )]),
            &Overrides::default(),
        )
        .unwrap();
        assert_eq!(c.hostnames, ["192.0.2.7", "2001:db8::7", "a.lan"]);
    }

    #[test]
    fn root_needs_a_user() {
        let c = Config::load(&env(&[]), &Overrides::default()).unwrap();
        let e = require_user_when_root(&c, 0).unwrap_err();
        assert_eq!(e.key, "user");
        assert!(e.to_string().contains("started as root"), "{e}");
        assert!(require_user_when_root(&c, 1000).is_ok());
        let c = Config::load(&env(&[("HITVAULT_USER", "nobody")]), &Overrides::default()).unwrap();
        assert!(require_user_when_root(&c, 0).is_ok());
    }

    #[test]
    fn root_defaults_a_system_data_dir_and_auto_picks_an_account() {
        let auto = Overrides {
            user: Some("auto".into()),
            ..Overrides::default()
        };
        // Root, nothing set: /var/lib/hitvault; `auto` prefers `hitvault`.
        let mut c = Config::load(&env(&[]), &auto).unwrap();
        let chose = c.started_as(0, |_| true).unwrap();
        assert_eq!(c.data_dir, PathBuf::from(ROOT_DATA_DIR));
        assert_eq!(c.archive_dir(), PathBuf::from("/var/lib/hitvault/archive"));
        assert_eq!(c.user.as_deref(), Some("hitvault"));
        assert_eq!(chose.len(), 2, "{chose:?}");
        assert!(require_user_when_root(&c, 0).is_ok());
        // No `hitvault` account: `nobody`.
        let mut c = Config::load(&env(&[]), &auto).unwrap();
        c.started_as(0, |n| n == "nobody").unwrap();
        assert_eq!(c.user.as_deref(), Some("nobody"));
        // Neither: refused, naming `user` and the fix.
        let mut c = Config::load(&env(&[]), &auto).unwrap();
        let e = c.started_as(0, |_| false).unwrap_err();
        assert_eq!(e.key, "user");
        assert!(e.to_string().contains("useradd"), "{e}");
        // Not root: `auto` is the current account, data stays in ./data.
        let mut c = Config::load(&env(&[]), &auto).unwrap();
        assert!(c.started_as(1000, |_| true).unwrap().is_empty());
        assert_eq!(
            (c.user.as_deref(), c.data_dir.as_path()),
            (None, Path::new(DEFAULT_DATA_DIR))
        );
        // A data dir set anywhere is kept as root, and a named user too.
        for (e, flags) in [
            (
                env(&[("HITVAULT_DATA_DIR", "./data")]),
                Overrides::default(),
            ),
            (
                env(&[]),
                Overrides {
                    data_dir: Some("./mine".into()),
                    ..Overrides::default()
                },
            ),
        ] {
            let mut c = Config::load(&e, &flags).unwrap();
            let before = c.data_dir.clone();
            c.started_as(0, |_| true).unwrap();
            assert_eq!(c.data_dir, before);
            assert_eq!(c.user, None);
        }
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("hv.toml");
        std::fs::write(&f, "data_dir = \"/srv/hv\"\nuser = \"web\"\n").unwrap();
        let mut c = Config::load(
            &env(&[]),
            &Overrides {
                config: Some(f),
                ..Overrides::default()
            },
        )
        .unwrap();
        c.started_as(0, |_| true).unwrap();
        assert_eq!(c.data_dir, PathBuf::from("/srv/hv"));
        assert_eq!(c.user.as_deref(), Some("web"));
        // Root without `user` is still refused, and told the exact fix.
        let mut c = Config::load(&env(&[]), &Overrides::default()).unwrap();
        c.started_as(0, |_| true).unwrap();
        let e = require_user_when_root(&c, 0).unwrap_err();
        assert!(e.to_string().contains("--user auto"), "{e}");
    }
}
