//! `hitvault backup DIR` and `hitvault restore DIR`.
//!
//! A backup is a directory holding `hitvault.duckdb`, a consistent copy of
//! the database made by DuckDB (`hitvault_store::backup`), `accounts.jsonl`
//! (the accounts' journal, whole records only: users, factors, sessions;
//! absent when no account exists yet), `audit.jsonl` (the audit log, whole
//! entries only, the backup's own entry included; absent when empty), and
//! `BACKUP`, a
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
//! lets it write) while the writer goes on committing, streams that file to
//! the CLI and deletes it. With no daemon, the CLI takes the data dir's lock,
//! replays what the queue still holds into the database (as a start would),
//! and copies it itself.
//!
//! A backup is recorded in the audit log (by the daemon, or by the CLI
//! offline) before the log is copied; a restore copies the log back and
//! records itself in it.
//!
//! Restore writes the copy into an empty or new data dir only; a later start
//! resumes after `committed_seq` with new hit ids above every restored one,
//! so no hit is stored twice and no id is reused.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use hitvault_store::{DB_FILE, Store, StoreOptions};
use hitvault_takeout::manifest::sha256_file;
use hitvault_takeout::write::hex;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::client;
use crate::config::Config;
use crate::control::{SNAPSHOT_HEADER, SnapshotHeader};
use crate::datadir::{self, ACCOUNTS_DIR, CONTROL_SOCKET};
use crate::exit::{Exit, Failure, OrExit};

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
fn empty_dir(dir: &Path, what: &str) -> Result<(), Failure> {
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
                return Err(Failure::usage(format!(
                    "{what} {} is not empty (it holds {}{}): use a new or empty directory",
                    dir.display(),
                    shown.join(", "),
                    if names.len() > 5 { ", ..." } else { "" }
                )));
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dir).or_exit_with(Exit::Usage, |e| {
                format!("cannot create {}: {e}", dir.display())
            })?;
            if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                sync_dir(parent)
                    .or_exit_with(Exit::Runtime, |e| format!("{}: {e}", parent.display()))?;
            }
            Ok(())
        }
        Err(e) => Err(Failure::usage(format!(
            "cannot read {}: {e}",
            dir.display()
        ))),
    }
}

fn now_text() -> String {
    hitvault_takeout::format_time(crate::retention::now_us())
}

/// `hitvault backup DIR`.
pub fn backup(cfg: &Config, dir: &Path) -> Result<(), Failure> {
    empty_dir(dir, "backup directory")?;
    let started = Instant::now();
    let file = dir.join(DB_FILE);
    let socket = cfg.data_dir.join(CONTROL_SOCKET);
    let (d, bytes, sha, how) = match client::connect(&socket) {
        Some(conn) => {
            let mut reply = client::stream(conn, "POST", "/backup").or_exit(Exit::Runtime)?;
            if reply.status != 200 {
                // Exit 1 whatever the status: a backup has no input to blame.
                return Err(reply
                    .refusal("the daemon refused the backup")
                    .with_exit(Exit::Runtime));
            }
            let d: SnapshotHeader = reply
                .header(SNAPSHOT_HEADER)
                .and_then(|v| serde_json::from_str(v).ok())
                .ok_or_else(|| {
                    Failure::runtime("the daemon's reply does not describe the backup".to_owned())
                })?;
            let (bytes, sha) = copy_hashed(&mut reply.body, &file)
                .or_exit_with(Exit::Runtime, |e| {
                    format!("writing {}: {e}", file.display())
                })?;
            if bytes != d.bytes {
                return Err(Failure::runtime(format!(
                    "the daemon sent {bytes} bytes of {}",
                    d.bytes
                )));
            }
            (d, bytes, sha, "through the running daemon")
        }
        None => {
            if !cfg.data_dir.join(DB_FILE).exists() {
                return Err(Failure::usage(format!(
                    "no database in data dir {}",
                    cfg.data_dir.display()
                )));
            }
            let _lock = datadir::lock(&cfg.data_dir)?;
            let store = drained_store(cfg)?;
            let reader = store.reader().or_exit(Exit::Runtime)?;
            let info = reader.snapshot(&file).or_exit(Exit::Runtime)?;
            let (bytes, sha) = sha256_file(&file).or_exit(Exit::Runtime)?;
            std::fs::File::open(&file)
                .and_then(|f| f.sync_all())
                .or_exit(Exit::Runtime)?;
            crate::links::audit_cli(
                cfg,
                hitvault_accounts::Kind::Backup,
                None,
                serde_json::to_value(SnapshotHeader::from((&info, bytes))).unwrap_or_default(),
            )?;
            (
                SnapshotHeader::from((&info, bytes)),
                bytes,
                sha,
                "from the database file",
            )
        }
    };
    let mut files = vec![BackupFile {
        name: DB_FILE.to_owned(),
        bytes,
        sha256: sha,
    }];
    files.extend(copy_journal(cfg, dir, ACCOUNTS_FILE)?);
    files.extend(copy_journal(cfg, dir, AUDIT_FILE)?);
    sync_dir(dir).or_exit(Exit::Runtime)?;
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
        files,
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
    .or_exit_with(Exit::Runtime, |e| {
        format!("writing {}: {e}", dir.join(MANIFEST).display())
    })?;
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

/// File name of the accounts' journal in a backup.
pub const ACCOUNTS_FILE: &str = hitvault_accounts::journal::FILE;

/// File name of the audit log in a backup.
pub const AUDIT_FILE: &str = hitvault_accounts::audit::FILE;

/// Copies the accounts' journal or the audit log (`name`) into the backup:
/// its whole lines only (a line being appended meanwhile is left for the
/// next backup), which is always a state the file had. `None` when the
/// file does not exist or is empty.
fn copy_journal(cfg: &Config, dir: &Path, name: &str) -> Result<Option<BackupFile>, Failure> {
    let from = cfg.data_dir.join(ACCOUNTS_DIR).join(name);
    let mut bytes = match std::fs::read(&from) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(Failure::runtime(format!("reading {}: {e}", from.display())));
        }
    };
    bytes.truncate(bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1));
    if bytes.is_empty() && name == AUDIT_FILE {
        return Ok(None);
    }
    let to = dir.join(name);
    let (n, sha) = copy_hashed(&mut &bytes[..], &to)
        .or_exit_with(Exit::Runtime, |e| format!("writing {}: {e}", to.display()))?;
    Ok(Some(BackupFile {
        name: name.to_owned(),
        bytes: n,
        sha256: sha,
    }))
}

