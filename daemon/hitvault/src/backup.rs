//! `hitvault backup DIR` and `hitvault restore DIR`, and the daemon's side
//! of a backup and of `hitvault prune` ([`DaemonMaintenance`]).
//!
//! A backup is a directory holding `hitvault.duckdb`, a consistent copy of
//! the database made by DuckDB (`hitvault_store::backup`), and `BACKUP`, a
//! JSON manifest with the schema version, the queue position the copy
//! covers (`committed_seq`), its row counts and the file's size and SHA-256.
//! The manifest is written last, under a temporary name renamed into place
//! after the data file and the directory were fsync'd: a directory without
//! `BACKUP` is not a backup, so an interrupted one never looks complete.
//!
//! While the daemon runs, the CLI asks it over the control socket. The
//! daemon first waits until every hit acknowledged before the request is
//! committed (the queue's durable position), then copies the database from
//! a reader connection into `<data dir>/tmp/` (the only place its sandbox
//! lets it write) while the batcher goes on committing, streams that file to
//! the CLI and deletes it. With no daemon, the CLI takes the data dir's lock,
//! replays what the queue still holds into the database (as a start would),
//! and copies it itself.
//!
//! Restore writes the copy into an empty or new data dir only; a later start
//! resumes after `committed_seq` with new hit ids above every restored one,
//! so no hit is stored twice and no id is reused.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hitvault_queue::{Queue, QueueConfig};
use hitvault_server::{AdminError, Maintenance, Prepared};
use hitvault_store::{DB_FILE, Reader, SnapshotInfo, Store, StoreOptions};
use hitvault_takeout::manifest::sha256_file;
use hitvault_takeout::write::hex;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::batcher::{self, StoreOp};
use crate::client;
use crate::config::Config;
use crate::daemon::{CONTROL_SOCKET, lock_data_dir, prepare_data_dir};
use crate::takeout::CliError;

/// File name of a backup's manifest.
pub const MANIFEST: &str = "BACKUP";

/// Layout version of a backup directory.
pub const BACKUP_VERSION: u32 = 1;

/// The `BACKUP` file (JSON).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupManifest {
    pub backup_version: u32,
    pub hitvault_version: String,
    pub created_at: String,
    /// Schema version of the database copy.
    pub schema_version: u32,
    /// Queue position whose hits are all in the copy.
    pub committed_seq: u64,
    pub max_hit_id: u64,
    pub hits: u64,
    pub props: u64,
    pub sites: u64,
    pub files: Vec<BackupFile>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupFile {
    pub name: String,
    pub bytes: u64,
    pub sha256: String,
}

/// What the daemon sends in `x-hitvault-backup`.
#[derive(Debug, Serialize, Deserialize)]
struct Described {
    schema_version: u32,
    committed_seq: u64,
    max_hit_id: u64,
    hits: u64,
    props: u64,
    sites: u64,
    bytes: u64,
}

impl From<(&SnapshotInfo, u64)> for Described {
    fn from((i, bytes): (&SnapshotInfo, u64)) -> Self {
        Described {
            schema_version: i.schema_version,
            committed_seq: i.committed_seq,
            max_hit_id: i.max_hit_id,
            hits: i.hits,
            props: i.props,
            sites: i.sites,
            bytes,
        }
    }
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// Copies `from` into a new file `to` (fsync'd); returns (bytes, SHA-256).
fn copy_hashed(from: &mut dyn Read, to: &Path) -> std::io::Result<(u64, String)> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(to)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0u64;
    loop {
        let k = match from.read(&mut buf) {
            Ok(0) => break,
            Ok(k) => k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        f.write_all(&buf[..k])?;
        h.update(&buf[..k]);
        n += k as u64;
    }
    f.sync_all()?;
    Ok((n, hex(&h.finalize())))
}

/// Creates `dir`, or takes it if it exists and is empty.
fn empty_dir(dir: &Path, what: &str) -> Result<(), CliError> {
    match std::fs::read_dir(dir) {
        Ok(entries) => {
            let names: Vec<String> = entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
            if !names.is_empty() {
                let mut shown = names.clone();
                shown.sort();
                shown.truncate(5);
                return Err((
                    2,
                    format!(
                        "{what} {} is not empty (it holds {}{}): use a new or empty directory",
                        dir.display(),
                        shown.join(", "),
                        if names.len() > 5 { ", ..." } else { "" }
                    ),
                ));
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dir)
                .map_err(|e| (2, format!("cannot create {}: {e}", dir.display())))?;
            if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                sync_dir(parent).map_err(|e| (1, format!("{}: {e}", parent.display())))?;
            }
            Ok(())
        }
        Err(e) => Err((2, format!("cannot read {}: {e}", dir.display()))),
    }
}

