//! `hitvault import DIR`: a Takeout directory into the data dir.
//!
//! Everything is checked before anything is committed. An import writes to
//! the database, so it goes through its one writer: with a daemon running,
//! this process checks every hit row and finds the largest id first, then
//! streams the tables as Arrow frames to the daemon, whose writer stages and
//! merges them in one transaction (the daemon's side reserves ids first: see
//! its adapters). With no daemon, this process opens the store and merges
//! itself (new ids above the largest stored one); the next start numbers
//! above the largest id.

use std::path::Path;
use std::time::Instant;

use hitvault_store::{ImportStats, Store, StoreOptions};
use hitvault_takeout::Table;
use hitvault_takeout::manifest::read_listed;
use hitvault_takeout::stream::{data_frame, end_frame};

use super::client;
use super::takeout::PIPELINE_DEPTH;
use crate::config::Config;
use crate::control::stats_of_json;
use crate::datadir::{self, CONTROL_SOCKET};
use crate::exit::{Exit, Failure, OrExit};

/// `hitvault import DIR`: checks everything, then loads it in one transaction.
pub fn import(cfg: &Config, dir: &Path) -> Result<(), Failure> {
    crate::cli::refuse_on_cluster(cfg)?;
    let socket = cfg.data_dir.join(CONTROL_SOCKET);
    let started = Instant::now();
    let m = hitvault_takeout::manifest::read_manifest(dir).or_exit(Exit::Usage)?;
    // The files' sizes and SHA-256 are checked on a thread of their own
    // while the rows are read and staged (hashing is a fifth of reading
    // NDJSON); nothing is committed, or sent to a daemon, before the check
    // passes, and a damaged file is reported as such whatever else failed.
    std::thread::scope(|s| {
        let checked = s.spawn(|| hitvault_takeout::manifest::check_files(dir, &m));
        let undamaged = || {
            let problems = checked.join().expect("the checking thread panicked");
            if problems.is_empty() {
                Ok(())
            } else {
                Err(Failure::usage(format!(
                    "{} is damaged:\n  {}",
                    dir.display(),
                    problems.join("\n  ")
                )))
            }
        };
        match client::connect(&socket) {
            Some(conn) => import_through_daemon(conn, dir, &m, started, undamaged),
            None => import_offline(cfg, dir, &m, started, undamaged),
        }
    })
}

/// [`import`] into a data dir no daemon runs on: this process merges.
/// `undamaged` waits for the files' check.
fn import_offline(
    cfg: &Config,
    dir: &Path,
    m: &hitvault_takeout::Manifest,
    started: Instant,
    undamaged: impl FnOnce() -> Result<(), Failure>,
) -> Result<(), Failure> {
    datadir::prepare(&cfg.data_dir)?;
    // The import runs DuckDB on one thread (see `Store::begin_import`); the
    // files are parsed on a thread of our own meanwhile.
    let mut store = Store::open(&cfg.data_dir, &StoreOptions::default()).or_exit(Exit::Startup)?;
    let mut imp = store.begin_import().or_exit(Exit::Runtime)?;
    // Files are parsed on one thread while DuckDB stages on this one.
    let mut staged: Result<(), String> = Ok(());
    let read = std::thread::scope(|s| {
        let (tx, rx) = std::sync::mpsc::sync_channel(PIPELINE_DEPTH);
        let reader = s.spawn(move || -> Result<u64, Failure> {
            let mut total = 0u64;
            for &table in m.tables() {
                let (rows, _) = read_listed(dir, m, table, &mut |batch| {
                    tx.send((table, batch)).map_err(|_| "stopped".to_owned())
                })
                .or_exit_with(Exit::Usage, |e| format!("nothing imported: {e}"))?;
                total += rows;
            }
            Ok(total)
        });
        for (table, batch) in rx.iter() {
            if let Err(e) = imp.append(table.name(), batch) {
                staged = Err(e.to_string());
                break;
            }
        }
        drop(rx);
        reader.join().expect("the reader thread panicked")
    });
    undamaged()?;
    // DuckDB's own error explains a reader's "stopped".
    staged.or_exit_with(Exit::Runtime, |e| format!("nothing imported: {e}"))?;
    let total = read?;
    let stats = imp
        .commit()
        .or_exit_with(Exit::Usage, |e| format!("nothing imported: {e}"))?;
    store.checkpoint().or_exit(Exit::Runtime)?;
    crate::links::audit_cli(
        cfg,
        hitvault_accounts::Kind::Import,
        None,
        serde_json::json!({ "format": "takeout", "counts": crate::control::stats_json(&stats) }),
    )?;
    report_import(dir, "", &stats, total, started);
    Ok(())
}

