//! Retention: each site keeps its hits for a number of days (`retention.days`,
//! `retention.sites`); older ones are archived, then deleted.
//!
//! For each site with a period, [`run`] counts the hits (and props) older
//! than `now - days`, writes exactly those as a Parquet Takeout to
//! `<archive dir>/<hostname>/<run time>/` (files and directory fsync'd, the
//! MANIFEST renamed in last), checks the MANIFEST's row counts against the
//! count and reads the archive back with [`hitvault_takeout::verify`], and
//! only then deletes the rows in one transaction, which refuses to delete
//! anything if the rows are no longer exactly those counted. A failure at any
//! step before the delete leaves every row in place.
//!
//! It runs on the store's one writer: the daemon's writer thread, between
//! batches (at start and every [`INTERVAL`], or when `hitvault prune` asks
//! through the control socket), or `hitvault prune` itself when no daemon
//! runs. So this module is a leaf both rooms use.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hitvault_store::{ExportFilter, Store};
use hitvault_takeout::manifest::Filter;
use hitvault_takeout::{ExportWriter, Format, Table, format_time};
use serde::{Deserialize, Serialize};

use crate::config::Config;

/// How long a prune asked through the control socket may take (it
/// archives every expired hit first; on a cluster node, through the log).
pub const PASS_TIMEOUT: Duration = Duration::from_secs(600);

/// How often the daemon prunes (its first pass is at start).
pub const INTERVAL: Duration = Duration::from_secs(24 * 3600);

const DAY_US: i64 = 86_400 * 1_000_000;

/// Retention periods and where archives go.
#[derive(Clone, Debug)]
pub struct Policy {
    pub default_days: u32,
    pub sites: BTreeMap<String, u32>,
    pub archive_dir: PathBuf,
}

impl Policy {
    pub fn from_config(cfg: &Config) -> Policy {
        Policy {
            default_days: cfg.retention_days,
            sites: cfg.retention_sites.clone(),
            archive_dir: cfg.archive_dir(),
        }
    }

    /// Days `site` keeps its hits; 0: forever.
    pub fn days(&self, site: &str) -> u32 {
        self.sites.get(site).copied().unwrap_or(self.default_days)
    }

    /// Whether any site can have expired hits.
    pub fn is_active(&self) -> bool {
        self.default_days > 0 || self.sites.values().any(|d| *d > 0)
    }
}

/// A retention pass as a cluster's log holds it: the proposing node's
/// clock and periods, so every node deletes the same hits; each node
/// archives them in its own `archive_dir` (named by the pass's time, the
/// same on every node).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pass {
    pub now_us: i64,
    pub default_days: u32,
    pub sites: BTreeMap<String, u32>,
}

impl Pass {
    /// A pass of `policy` at `now_us`.
    pub fn of(policy: &Policy, now_us: i64) -> Pass {
        Pass {
            now_us,
            default_days: policy.default_days,
            sites: policy.sites.clone(),
        }
    }

    /// The pass's periods, archived in `archive_dir`.
    pub fn policy(&self, archive_dir: PathBuf) -> Policy {
        Policy {
            default_days: self.default_days,
            sites: self.sites.clone(),
            archive_dir,
        }
    }
}

/// One site's part of a prune.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SiteReport {
    pub site: String,
    pub days: u32,
    /// Hits before this instant (RFC 3339 UTC) expire.
    pub cutoff: String,
    pub hits: u64,
    pub props: u64,
    /// Oldest and newest expired hit.
    pub first: Option<String>,
    pub last: Option<String>,
    /// The archive written (not on a dry run, nor when nothing expired).
    pub archive: Option<String>,
}

/// What a prune found (and, unless `dry_run`, archived and deleted).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    pub dry_run: bool,
    pub sites: Vec<SiteReport>,
}

/// Microseconds since the epoch, now.
pub fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