fn now_text() -> String {
    hitvault_takeout::format_time(crate::retention::now_us())
}

/// `hitvault backup DIR`.
pub fn backup(cfg: &Config, dir: &Path) -> Result<(), CliError> {
    empty_dir(dir, "backup directory")?;
    let started = Instant::now();
    let file = dir.join(DB_FILE);
    let socket = cfg.data_dir.join(CONTROL_SOCKET);
    let (d, bytes, sha, how) = match client::connect(&socket) {
        Some(conn) => {
            let mut reply =
                client::stream(conn, "POST", "/backup").map_err(|e| (1, e.to_string()))?;
            if reply.status != 200 {
                // Exit 1 whatever the status: a backup has no input to blame.
                return Err((1, reply.refusal("the daemon refused the backup").1));
            }
            let d: Described = reply
                .header("x-hitvault-backup")
                .and_then(|v| serde_json::from_str(v).ok())
                .ok_or((
                    1,
                    "the daemon's reply does not describe the backup".to_owned(),
                ))?;
            let (bytes, sha) = copy_hashed(&mut reply.body, &file)
                .map_err(|e| (1, format!("writing {}: {e}", file.display())))?;
            if bytes != d.bytes {
                return Err((1, format!("the daemon sent {bytes} bytes of {}", d.bytes)));
            }
            (d, bytes, sha, "through the running daemon")
        }
        None => {
            if !cfg.data_dir.join(DB_FILE).exists() {
                return Err((
                    2,
                    format!("no database in data dir {}", cfg.data_dir.display()),
                ));
            }
            let _lock = lock_data_dir(&cfg.data_dir).map_err(|e| (3, e.to_string()))?;
            let store = drained_store(cfg)?;
            let reader = store.reader().map_err(|e| (1, e.to_string()))?;
            let info = reader.snapshot(&file).map_err(|e| (1, e.to_string()))?;
            let (bytes, sha) = sha256_file(&file).map_err(|e| (1, e.to_string()))?;
            std::fs::File::open(&file)
                .and_then(|f| f.sync_all())
                .map_err(|e| (1, e.to_string()))?;
            (
                Described::from((&info, bytes)),
                bytes,
                sha,
                "from the database file",
            )
        }
    };
    sync_dir(dir).map_err(|e| (1, e.to_string()))?;
    let m = BackupManifest {
        backup_version: BACKUP_VERSION,
        hitvault_version: env!("CARGO_PKG_VERSION").to_owned(),
        created_at: now_text(),
        schema_version: d.schema_version,
        committed_seq: d.committed_seq,
        max_hit_id: d.max_hit_id,
        hits: d.hits,
        props: d.props,
        sites: d.sites,
        files: vec![BackupFile {
            name: DB_FILE.to_owned(),
            bytes,
            sha256: sha,
        }],
    };
    let tmp = dir.join(format!("{MANIFEST}.tmp"));
    let body = serde_json::to_vec_pretty(&m).expect("manifest serialises");
    (|| -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&body)?;
        f.sync_all()?;
        std::fs::rename(&tmp, dir.join(MANIFEST))?;
        sync_dir(dir)
    })()
    .map_err(|e| (1, format!("writing {}: {e}", dir.join(MANIFEST).display())))?;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "backed up {} ({how}) in {secs:.2} s: {} hits, {} props, {} sites, queue position {}, \
         {bytes} bytes, sha256 {}",
        dir.display(),
        m.hits,
        m.props,
        m.sites,
        m.committed_seq,
        m.files[0].sha256
    );
    Ok(())
}

