//! The DuckDB store: the only crate that links DuckDB.
//!
//! It owns the database file `<data dir>/hitvault.duckdb`: opening it with
//! extensions locked down, the numbered migrations embedded below, the sites
//! table, and appending batches of hits together with the queue position they
//! cover, in one transaction. Because the position and the rows commit
//! atomically, replaying the queue after a crash never stores a hit twice.
//!
//! It never speaks HTTP, never reads the environment, and never touches a file
//! outside the database file and its `tmp/` spill directory.

mod append;
pub mod backup;
mod feed;
pub mod goals;
pub mod imported;
pub mod live;
mod migrate;
mod prune;
mod sessions;
pub mod stats;
pub mod takeout;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use duckdb::{AccessMode, Config, Connection};

pub use append::{AppendError, AppendStats};
pub use backup::{InstallError, SnapshotError, SnapshotInfo};
pub use migrate::{MIGRATIONS, SCHEMA_VERSION};
pub use prune::{Expired, PruneError};
pub use sessions::SessionWork;
/// The per-day rollups, where they have always been found.
pub use stats::rollup;
pub use takeout::{ExportFilter, ImportStats, Importer, Reader, TakeoutError};

/// The Arrow record batch type the store reads and writes (DuckDB's arrow).
pub use duckdb::arrow::record_batch::RecordBatch;

/// File name of the database inside the data directory.
pub const DB_FILE: &str = "hitvault.duckdb";

/// Directory beside [`DB_FILE`] for DuckDB's spill files (and the daemon's
/// backup snapshots); [`Store::open`] creates it.
pub const TMP_DIR: &str = "tmp";

/// The largest hit id an import takes: 2^53, exact in every JSON reader.
/// A hit id is a queue seq, one per hit ever taken, so a real one is far
/// below; the bound keeps a corrupt or edited Takeout from moving a running
/// daemon's numbering towards the end of the id space.
pub const MAX_HIT_ID: u64 = 1 << 53;

/// Tuning knobs for the embedded database.
#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// DuckDB worker threads (queries); the appender runs on the caller's thread.
    pub threads: u16,
    /// DuckDB memory limit, e.g. `512MB`.
    pub memory_limit: String,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            threads: 2,
            memory_limit: "1GB".into(),
        }
    }
}

/// A failure to open or migrate the database.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot create {path}: {source}")]
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot open DuckDB database {path}: {source}")]
    Open {
        path: PathBuf,
        source: duckdb::Error,
    },
    #[error("migration {version} ({name}) failed: {source}")]
    Migration {
        version: u32,
        name: &'static str,
        source: duckdb::Error,
    },
    #[error(
        "database schema version {found} is newer than this binary understands ({known}); \
         upgrade hitvault"
    )]
    TooNew { found: u32, known: u32 },
}

/// A query or metadata operation failed.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("DuckDB: {0}")]
    Db(#[from] duckdb::Error),
    #[error("site {0:?} already exists")]
    SiteExists(String),
    #[error("too many sites (limit {0})")]
    TooManySites(u32),
}

/// A site as stored in the `sites` table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SiteRow {
    pub id: u16,
    pub hostname: String,
    pub aliases: Vec<String>,
    /// `config` (declared in the configuration) or `runtime` (added with `site add`).
    pub origin: String,
}

/// What the writer has changed, for the stats readers' caches (see
/// [`rollup`]): counters that only grow, shared by a [`Store`] and the
/// readers made from it. Every write to `hits` goes through the store and
/// bumps them after its commit; a cache entry made before a bump is stale.
#[derive(Debug, Default)]
pub(crate) struct Changes {
    /// Bumped by every commit that adds or removes hits.
    pub(crate) hits: AtomicU64,
    /// Bumped by every commit that adds or removes hits dated before the
    /// current UTC day (late or imported history, retention), and by every
    /// rollup rebuild.
    pub(crate) past: AtomicU64,
}

impl Changes {
    /// After a commit that added hits dated from `min_ts_us` on.
    pub(crate) fn added(&self, min_ts_us: i64) {
        let today = jiff::Timestamp::now()
            .as_microsecond()
            .div_euclid(stats::model::DAY_US);
        if min_ts_us.div_euclid(stats::model::DAY_US) < today {
            self.past.fetch_add(1, Ordering::AcqRel);
        }
        self.hits.fetch_add(1, Ordering::AcqRel);
    }