/// Puts a backup's accounts journal and audit log into the data dir being
/// restored, and checks that they open.
fn restore_accounts(cfg: &Config, dir: &Path, m: &BackupManifest) -> Result<(), String> {
    let accounts = cfg.data_dir.join(ACCOUNTS_DIR);
    for name in [ACCOUNTS_FILE, AUDIT_FILE] {
        let Some(f) = m.files.iter().find(|f| f.name == name) else {
            continue;
        };
        std::fs::create_dir_all(&accounts).map_err(|e| e.to_string())?;
        let mut src = std::fs::File::open(dir.join(name)).map_err(|e| e.to_string())?;
        let target = accounts.join(name);
        let (_, sha) = copy_hashed(&mut src, &target).map_err(|e| e.to_string())?;
        if sha != f.sha256 {
            return Err(format!(
                "{name} changed while it was copied (SHA-256 differs)"
            ));
        }
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o600))
                .map_err(|e| e.to_string())?;
        }
        sync_dir(&accounts).map_err(|e| e.to_string())?;
    }
    if m.files.iter().any(|f| f.name == ACCOUNTS_FILE) {
        crate::links::open_accounts(cfg)
            .map(drop)
            .map_err(|e| format!("the restored accounts do not open: {e}"))?;
    }
    Ok(())
}

/// Opens the store for writing and commits what the queue still holds
/// (after a crash), as the daemon would at start; returns the store.
fn drained_store(cfg: &Config) -> Result<Store, Failure> {
    let mut store = Store::open(&cfg.data_dir, &StoreOptions::default()).or_exit(Exit::Startup)?;
    let replayed = crate::replay::drain(cfg, &mut store)
        .or_exit_with(Exit::Runtime, |e| format!("replaying the queue: {e}"))?;
    if let Some(position) = replayed {
        eprintln!("replayed the queue into the database up to position {position}");
    }
    Ok(store)
}

/// Reads `dir/BACKUP` and checks the data file against it.
pub fn verify(dir: &Path) -> Result<BackupManifest, Failure> {
    let path = dir.join(MANIFEST);
    let text = std::fs::read(&path).map_err(|e| {
        Failure::usage(format!(
            "{} is not a complete backup: cannot read {}: {e}",
            dir.display(),
            path.display()
        ))
    })?;
    let m: BackupManifest = serde_json::from_slice(&text).or_exit_with(Exit::Usage, |e| {
        format!("{}: not a backup manifest: {e}", path.display())
    })?;
    if m.backup_version != BACKUP_VERSION {
        return Err(Failure::usage(format!(
            "{}: backup version {}, this binary reads {BACKUP_VERSION}",
            path.display(),
            m.backup_version
        )));
    }
    if m.schema_version > hitvault_store::SCHEMA_VERSION {
        return Err(Failure::usage(format!(
            "{}: schema version {} is newer than this binary's {}; upgrade hitvault",
            path.display(),
            m.schema_version,
            hitvault_store::SCHEMA_VERSION
        )));
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
        Err(Failure::usage(format!(
            "{} is damaged:\n  {}",
            dir.display(),
            problems.join("\n  ")
        )))
    }
}

/// `hitvault restore DIR`: into an empty or new data dir only.
pub fn restore(cfg: &Config, dir: &Path) -> Result<(), Failure> {
    let m = verify(dir)?;
    let data = &cfg.data_dir;
    if let Ok(entries) = std::fs::read_dir(data) {
        let names: Vec<String> = entries
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        if !names.is_empty() {
            return Err(Failure::usage(format!(
                "refusing to restore into data dir {}: it is not empty (it holds {}); \
                     restore only into an empty or new directory",
                data.display(),
                names.join(", ")
            )));
        }
    }
    datadir::prepare(data)?;
    let _lock = datadir::lock(data)?;
    let target = data.join(DB_FILE);
    let partial = data.join(format!("{DB_FILE}.restoring"));
    let undo = |msg: String| {
        let _ = std::fs::remove_file(&partial);
        let _ = std::fs::remove_file(&target);
        let mut wal = target.as_os_str().to_owned();
        wal.push(".wal");
        let _ = std::fs::remove_file(PathBuf::from(wal));
        Failure::runtime(format!("nothing restored: {msg}"))
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
    drop(store);
    restore_accounts(cfg, dir, &m).map_err(|e| {
        let _ = std::fs::remove_dir_all(cfg.data_dir.join(ACCOUNTS_DIR));
        undo(e)
    })?;
    crate::links::audit_cli(
        cfg,
        hitvault_accounts::Kind::Restore,
        None,
        serde_json::json!({
            "from": dir.display().to_string(),
            "created_at": m.created_at,
            "hits": m.hits,
            "sites": m.sites,
            "committed_seq": m.committed_seq,
        }),
    )?;
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