/// Opens the store for writing and commits what the queue still holds
/// (after a crash), as the daemon would at start; returns the store.
fn drained_store(cfg: &Config) -> Result<Store, CliError> {
    let opts = StoreOptions::default();
    let store = Store::open(&cfg.data_dir, &opts).map_err(|e| (3, e.to_string()))?;
    let queue_dir = cfg.data_dir.join("queue");
    if !queue_dir.exists() {
        return Ok(store);
    }
    let committed = store.committed_seq().map_err(|e| (3, e.to_string()))?;
    let floor = store
        .max_hit_id()
        .map_err(|e| (3, e.to_string()))?
        .max(committed)
        + 1;
    let qcfg = QueueConfig {
        dir: queue_dir,
        segment_bytes: cfg.queue_segment_bytes,
        max_bytes: cfg.queue_max_bytes,
        ..QueueConfig::default()
    };
    let queue = Queue::open(qcfg, committed, floor, None).map_err(|e| (3, e.to_string()))?;
    if queue.stats().last_seq <= committed {
        queue.close();
        return Ok(store);
    }
    let (_tx, ops) = std::sync::mpsc::channel();
    let finished = batcher::run(batcher::Parts {
        queue: queue.clone(),
        store,
        reopen: {
            let (dir, opts) = (cfg.data_dir.clone(), opts.clone());
            Box::new(move || Store::open(&dir, &opts))
        },
        ops,
        metrics: Arc::new(hitvault_server::metrics::Metrics::default()),
        cfg: batcher::BatcherConfig {
            max_rows: cfg.batch_max_rows,
            max_wait: Duration::from_millis(1),
        },
        handle: batcher::BatcherHandle {
            committed: Arc::new(AtomicU64::new(committed)),
            stop: Arc::new(std::sync::atomic::AtomicBool::new(true)),
        },
        heartbeat: Box::new(|| {}),
        // Never prune here: a backup copies what is stored.
        retention: crate::retention::Policy {
            default_days: 0,
            sites: Default::default(),
            archive_dir: cfg.archive_dir(),
        },
        // No daemon, so no realtime stream to tell.
        on_commit: Box::new(|_| {}),
        busy: batcher::Busy::default(),
    });
    queue.close();
    finished
        .checkpoint
        .map_err(|e| (1, format!("replaying the queue: {e}")))?;
    eprintln!(
        "replayed the queue into the database up to position {}",
        finished.committed
    );
    Store::open(&cfg.data_dir, &opts).map_err(|e| (3, e.to_string()))
}

/// Reads `dir/BACKUP` and checks the data file against it.
pub fn verify(dir: &Path) -> Result<BackupManifest, CliError> {
    let path = dir.join(MANIFEST);
    let text = std::fs::read(&path).map_err(|e| {
        (
            2,
            format!(
                "{} is not a complete backup: cannot read {}: {e}",
                dir.display(),
                path.display()
            ),
        )
    })?;
    let m: BackupManifest = serde_json::from_slice(&text)
        .map_err(|e| (2, format!("{}: not a backup manifest: {e}", path.display())))?;
    if m.backup_version != BACKUP_VERSION {
        return Err((
            2,
            format!(
                "{}: backup version {}, this binary reads {BACKUP_VERSION}",
                path.display(),
                m.backup_version
            ),
        ));
    }
    if m.schema_version > hitvault_store::SCHEMA_VERSION {
        return Err((
            2,
            format!(
                "{}: schema version {} is newer than this binary's {}; upgrade hitvault",
                path.display(),
                m.schema_version,
                hitvault_store::SCHEMA_VERSION
            ),
        ));
    }
    let mut problems = vec![];
    for f in &m.files {
        let p = dir.join(&f.name);
        match sha256_file(&p) {
            Err(e) => problems.push(format!("{}: {e}", p.display())),
            Ok((bytes, sha)) => {
                if bytes != f.bytes || sha != f.sha256 {
                    problems.push(format!(
                        "{}: {bytes} bytes, sha256 {sha}; the manifest says {} bytes, sha256 {}",
                        p.display(),
                        f.bytes,
                        f.sha256
                    ));
                }
            }
        }
    }
    if !m.files.iter().any(|f| f.name == DB_FILE) {
        problems.push(format!("the manifest lists no {DB_FILE}"));
    }
    if problems.is_empty() {
        Ok(m)
    } else {
        Err((
            2,
            format!("{} is damaged:\n  {}", dir.display(), problems.join("\n  ")),
        ))
    }
}