    /// After a commit that may have touched hits of any day.
    pub(crate) fn any(&self) {
        self.past.fetch_add(1, Ordering::AcqRel);
        self.hits.fetch_add(1, Ordering::AcqRel);
    }
}

/// One connection to the database. Not `Sync`: the daemon's writer thread owns it.
pub struct Store {
    conn: Connection,
    path: PathBuf,
    changes: Arc<Changes>,
    /// hostname -> sites.id, refreshed when a hit names a site not yet seen.
    site_ids: HashMap<String, u16>,
    /// The table function imports append hits through, registered on
    /// `conn` by the first import.
    feed: Option<feed::Feed>,
    /// The latest session of the recent days' visitors, read at the first
    /// append (see [`sessions`]).
    open: Option<sessions::Open>,
    /// How the appends' visitor-days were numbered (see [`Store::session_work`]).
    session_work: sessions::SessionWork,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

fn base_config(opts: &StoreOptions, tmp: &Path) -> duckdb::Result<Config> {
    Config::default()
        // Nothing is ever downloaded or loaded: the appliance is air-gapped.
        .enable_autoload_extension(false)?
        .with("autoinstall_known_extensions", "false")?
        .with("allow_community_extensions", "false")?
        .threads(i64::from(opts.threads.max(1)))?
        .max_memory(&opts.memory_limit)?
        // A large append (an import, a rollup) compresses and writes each
        // row group as soon as it is full, instead of five at a time: less
        // memory, and an import's commit no longer compresses the last
        // four on its own (a fifth of the wall time of a 1M-hit import).
        .with("write_buffer_row_group_count", "1")?
        .with("temp_directory", tmp.to_string_lossy())
}

impl Store {
    /// Opens (creating if needed) `<dir>/hitvault.duckdb` for writing and applies
    /// pending migrations.
    pub fn open(dir: &Path, opts: &StoreOptions) -> Result<Store, OpenError> {
        let tmp = dir.join(TMP_DIR);
        std::fs::create_dir_all(&tmp).map_err(|source| OpenError::Dir {
            path: tmp.clone(),
            source,
        })?;
        let path = dir.join(DB_FILE);
        let open_err = |source| OpenError::Open {
            path: path.clone(),
            source,
        };
        let config = base_config(opts, &tmp).map_err(open_err)?;
        let conn = Connection::open_with_flags(&path, config).map_err(open_err)?;
        migrate::apply(&conn)?;
        let mut store = Store {
            conn,
            path,
            changes: Arc::default(),
            site_ids: HashMap::new(),
            feed: None,
            open: None,
            session_work: Default::default(),
        };
        store.refresh_sites().map_err(|e| match e {
            QueryError::Db(source) => OpenError::Open {
                path: store.path.clone(),
                source,
            },
            other => unreachable!("refresh_sites only fails in DuckDB: {other}"),
        })?;
        Ok(store)
    }

    /// Opens an existing database read-only (no migrations). Fails while another
    /// process holds it open for writing (DuckDB's file lock).
    pub fn open_read_only(dir: &Path) -> Result<Store, OpenError> {
        let path = dir.join(DB_FILE);
        let open_err = |source| OpenError::Open {
            path: path.clone(),
            source,
        };
        let config = Config::default()
            .access_mode(AccessMode::ReadOnly)
            .and_then(|c| c.enable_autoload_extension(false))
            .and_then(|c| c.with("autoinstall_known_extensions", "false"))
            .map_err(open_err)?;
        let conn = Connection::open_with_flags(&path, config).map_err(open_err)?;
        Ok(Store {
            conn,
            path,
            changes: Arc::default(),
            site_ids: HashMap::new(),
            feed: None,
            open: None,
            session_work: Default::default(),
        })
    }

    /// DuckDB's worker threads.
    pub fn threads(&self) -> duckdb::Result<u16> {
        self.conn
            .query_row("SELECT current_setting('threads')::USMALLINT", [], |r| {
                r.get(0)
            })
    }

    /// Sets DuckDB's worker threads for the whole database (every connection).
    pub fn set_threads(&self, threads: u16) -> Result<(), QueryError> {
        self.conn
            .execute_batch(&format!("SET threads = {}", threads.max(1)))?;
        Ok(())
    }