/// Goals and funnels the import did not take because the instance already
/// has a different definition of that name: one line each on stderr.
fn report_conflicts<'a>(conflicts: impl Iterator<Item = &'a str>) {
    for c in conflicts {
        eprintln!("not imported, name taken: {c}");
    }
}

/// `import` with a daemon running: a checking pass over the hits for the
/// largest id, then every table streamed to the daemon as Arrow frames.
fn import_through_daemon(
    conn: std::os::unix::net::UnixStream,
    dir: &Path,
    m: &hitvault_takeout::Manifest,
    started: Instant,
    undamaged: impl FnOnce() -> Result<(), Failure>,
) -> Result<(), Failure> {
    // The files' check is waited for before the end of the stream, on
    // which the daemon commits (a stream cut short is rolled back).
    let mut undamaged = Some(undamaged);
    let mut undamaged = move || undamaged.take().map_or(Ok(()), |check| check());
    // The daemon reserves the ids up to the largest before any row arrives.
    // Since version 4 the manifest says which it is (checked against the
    // rows as they are sent, and by the daemon); before, the hits are read
    // once for it, and the files' check waited for before anything is sent.
    let max_id = if m.takeout_version >= 4 {
        let max = m.hit_ids.map_or(0, |r| r.max);
        if max > hitvault_store::MAX_HIT_ID {
            return Err(Failure::usage(format!(
                "nothing imported: {}: hit_ids ends at {max}, above {}, the largest hit id",
                dir.join(hitvault_takeout::manifest::MANIFEST).display(),
                hitvault_store::MAX_HIT_ID
            )));
        }
        max
    } else {
        let read = read_listed(dir, m, Table::Hits, &mut |_| Ok(()));
        undamaged()?;
        let (_, ids) = read.or_exit_with(Exit::Usage, |e| format!("nothing imported: {e}"))?;
        ids.map_or(0, |r| r.max)
    };
    // The daemon answers after the merge, however long it takes.
    conn.set_read_timeout(None).or_exit(Exit::Runtime)?;
    let mut total = 0u64;
    let mut damaged = None;
    // A write that failed: the daemon stopped reading, and its reply says why.
    let mut cut_off = false;
    let (produced, reply) = client::post_streamed(conn, &format!("/import?max_id={max_id}"), |w| {
        let mut stream = || -> Result<(), String> {
            for &table in m.tables() {
                let (n, _) = read_listed(dir, m, table, &mut |batch| {
                    let f = data_frame(table, &batch).map_err(|e| e.to_string())?;
                    w.write_all(&f).map_err(|e| {
                        cut_off = true;
                        e.to_string()
                    })
                })?;
                total += n;
            }
            Ok(())
        };
        let streamed = stream();
        // A damaged file is reported as such, whatever else failed.
        if let Err(e) = undamaged() {
            damaged = Some(e);
            return Err("damaged".into());
        }
        streamed?;
        w.write_all(&end_frame(total)).map_err(|e| {
            cut_off = true;
            e.to_string()
        })
    })
    .or_exit_with(Exit::Runtime, |e| {
        format!("the daemon's control socket: {e}")
    })?;
    if let Some(e) = damaged {
        return Err(e);
    }
    if let Err(e) = &produced
        && !cut_off
    {
        return Err(Failure::usage(format!("nothing imported: {e}")));
    }
    if reply.status != 200 {
        return Err(client::refusal(
            reply.status,
            &reply.body,
            "the daemon refused the import",
        ));
    }
    produced.or_exit_with(Exit::Usage, |e| format!("nothing imported: {e}"))?;
    let v: serde_json::Value = serde_json::from_slice(&reply.body)
        .or_exit_with(Exit::Runtime, |e| format!("bad reply from the daemon: {e}"))?;
    report_import(
        dir,
        " through the running daemon",
        &stats_of_json(&v),
        total,
        started,
    );
    Ok(())
}

/// Prints what an import did: one line on stdout, then the conflicts.
fn report_import(dir: &Path, how: &str, s: &ImportStats, total: u64, started: Instant) {
    let secs = started.elapsed().as_secs_f64();
    println!(
        "imported {}{how}: {} hits added ({} under new ids), {} already present, {} props added, {} sites added, \
         {} goals added, {} goals present, {} funnels added, {} funnels present, \
         {} imported days added, {} replaced, {} present, \
         {} engagements added, {} present \
         ({total} rows read in {secs:.2} s, {:.0} rows/s)",
        dir.display(),
        s.hits_added,
        s.hits_renumbered,
        s.hits_present,
        s.props_added,
        s.sites_added,
        s.goals_added,
        s.goals_present,
        s.funnels_added,
        s.funnels_present,
        s.imported_days_added,
        s.imported_days_replaced,
        s.imported_days_present,
        s.engagements_added,
        s.engagements_present,
        total as f64 / secs.max(1e-6)
    );
    report_conflicts(s.conflicts.iter().map(String::as_str));
}