/// `hitvault restore DIR`: into an empty or new data dir only.
pub fn restore(cfg: &Config, dir: &Path) -> Result<(), CliError> {
    let m = verify(dir)?;
    let data = &cfg.data_dir;
    if let Ok(entries) = std::fs::read_dir(data) {
        let names: Vec<String> = entries
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        if !names.is_empty() {
            return Err((
                2,
                format!(
                    "refusing to restore into data dir {}: it is not empty (it holds {}); \
                     restore only into an empty or new directory",
                    data.display(),
                    names.join(", ")
                ),
            ));
        }
    }
    prepare_data_dir(data).map_err(|e| (3, e.to_string()))?;
    let _lock = lock_data_dir(data).map_err(|e| (3, e.to_string()))?;
    let target = data.join(DB_FILE);
    let partial = data.join(format!("{DB_FILE}.restoring"));
    let undo = |msg: String| {
        let _ = std::fs::remove_file(&partial);
        let _ = std::fs::remove_file(&target);
        let mut wal = target.as_os_str().to_owned();
        wal.push(".wal");
        let _ = std::fs::remove_file(PathBuf::from(wal));
        (1, format!("nothing restored: {msg}"))
    };
    let mut src = std::fs::File::open(dir.join(DB_FILE)).map_err(|e| undo(e.to_string()))?;
    let (_, sha) = copy_hashed(&mut src, &partial).map_err(|e| undo(e.to_string()))?;
    if sha
        != m.files
            .iter()
            .find(|f| f.name == DB_FILE)
            .expect("verified")
            .sha256
    {
        return Err(undo(
            "the backup changed while it was copied (SHA-256 differs)".into(),
        ));
    }
    std::fs::rename(&partial, &target)
        .and_then(|()| sync_dir(data))
        .map_err(|e| undo(e.to_string()))?;
    // Open it as the daemon will (migrations to this binary's schema), and
    // check it holds what the manifest says.
    let store = Store::open(data, &StoreOptions::default()).map_err(|e| undo(e.to_string()))?;
    let got = (
        store.committed_seq().map_err(|e| undo(e.to_string()))?,
        store.hit_count().map_err(|e| undo(e.to_string()))?,
        store.max_hit_id().map_err(|e| undo(e.to_string()))?,
    );
    if got != (m.committed_seq, m.hits, m.max_hit_id) {
        drop(store);
        return Err(undo(format!(
            "the restored database has (position, hits, max id) {got:?}, the manifest says {:?}",
            (m.committed_seq, m.hits, m.max_hit_id)
        )));
    }
    store.checkpoint().map_err(|e| undo(e.to_string()))?;
    println!(
        "restored {} into {}: {} hits, {} props, {} sites, queue position {}",
        dir.display(),
        data.display(),
        m.hits,
        m.props,
        m.sites,
        m.committed_seq
    );
    Ok(())
}

/// `hitvault prune [--dry-run]`: through the daemon, or on the store.
pub fn prune(cfg: &Config, dry_run: bool) -> Result<(), CliError> {
    let socket = cfg.data_dir.join(CONTROL_SOCKET);
    let report: crate::retention::Report = match client::connect(&socket) {
        Some(conn) => {
            let path = if dry_run {
                "/prune?dry_run=1"
            } else {
                "/prune"
            };
            let reply =
                client::request(conn, "POST", path, None).map_err(|e| (1, e.to_string()))?;
            if reply.status != 200 {
                // Exit 1 whatever the status, as for a backup.
                let (_, msg) =
                    client::refusal(reply.status, &reply.body, "the daemon refused the prune");
                return Err((1, msg));
            }
            serde_json::from_slice(&reply.body)
                .map_err(|e| (1, format!("bad reply from the daemon: {e}")))?
        }
        None => {
            if !cfg.data_dir.join(DB_FILE).exists() {
                return Err((
                    2,
                    format!("no database in data dir {}", cfg.data_dir.display()),
                ));
            }
            let _lock = lock_data_dir(&cfg.data_dir).map_err(|e| (3, e.to_string()))?;
            let mut store = Store::open(&cfg.data_dir, &StoreOptions::default())
                .map_err(|e| (3, e.to_string()))?;
            let policy = crate::retention::Policy::from_config(cfg);
            let r = crate::retention::run(
                &mut store,
                &policy,
                crate::retention::now_us(),
                dry_run,
                &mut || {},
            )
            .map_err(|e| (1, e))?;
            store.checkpoint().map_err(|e| (1, e.to_string()))?;
            r
        }
    };
    crate::retention::print(&report);
    Ok(())
}

/// Asks the batcher for a new read connection.
pub fn reader(ops: &std::sync::mpsc::Sender<StoreOp>) -> Result<Reader, AdminError> {
    let (tx, rx) = std::sync::mpsc::channel();
    ops.send(StoreOp::Reader(tx))
        .map_err(|_| AdminError::Internal("the store is closed".into()))?;
    rx.recv_timeout(Duration::from_secs(30))
        .map_err(|_| AdminError::Internal("the store did not answer".into()))?
        .map_err(AdminError::Internal)
}