/// Finds, and unless `dry_run` archives then deletes, every site's expired
/// hits. Calls `heartbeat` between record batches (the daemon's watchdog).
pub fn run(
    store: &mut Store,
    policy: &Policy,
    now_us: i64,
    dry_run: bool,
    heartbeat: &mut dyn FnMut(),
) -> Result<Report, String> {
    let mut report = Report {
        dry_run,
        sites: vec![],
    };
    let sites = store.sites().map_err(|e| e.to_string())?;
    for site in sites {
        let days = policy.days(&site.hostname);
        if days == 0 {
            continue;
        }
        let cutoff = now_us - i64::from(days) * DAY_US;
        let reader = store.reader().map_err(|e| e.to_string())?;
        let expired = reader
            .expired(&site.hostname, cutoff)
            .map_err(|e| e.to_string())?;
        let mut entry = SiteReport {
            site: site.hostname.clone(),
            days,
            cutoff: format_time(cutoff),
            hits: expired.hits,
            props: expired.props,
            first: expired.first_us.map(format_time),
            last: expired.last_us.map(format_time),
            archive: None,
        };
        if !dry_run && (expired.hits > 0 || expired.props > 0) {
            let dir = archive(&reader, policy, &site.hostname, cutoff, now_us, heartbeat).map_err(
                |e| {
                    format!(
                        "site {}: archive failed, nothing deleted: {e}",
                        site.hostname
                    )
                },
            )?;
            let m = hitvault_takeout::verify(&dir).map_err(|e| {
                format!(
                    "site {}: the archive does not verify, nothing deleted: {e}",
                    site.hostname
                )
            })?;
            let rows = |t: Table| m.file(t).map_or(0, |f| f.rows);
            if rows(Table::Hits) != expired.hits || rows(Table::Props) != expired.props {
                return Err(format!(
                    "site {}: the archive {} holds {} hits and {} props, {} and {} expired; nothing deleted",
                    site.hostname,
                    dir.display(),
                    rows(Table::Hits),
                    rows(Table::Props),
                    expired.hits,
                    expired.props
                ));
            }
            drop(reader);
            store
                .delete_expired(&site.hostname, cutoff, &expired)
                .map_err(|e| e.to_string())?;
            tracing::info!(
                site = %site.hostname,
                hits = expired.hits,
                props = expired.props,
                archive = %dir.display(),
                "expired hits archived and deleted"
            );
            entry.archive = Some(dir.display().to_string());
        }
        report.sites.push(entry);
    }
    Ok(report)
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// Writes the site's hits before `cutoff` as a Parquet Takeout; returns its directory.
fn archive(
    reader: &hitvault_store::Reader,
    policy: &Policy,
    site: &str,
    cutoff: i64,
    now_us: i64,
    heartbeat: &mut dyn FnMut(),
) -> Result<PathBuf, String> {
    let parent = policy.archive_dir.join(site);
    std::fs::create_dir_all(&parent)
        .and_then(|()| sync_dir(&policy.archive_dir))
        .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
    let stamp = format_time(now_us).replace(':', "");
    let mut dir = parent.join(&stamp);
    let mut n = 2;
    while dir.exists() {
        dir = parent.join(format!("{stamp}-{n}"));
        n += 1;
    }
    let mut w = ExportWriter::create(&dir, Format::Parquet).map_err(|e| e.to_string())?;
    let filter = ExportFilter {
        sites: vec![site.to_owned()],
        from_us: None,
        until_us: Some(cutoff),
    };
    let written = reader.export(&filter, &mut |t, batch| {
        heartbeat();
        let table = Table::from_name(t).expect("the store exports Takeout tables");
        w.write(table, &batch).map_err(|e| e.to_string())
    });
    if let Err(e) = written {
        drop(w);
        let _ = std::fs::remove_dir_all(&dir);
        return Err(e.to_string());
    }
    w.finish(Filter {
        sites: vec![site.to_owned()],
        from: None,
        until: Some(format_time(cutoff)),
    })
    .map_err(|e| {
        let _ = std::fs::remove_dir_all(&dir);
        e.to_string()
    })?;
    Ok(dir)
}

/// Prints a report as `hitvault prune` does.
pub fn print(r: &Report) {
    if r.sites.is_empty() {
        println!(
            "no site has a retention period (retention.days and retention.sites are 0 or unset)"
        );
        return;
    }
    let verb = if r.dry_run {
        "would go"
    } else {
        "archived and deleted"
    };
    for s in &r.sites {
        let range = match (&s.first, &s.last) {
            (Some(a), Some(b)) => format!("{a} .. {b}"),
            _ => "-".into(),
        };
        println!(
            "{:<32} {:>5} days  before {}  {:>10} hits {:>10} props {verb}  {range}{}",
            s.site,
            s.days,
            s.cutoff,
            s.hits,
            s.props,
            s.archive
                .as_deref()
                .map(|a| format!("  -> {a}"))
                .unwrap_or_default()
        );
    }
}