    /// A reader for the stats engine, on its own connection to this database.
    pub fn stats(&self) -> Result<stats::Stats, QueryError> {
        Ok(stats::Stats::new(
            self.conn.try_clone()?,
            self.changes.clone(),
        ))
    }

    /// Builds or rebuilds the stats rollups of up to `max_days` (site, day)
    /// pairs before today (UTC) that lack a valid one, holding at most
    /// `max_hits` hits together (but at least one day); see [`rollup`].
    pub fn refresh_rollups(
        &self,
        max_days: usize,
        max_hits: u64,
    ) -> Result<rollup::Refreshed, QueryError> {
        let r = rollup::refresh(&self.conn, jiff::Timestamp::now(), max_days, max_hits);
        if !matches!(r, Ok(rollup::Refreshed { days: 0, .. })) {
            self.changes.any();
        }
        r
    }

    /// Every (site, day) before today (UTC) whose rollup is missing or
    /// stale, by site and day, with its hits; build them with
    /// [`Store::build_rollups`], a step at a time ([`rollup::step`]).
    pub fn stale_rollups(&self) -> Result<Vec<rollup::Stale>, QueryError> {
        rollup::stale(&self.conn, jiff::Timestamp::now())
    }

    /// Builds the rollups of `days` (from [`Store::stale_rollups`]).
    pub fn build_rollups(&self, days: &[rollup::Stale]) -> Result<(), QueryError> {
        if days.is_empty() {
            return Ok(());
        }
        let r = rollup::build(&self.conn, days);
        self.changes.any();
        r
    }

    /// DuckDB's memory limit (`store.memory_limit`), in bytes; None if
    /// DuckDB prints it in a form not understood here.
    pub fn memory_limit_bytes(&self) -> Result<Option<u64>, QueryError> {
        let text: String =
            self.conn
                .query_row("SELECT current_setting('memory_limit')", [], |r| r.get(0))?;
        Ok(parse_bytes(&text))
    }

    /// How the visitor-days of the batches appended since the store was
    /// opened were numbered: in memory, or again in SQL (see the
    /// `sessions` module). For benchmarks and tests.
    pub fn session_work(&self) -> SessionWork {
        self.session_work
    }

    /// Takes over `old`'s change counters, for a store reopened in its place:
    /// the stats readers made from `old` keep hearing of every commit (and
    /// forget what they cached, since anything may have changed meanwhile).
    pub fn replace(&mut self, old: &Store) {
        self.changes = old.changes.clone();
        self.changes.any();
    }

    /// Tells the stats readers' caches that hits may have changed behind the
    /// store's back (SQL run directly on the connection, in tests).
    #[cfg(test)]
    pub(crate) fn hits_changed(&self) {
        self.changes.any();
    }

    /// A reader for the dashboard's small queries (sites, realtime), on its
    /// own connection to this database.
    pub fn live(&self) -> Result<live::LiveStats, QueryError> {
        Ok(live::LiveStats::new(self.conn.try_clone()?))
    }

    /// Path of the database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The highest queue sequence number whose hits are all stored.
    pub fn committed_seq(&self) -> Result<u64, QueryError> {
        Ok(self.conn.query_row(
            "SELECT committed_seq FROM ingest_state WHERE id = 1",
            [],
            |r| r.get(0),
        )?)
    }

    /// The largest hit id stored (0 when empty). New queue sequence numbers must
    /// start above it so ids stay unique even if the queue directory is lost.
    pub fn max_hit_id(&self) -> Result<u64, QueryError> {
        Ok(self
            .conn
            .query_row("SELECT coalesce(max(id), 0) FROM hits", [], |r| r.get(0))?)
    }

    /// The largest hit id stored in `lo..=hi` (0 when none): a cluster
    /// node's queue numbers its hits in its own range, above its largest.
    pub fn max_hit_id_in(&self, lo: u64, hi: u64) -> Result<u64, QueryError> {
        Ok(self.conn.query_row(
            "SELECT coalesce(max(id), 0) FROM hits WHERE id BETWEEN ? AND ?",
            [lo, hi],
            |r| r.get(0),
        )?)
    }

    /// Number of rows in `hits`.
    pub fn hit_count(&self) -> Result<u64, QueryError> {
        Ok(self
            .conn
            .query_row("SELECT count(*) FROM hits", [], |r| r.get(0))?)
    }

    /// All sites, ordered by id.
    pub fn sites(&self) -> Result<Vec<SiteRow>, QueryError> {
        live::read_sites(&self.conn, None)
    }