/// How long a backup waits for the batcher to commit what was acknowledged
/// before the request.
const CATCH_UP: Duration = Duration::from_secs(60);

/// The daemon's backups and prunes.
pub struct DaemonMaintenance {
    pub ops: std::sync::mpsc::Sender<StoreOp>,
    pub queue: Queue,
    /// The batcher's committed position.
    pub committed: Arc<AtomicU64>,
    /// `<data dir>/tmp`, where snapshots are made before they are streamed.
    pub tmp: PathBuf,
    /// The ingest registry: sites an import adds are added to it too.
    pub sites: Arc<std::sync::RwLock<Arc<hitvault_core::sites::Sites>>>,
}

impl DaemonMaintenance {
    /// Waits until the batcher has committed `target`.
    fn wait_committed(&self, target: u64) -> Result<(), AdminError> {
        let until = Instant::now() + CATCH_UP;
        while self.committed.load(Ordering::Acquire) < target {
            if Instant::now() > until {
                return Err(AdminError::Internal(format!(
                    "the batcher did not reach queue position {target} in {} s",
                    CATCH_UP.as_secs()
                )));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(())
    }

    /// Adds the runtime sites the store has and the registry lacks.
    fn refresh_sites(&self) -> Result<(), AdminError> {
        let (tx, rx) = std::sync::mpsc::channel();
        self.ops
            .send(StoreOp::ListSites(tx))
            .map_err(|_| AdminError::Internal("the store is closed".into()))?;
        let rows = rx
            .recv_timeout(Duration::from_secs(30))
            .map_err(|_| AdminError::Internal("the store did not answer".into()))?
            .map_err(AdminError::Internal)?;
        let current = self.sites.read().unwrap_or_else(|p| p.into_inner()).clone();
        let mut next = (*current).clone();
        let mut added = 0;
        for row in rows {
            if row.origin == "runtime" && next.resolve(&row.hostname).is_none() {
                match next.add(&row.hostname, row.aliases.clone()) {
                    Ok(()) => added += 1,
                    Err(e) => {
                        tracing::warn!(site = %row.hostname, error = %e, "an imported site conflicts; not served")
                    }
                }
            }
        }
        if added > 0 {
            *self.sites.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(next);
        }
        Ok(())
    }
}

/// Prefix of snapshot files in `<data dir>/tmp` (removed at start if a crash left one).
pub const SNAPSHOT_PREFIX: &str = "backup-";

impl Maintenance for DaemonMaintenance {
    fn backup(&self) -> Result<Prepared, AdminError> {
        // Everything acknowledged before this request is durable in the
        // queue, at or below its durable position: wait until it is committed.
        self.wait_committed(self.queue.stats().last_seq)?;
        static N: AtomicU64 = AtomicU64::new(0);
        let file = self.tmp.join(format!(
            "{SNAPSHOT_PREFIX}{}.duckdb",
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_file(&file);
        let snap = reader(&self.ops)?.snapshot(&file);
        let info = snap.map_err(|e| {
            let _ = std::fs::remove_file(&file);
            AdminError::Internal(format!("snapshot failed: {e}"))
        })?;
        let bytes = std::fs::metadata(&file)
            .map_err(|e| AdminError::Internal(e.to_string()))?
            .len();
        tracing::info!(
            hits = info.hits,
            committed = info.committed_seq,
            bytes,
            "backup snapshot taken"
        );
        let header = serde_json::to_string(&Described::from((&info, bytes))).expect("serialises");
        Ok(Prepared {
            media: "application/vnd.duckdb",
            headers: vec![("x-hitvault-backup", header)],
            write: Box::new(move |mut out| {
                let sent = std::fs::File::open(&file)
                    .and_then(|mut f| std::io::copy(&mut f, &mut out))
                    .and_then(|_| out.finish());
                let _ = std::fs::remove_file(&file);
                sent.map_err(|e| AdminError::Internal(e.to_string()))
            }),
        })
    }

    fn import(
        &self,
        max_id: u64,
        body: &mut dyn std::io::Read,
    ) -> Result<serde_json::Value, AdminError> {
        use hitvault_takeout::stream::{Frame, read_frame};
        let mut body = body;
        // Hit ids are queue seqs: from now on the queue numbers above every
        // imported id and above a reserved range, and everything it numbered
        // before is committed before the merge, so an imported id can meet
        // only a stored hit, never a future one. An imported hit whose id is
        // stored as another hit (of this instance) gets a new id from the
        // reserved range. Only an id in use (stored before this run, which
        // the queue opened above, or given out or reserved since) can be
        // stored as another hit, so there cannot be more of them than
        // ids up to the smaller of `max_id` and the highest id in use: a
        // Takeout of another instance imported into a new one reserves as
        // many ids as the new one has used, not as many as it imports.
        let (renumber_above, reserved, target) = self
            .queue
            .reserve_above_with(max_id, |in_use| max_id.min(in_use));
        self.wait_committed(target)?;
        let (tx, rx) = std::sync::mpsc::sync_channel(8);
        let (reply, answer) = std::sync::mpsc::channel();
        self.ops
            .send(StoreOp::Import {
                batches: rx,
                max_id,
                renumber_above,
                reply,
            })
            .map_err(|_| AdminError::Internal("the store is closed".into()))?;
        let mut rows = 0u64;
        let fed: Result<(), String> = loop {
            match read_frame(&mut body) {
                Ok(Frame::Data(table, batch)) => {
                    rows += batch.num_rows() as u64;
                    if tx
                        .send(batcher::ImportMsg::Batch(table.name(), batch))
                        .is_err()
                    {
                        break Ok(()); // the batcher stopped; its answer says why
                    }
                }
                Ok(Frame::End { rows: n }) if n == rows => {
                    let _ = tx.send(batcher::ImportMsg::End);
                    break Ok(());
                }
                Ok(Frame::End { rows: n }) => {
                    break Err(format!("the stream announced {n} rows, {rows} arrived"));
                }
                Ok(Frame::Error(m)) => break Err(m),
                Err(e) => break Err(e.to_string()),
            }
        };
        if let Err(m) = &fed {
            let _ = tx.send(batcher::ImportMsg::Abort(format!("nothing imported: {m}")));
        }
        drop(tx);
        let stats = answer
            .recv()
            .map_err(|_| AdminError::Internal("the store did not answer".into()))?
            .map_err(AdminError::Invalid)?;
        if stats.sites_added > 0 {
            self.refresh_sites()?;
        }
        tracing::info!(
            hits_added = stats.hits_added,
            hits_renumbered = stats.hits_renumbered,
            hits_present = stats.hits_present,
            max_id,
            "import merged"
        );
        let mut reply = crate::takeout::stats_json(&stats);
        reply["next_id_at_least"] = (renumber_above + reserved + 1).into();
        Ok(reply)
    }

    fn import_plausible(&self, body: &[u8]) -> Result<serde_json::Value, AdminError> {
        let wire: crate::plausible::Wire = serde_json::from_slice(body)
            .map_err(|e| AdminError::Invalid(format!("not an import-plausible body: {e}")))?;
        let (site, set) = wire.into_set().map_err(AdminError::Invalid)?;
        let (tx, rx) = std::sync::mpsc::channel();
        self.ops
            .send(StoreOp::Run(Box::new(move |store| {
                let _ = tx.send(store.replace_imported(&site, &set));
            })))
            .map_err(|_| AdminError::Internal("the store is closed".into()))?;
        let r = rx
            .recv()
            .map_err(|_| AdminError::Internal("the store did not answer".into()))?
            .map_err(|e| match e {
                hitvault_store::imported::ImportedError::Invalid(m) => AdminError::Invalid(m),
                e => AdminError::Internal(e.to_string()),
            })?;
        tracing::info!(
            days = r.days,
            values = r.values,
            replaced = r.rows_replaced,
            "Plausible export imported"
        );
        Ok(serde_json::json!({
            "days": r.days,
            "values": r.values,
            "rows_replaced": r.rows_replaced,
        }))
    }

    fn prune(&self, dry_run: bool) -> Result<serde_json::Value, AdminError> {
        let (tx, rx) = std::sync::mpsc::channel();
        self.ops
            .send(StoreOp::Prune { dry_run, reply: tx })
            .map_err(|_| AdminError::Internal("the store is closed".into()))?;
        let r = rx
            .recv()
            .map_err(|_| AdminError::Internal("the store did not answer".into()))?
            .map_err(AdminError::Internal)?;
        Ok(serde_json::to_value(r).expect("report serialises"))
    }
}
