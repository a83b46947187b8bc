//! Backups: a consistent copy of the whole database, written by DuckDB.
//!
//! [`Reader::snapshot`] attaches a new database file and runs
//! `COPY FROM DATABASE` into it from a reader connection. The statement is one
//! transaction, so the copy holds the state of one commit: the hits, their
//! props, the sites and `ingest_state.committed_seq` together, which is the
//! queue position a restored instance resumes after. The writer goes on
//! committing meanwhile (DuckDB's MVCC). The copy is then checkpointed and
//! detached, so the file alone (no WAL) is the backup, and it is compact.
//!
//! The figures printed by [`SnapshotInfo`] are read back from the copy, not
//! from the source, so they describe exactly what was written.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::Reader;

/// What a snapshot holds, read from the copy itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotInfo {
    /// Schema version (highest applied migration) of the copy.
    pub schema_version: u32,
    /// Queue position whose hits are all in the copy.
    pub committed_seq: u64,
    /// Largest hit id in the copy (0 when empty).
    pub max_hit_id: u64,
    pub hits: u64,
    pub props: u64,
    pub sites: u64,
    /// The cluster state machine's state the copy holds (a cluster node's
    /// snapshot: the log it covers).
    pub cluster_state: Option<Vec<u8>>,
}

/// A snapshot failed; the partial file may exist and must be removed by the caller.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("DuckDB: {0}")]
    Db(#[from] duckdb::Error),
    #[error("{0} already exists")]
    Exists(String),
    #[error("the snapshot left a write-ahead log beside {0}")]
    Wal(String),
}

fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// Distinct names for concurrent snapshots in one process (attached
/// databases are shared by every connection of the instance).
static NEXT: AtomicU64 = AtomicU64::new(1);

impl Reader {
    /// Writes a consistent copy of the database to `file`, which must not exist.
    pub fn snapshot(&self, file: &Path) -> Result<SnapshotInfo, SnapshotError> {
        if file.exists() {
            return Err(SnapshotError::Exists(file.display().to_string()));
        }
        let conn = &self.conn;
        let source: String = conn.query_row("SELECT current_database()", [], |r| r.get(0))?;
        let alias = format!("hv_snapshot_{}", NEXT.fetch_add(1, Ordering::Relaxed));
        conn.execute_batch(&format!(
            "ATTACH {} AS {alias}",
            literal(&file.to_string_lossy())
        ))?;
        let copied = (|| -> Result<SnapshotInfo, SnapshotError> {
            conn.execute_batch(&format!("COPY FROM DATABASE {} TO {alias}", ident(&source)))?;
            let info = conn.query_row(
                &format!(
                    "SELECT (SELECT max(version) FROM {a}.schema_migrations), \
                            (SELECT committed_seq FROM {a}.ingest_state WHERE id = 1), \
                            (SELECT coalesce(max(id), 0) FROM {a}.hits), \
                            (SELECT count(*) FROM {a}.hits), \
                            (SELECT count(*) FROM {a}.hit_props), \
                            (SELECT count(*) FROM {a}.sites), \
                            (SELECT state FROM {a}.cluster_state WHERE id = 1)",
                    a = alias
                ),
                [],
                |r| {
                    Ok(SnapshotInfo {
                        schema_version: r.get(0)?,
                        committed_seq: r.get(1)?,
                        max_hit_id: r.get(2)?,
                        hits: r.get(3)?,
                        props: r.get(4)?,
                        sites: r.get(5)?,
                        cluster_state: r.get(6)?,
                    })
                },
            )?;
            conn.execute_batch(&format!("CHECKPOINT {alias}"))?;
            Ok(info)
        })();
        let detached = conn.execute_batch(&format!("DETACH {alias}"));
        let info = copied?;
        detached?;
        let mut wal = file.as_os_str().to_owned();
        wal.push(".wal");
        if Path::new(&wal).exists() {
            return Err(SnapshotError::Wal(file.display().to_string()));
        }
        Ok(info)
    }
}

/// A cluster snapshot could not be installed; the store is unchanged.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error("DuckDB: {0}")]
    Db(#[from] duckdb::Error),
    #[error(
        "the snapshot has schema version {theirs}, this store {ours}: run the same hitvault on every node"
    )]
    Schema { theirs: u32, ours: u32 },
    #[error("the snapshot holds no cluster state")]
    NoState,
    #[error("{0}")]
    Query(#[from] crate::QueryError),
}

/// Tables a snapshot does not replace: the queue position is this node's
/// own (its queue numbers its hits), not the node's that made the copy.
const NODE_OWN: &[&str] = &["ingest_state"];

impl crate::Store {
    /// Replaces what this store holds with the copy in `file` (made by
    /// [`Reader::snapshot`] on another node of the cluster, same schema),
    /// in one transaction: every table but this node's queue position is
    /// emptied and filled from the copy, so a reader sees the old store or
    /// the new one. Returns the cluster state the copy holds.
    pub fn install_copy(&mut self, file: &Path) -> Result<Vec<u8>, InstallError> {
        let alias = format!("hv_install_{}", NEXT.fetch_add(1, Ordering::Relaxed));
        self.conn.execute_batch(&format!(
            "ATTACH {} AS {alias} (READ_ONLY)",
            literal(&file.to_string_lossy())
        ))?;
        let done = self.install_from(&alias);
        let detached = self.conn.execute_batch(&format!("DETACH {alias}"));
        let state = done?;
        detached?;
        // What the writer kept in memory describes the old store.
        self.open = None;
        self.refresh_sites()?;
        self.changes.any();
        Ok(state)
    }

    fn install_from(&mut self, alias: &str) -> Result<Vec<u8>, InstallError> {
        let version = |db: &str| -> duckdb::Result<u32> {
            self.conn.query_row(
                &format!("SELECT max(version) FROM {db}.schema_migrations"),
                [],
                |r| r.get(0),
            )
        };
        let (theirs, ours) = (version(alias)?, version("main")?);
        if theirs != ours {
            return Err(InstallError::Schema { theirs, ours });
        }
        let state: Option<Vec<u8>> = self
            .conn
            .query_row(
                &format!("SELECT state FROM {alias}.cluster_state WHERE id = 1"),
                [],
                |r| r.get(0),
            )
            .or_else(|e| match e {
                duckdb::Error::QueryReturnedNoRows => Ok(None),
                e => Err(e),
            })?;
        let state = state.ok_or(InstallError::NoState)?;
        let tables: Vec<String> = {
            let mut st = self.conn.prepare(
                "SELECT table_name FROM duckdb_tables() \
                 WHERE database_name = current_database() AND schema_name = 'main' \
                 ORDER BY table_name",
            )?;
            st.query_map([], |r| r.get::<_, String>(0))?
                .collect::<Result<_, _>>()?
        };
        let tx = self.conn.transaction()?;
        for t in tables.iter().filter(|t| !NODE_OWN.contains(&t.as_str())) {
            let t = ident(t);
            tx.execute_batch(&format!(
                "DELETE FROM main.{t}; INSERT INTO main.{t} BY NAME SELECT * FROM {alias}.{t};"
            ))?;
        }
        tx.commit()?;
        Ok(state)
    }
}