    /// Adds a site, or, for `origin = "config"`, updates the aliases of an existing
    /// one (declared sites are re-applied at every start). Returns the stored row.
    /// Hostnames must already be normalised by the caller.
    pub fn upsert_site(
        &mut self,
        hostname: &str,
        aliases: &[String],
        origin: &str,
    ) -> Result<SiteRow, QueryError> {
        let aliases_list = aliases.join(",");
        let existing: Option<u16> = self
            .conn
            .query_row("SELECT id FROM sites WHERE hostname = ?", [hostname], |r| {
                r.get(0)
            })
            .map(Some)
            .or_else(|e| {
                if matches!(e, duckdb::Error::QueryReturnedNoRows) {
                    Ok(None)
                } else {
                    Err(e)
                }
            })?;
        match existing {
            Some(id) if origin == "config" => {
                self.conn.execute(
                    "UPDATE sites SET aliases = CASE WHEN ? = '' THEN []::VARCHAR[] ELSE string_split(?, ',') END \
                     WHERE id = ?",
                    duckdb::params![aliases_list, aliases_list, id],
                )?;
            }
            Some(_) => return Err(QueryError::SiteExists(hostname.to_owned())),
            None => {
                let next: u32 =
                    self.conn
                        .query_row("SELECT coalesce(max(id), 0) + 1 FROM sites", [], |r| {
                            r.get(0)
                        })?;
                let id = u16::try_from(next)
                    .map_err(|_| QueryError::TooManySites(u32::from(u16::MAX)))?;
                self.conn.execute(
                    "INSERT INTO sites VALUES (?, ?, \
                     CASE WHEN ? = '' THEN []::VARCHAR[] ELSE string_split(?, ',') END, ?, now())",
                    duckdb::params![id, hostname, aliases_list, aliases_list, origin],
                )?;
            }
        }
        self.refresh_sites()?;
        let sites = self.sites()?;
        Ok(sites
            .into_iter()
            .find(|s| s.hostname == hostname)
            .expect("site just written"))
    }

    fn refresh_sites(&mut self) -> Result<(), QueryError> {
        self.site_ids = self
            .sites()?
            .into_iter()
            .map(|s| (s.hostname, s.id))
            .collect();
        Ok(())
    }

    /// Writes all data to the main database file and truncates the WAL.
    pub fn checkpoint(&self) -> Result<(), QueryError> {
        self.conn.execute_batch("CHECKPOINT")?;
        Ok(())
    }

    /// Runs any SQL and renders every value as text (NULL as `None`). For tools,
    /// tests and the CLI; never on the ingest path.
    pub fn query_text(&self, sql: &str) -> Result<Vec<Vec<Option<String>>>, QueryError> {
        let wrapped = format!("SELECT COLUMNS(*)::VARCHAR FROM ({sql})");
        let mut stmt = self.conn.prepare(&wrapped)?;
        let mut rows = stmt.query([])?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            let n = row.as_ref().column_count();
            let mut vals = Vec::with_capacity(n);
            for i in 0..n {
                vals.push(row.get::<_, Option<String>>(i)?);
            }
            out.push(vals);
        }
        Ok(out)
    }

    /// Size in bytes of the database file (plus its WAL, if any).
    pub fn disk_bytes(&self) -> u64 {
        let wal = self.path.with_extension("duckdb.wal");
        [&self.path, &wal]
            .iter()
            .filter_map(|p| std::fs::metadata(p).ok())
            .map(|m| m.len())
            .sum()
    }
}

/// A size as DuckDB prints it ("953.6 MiB", "64.0 MB", "1.2 GiB"), in bytes.
fn parse_bytes(text: &str) -> Option<u64> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num.parse().ok()?;
    let scale: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" | "bytes" => 1.0,
        "kb" => 1e3,
        "mb" => 1e6,
        "gb" => 1e9,
        "tb" => 1e12,
        "kib" => 1024.0,
        "mib" => 1024.0 * 1024.0,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        "tib" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    Some((n * scale) as u64)
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod engagement_tests;
#[cfg(test)]
mod goals_tests;
#[cfg(test)]
mod imported_tests;
#[cfg(test)]
mod rollup_tests;
#[cfg(test)]
mod selection_tests;
#[cfg(test)]
mod sessions_tests;
#[cfg(test)]
mod stats_tests;
