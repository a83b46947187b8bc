//! `hitvault takeout`, `takeout verify` and `import`, and the daemon's side
//! of an export.
//!
//! An export reads through the running daemon when its control socket
//! answers: the daemon runs the queries on a second DuckDB connection (a
//! reader beside the batcher, so ingest never stops) and streams Arrow
//! record batches as frames ([`hitvault_takeout::stream`]); this process
//! writes the files, which the daemon's sandbox could not reach anyway. With
//! no daemon, it opens the database read-only itself. Either way the files
//! and the MANIFEST are written by [`ExportWriter`].
//!
//! An import writes to the database, so it goes through its one writer.
//! With a daemon running, the CLI checks every hit row and finds the largest
//! id first, then streams the tables as Arrow frames to the daemon, whose
//! batcher stages and merges them in one transaction; before that the daemon
//! reserves ids above that id (for imported hits whose id it gave to another
//! hit of its own), raises its queue's numbering above them and commits
//! everything numbered before (see `backup::DaemonMaintenance`), so imported
//! and new ids never meet a hit id given out later. With no daemon, the CLI
//! opens the store and merges itself (new ids above the largest stored one);
//! the next start numbers above the largest id.

use std::io::IsTerminal;
use std::path::Path;
use std::time::{Duration, Instant};

use hitvault_server::{AdminError, BodyWriter, ExportQuery, Exporter};
use hitvault_store::{ExportFilter, ImportStats, Reader, Store, StoreOptions};
use hitvault_takeout::manifest::{Filter, read_listed};
use hitvault_takeout::stream::{Frame, data_frame, end_frame, error_frame, read_frame};
use hitvault_takeout::write::TableWriter;
use hitvault_takeout::{ExportWriter, Format, Table, parse_time};

use crate::batcher::StoreOp;
use crate::client;
use crate::config::Config;
use crate::daemon::CONTROL_SOCKET;

/// A failure with the exit code to use (2: the caller's input, 1: ours, 3: the data dir).
pub type CliError = (i32, String);

fn filter_of(q: &ExportQuery) -> Result<ExportFilter, String> {
    Ok(ExportFilter {
        sites: q.sites.clone(),
        from_us: q.from.as_deref().map(parse_time).transpose()?,
        until_us: q.until.as_deref().map(parse_time).transpose()?,
    })
}

/// Progress on stderr when it is a terminal: rows, rows/s and ETA.
struct Progress {
    on: bool,
    total: u64,
    start: Instant,
    last: Instant,
}

impl Progress {
    fn new(total: u64) -> Self {
        let now = Instant::now();
        Progress {
            on: std::io::stderr().is_terminal(),
            total,
            start: now,
            last: now,
        }
    }

    fn tick(&mut self, hits: u64) {
        if !self.on || self.last.elapsed() < Duration::from_millis(200) {
            return;
        }
        self.last = Instant::now();
        let secs = self.start.elapsed().as_secs_f64().max(1e-3);
        let rate = hits as f64 / secs;
        let eta = if rate > 0.0 {
            self.total.saturating_sub(hits) as f64 / rate
        } else {
            0.0
        };
        let pct = if self.total > 0 {
            100.0 * hits as f64 / self.total as f64
        } else {
            100.0
        };
        eprint!(
            "\r{hits}/{} hits ({pct:.0}%), {rate:.0} rows/s, ETA {eta:.0} s   ",
            self.total
        );
    }

    fn done(&self) {
        if self.on {
            eprintln!();
        }
    }
}

/// `hitvault takeout --to DIR ...`.
pub fn export(cfg: &Config, dir: &Path, format: Format, q: ExportQuery) -> Result<(), CliError> {
    let filter = filter_of(&q).map_err(|e| (2, e))?;
    let started = Instant::now();
    let w = ExportWriter::create_with_threads(dir, format, true).map_err(|e| (2, e.to_string()))?;
    let mut hits = 0u64;
    let socket = cfg.data_dir.join(CONTROL_SOCKET);
    let (w, how) = match client::connect(&socket) {
        Some(conn) => {
            let path = format!("/takeout?{}", q.to_query());
            let mut reply = client::stream(conn, "GET", &path).map_err(|e| (1, e.to_string()))?;
            if reply.status != 200 {
                return Err(reply.refusal("the daemon refused the export"));
            }
            let total = reply
                .header("x-hitvault-rows")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let mut progress = Progress::new(total);
            let w = pipelined(w, |send| {
                let mut sent = 0u64;
                loop {
                    match read_frame(&mut reply.body).map_err(|e| (1, e.to_string()))? {
                        Frame::Data(table, batch) => {
                            sent += batch.num_rows() as u64;
                            if table == Table::Hits {
                                hits += batch.num_rows() as u64;
                                progress.tick(hits);
                            }
                            send(table, batch).map_err(|e| (1, e))?;
                        }
                        Frame::End { rows } => {
                            if rows != sent {
                                return Err((
                                    1,
                                    format!("the daemon sent {rows} rows, {sent} arrived"),
                                ));
                            }
                            return Ok(());
                        }
                        Frame::Error(m) => {
                            return Err((1, format!("the daemon failed the export: {m}")));
                        }
                    }
                }
            })?;
            progress.done();
            (w, "through the running daemon")
        }
        None => {
            let db = Store::open_read_only(&cfg.data_dir).map_err(|e| (3, e.to_string()))?;
            // One DuckDB thread: the encoders use the other core; a second
            // DuckDB thread cost about a tenth more CPU per row in hand-over.
            db.set_threads(1).map_err(|e| (3, e.to_string()))?;
            let store = db.reader().map_err(|e| (3, e.to_string()))?;
            // The total is only for the progress bar: no counting pass without one.
            let total = if std::io::stderr().is_terminal() {
                store.count_hits(&filter).map_err(|e| (1, e.to_string()))?
            } else {
                0
            };
            let mut progress = Progress::new(total);
            let w = pipelined(w, |send| {
                store
                    .export(&filter, &mut |t, batch| {
                        let table = Table::from_name(t).expect("the store exports Takeout tables");
                        if table == Table::Hits {
                            hits += batch.num_rows() as u64;
                            progress.tick(hits);
                        }
                        send(table, batch)
                    })
                    .map_err(|e| (1, e.to_string()))
            })?;
            progress.done();
            (w, "from the database file")
        }
    };
    let meta = Filter {
        sites: q.sites.clone(),
        from: filter.from_us.map(hitvault_takeout::format_time),
        until: filter.until_us.map(hitvault_takeout::format_time),
    };
    let m = w.finish(meta).map_err(|e| (1, e.to_string()))?;
    let secs = started.elapsed().as_secs_f64();
    let rows: u64 = m.files.iter().map(|f| f.rows).sum();
    eprintln!(
        "exported {} ({how}) in {secs:.2} s, {:.0} rows/s:",
        dir.display(),
        rows as f64 / secs.max(1e-6)
    );
    for f in &m.files {
        println!(
            "{:<16} {:>12} rows {:>14} bytes  sha256 {}",
            f.name, f.rows, f.bytes, f.sha256
        );
    }
    Ok(())
}

/// Batches in flight between the thread that reads and the one that writes.
const PIPELINE_DEPTH: usize = 8;

type Sender<'a> = dyn FnMut(Table, hitvault_store::RecordBatch) -> Result<(), String> + 'a;

/// Runs `produce` on this thread and the file writing on another, so that
/// reading (DuckDB, or the daemon's stream) and encoding use both cores.
fn pipelined(
    mut w: ExportWriter,
    produce: impl FnOnce(&mut Sender<'_>) -> Result<(), CliError>,
) -> Result<ExportWriter, CliError> {
    std::thread::scope(|s| {
        let (tx, rx) = std::sync::mpsc::sync_channel(PIPELINE_DEPTH);
        let writer = s.spawn(move || -> Result<ExportWriter, CliError> {
            for (table, batch) in rx {
                w.write(table, &batch).map_err(|e| (1, e.to_string()))?;
            }
            Ok(w)
        });
        let produced = produce(&mut |table, batch| {
            tx.send((table, batch))
                .map_err(|_| "the writer stopped".to_owned())
        });
        drop(tx);
        let written = writer.join().expect("the writer thread panicked");
        // The writer's own error explains a producer's "writer stopped".
        let w = written?;
        produced?;
        Ok(w)
    })
}

/// `hitvault takeout verify DIR`.
pub fn verify(dir: &Path) -> Result<(), CliError> {
    let m = hitvault_takeout::verify(dir).map_err(|e| (1, e.to_string()))?;
    let rows: u64 = m.files.iter().map(|f| f.rows).sum();
    println!(
        "{}: valid {} Takeout, {} files, {rows} rows",
        dir.display(),
        m.format,
        m.files.len()
    );
    Ok(())
}

/// `hitvault import DIR`: checks everything, then loads it in one transaction.
pub fn import(cfg: &Config, dir: &Path) -> Result<(), CliError> {
    let socket = cfg.data_dir.join(CONTROL_SOCKET);
    let started = Instant::now();
    let m = hitvault_takeout::manifest::read_manifest(dir).map_err(|e| (2, e.to_string()))?;
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
                Err((
                    2,
                    format!("{} is damaged:\n  {}", dir.display(), problems.join("\n  ")),
                ))
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
    undamaged: impl FnOnce() -> Result<(), CliError>,
) -> Result<(), CliError> {
    crate::daemon::prepare_data_dir(&cfg.data_dir).map_err(|e| (3, e.to_string()))?;
    // The import runs DuckDB on one thread (see `Store::begin_import`); the
    // files are parsed on a thread of our own meanwhile.
    let mut store =
        Store::open(&cfg.data_dir, &StoreOptions::default()).map_err(|e| (3, e.to_string()))?;
    let mut imp = store.begin_import().map_err(|e| (1, e.to_string()))?;
    // Files are parsed on one thread while DuckDB stages on this one.
    let mut staged: Result<(), String> = Ok(());
    let read = std::thread::scope(|s| {
        let (tx, rx) = std::sync::mpsc::sync_channel(PIPELINE_DEPTH);
        let reader = s.spawn(move || -> Result<u64, CliError> {
            let mut total = 0u64;
            for &table in m.tables() {
                let (rows, _) = read_listed(dir, m, table, &mut |batch| {
                    tx.send((table, batch)).map_err(|_| "stopped".to_owned())
                })
                .map_err(|e| (2, format!("nothing imported: {e}")))?;
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
    staged.map_err(|e| (1, format!("nothing imported: {e}")))?;
    let total = read?;
    let stats = imp
        .commit()
        .map_err(|e| (2, format!("nothing imported: {e}")))?;
    store.checkpoint().map_err(|e| (1, e.to_string()))?;
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
    undamaged: impl FnOnce() -> Result<(), CliError>,
) -> Result<(), CliError> {
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
            return Err((
                2,
                format!(
                    "nothing imported: {}: hit_ids ends at {max}, above {}, the largest hit id",
                    dir.join(hitvault_takeout::manifest::MANIFEST).display(),
                    hitvault_store::MAX_HIT_ID
                ),
            ));
        }
        max
    } else {
        let read = read_listed(dir, m, Table::Hits, &mut |_| Ok(()));
        undamaged()?;
        let (_, ids) = read.map_err(|e| (2, format!("nothing imported: {e}")))?;
        ids.map_or(0, |r| r.max)
    };
    // The daemon answers after the merge, however long it takes.
    conn.set_read_timeout(None)
        .map_err(|e| (1, e.to_string()))?;
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
    .map_err(|e| (1, format!("the daemon's control socket: {e}")))?;
    if let Some(e) = damaged {
        return Err(e);
    }
    if let Err(e) = &produced
        && !cut_off
    {
        return Err((2, format!("nothing imported: {e}")));
    }
    if reply.status != 200 {
        return Err(client::refusal(
            reply.status,
            &reply.body,
            "the daemon refused the import",
        ));
    }
    produced.map_err(|e| (2, format!("nothing imported: {e}")))?;
    let v: serde_json::Value = serde_json::from_slice(&reply.body)
        .map_err(|e| (1, format!("bad reply from the daemon: {e}")))?;
    report_import(
        dir,
        " through the running daemon",
        &stats_of_json(&v),
        total,
        started,
    );
    Ok(())
}

/// The counts of an import as the daemon sends them to the CLI.
pub fn stats_json(s: &ImportStats) -> serde_json::Value {
    serde_json::json!({
        "hits_added": s.hits_added,
        "hits_renumbered": s.hits_renumbered,
        "hits_present": s.hits_present,
        "props_added": s.props_added,
        "sites_added": s.sites_added,
        "goals_added": s.goals_added,
        "goals_present": s.goals_present,
        "funnels_added": s.funnels_added,
        "funnels_present": s.funnels_present,
        "imported_days_added": s.imported_days_added,
        "imported_days_replaced": s.imported_days_replaced,
        "imported_days_present": s.imported_days_present,
        "conflicts": s.conflicts,
    })
}

/// [`stats_json`] read back (a missing count reads as 0).
fn stats_of_json(v: &serde_json::Value) -> ImportStats {
    let n = |k: &str| v[k].as_u64().unwrap_or(0);
    ImportStats {
        hits_added: n("hits_added"),
        hits_renumbered: n("hits_renumbered"),
        hits_present: n("hits_present"),
        props_added: n("props_added"),
        sites_added: n("sites_added"),
        goals_added: n("goals_added"),
        goals_present: n("goals_present"),
        funnels_added: n("funnels_added"),
        funnels_present: n("funnels_present"),
        imported_days_added: n("imported_days_added"),
        imported_days_replaced: n("imported_days_replaced"),
        imported_days_present: n("imported_days_present"),
        conflicts: v["conflicts"]
            .as_array()
            .map(|c| {
                c.iter()
                    .filter_map(|c| c.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default(),
    }
}

/// Prints what an import did: one line on stdout, then the conflicts.
fn report_import(dir: &Path, how: &str, s: &ImportStats, total: u64, started: Instant) {
    let secs = started.elapsed().as_secs_f64();
    println!(
        "imported {}{how}: {} hits added ({} under new ids), {} already present, {} props added, {} sites added, \
         {} goals added, {} goals present, {} funnels added, {} funnels present, \
         {} imported days added, {} replaced, {} present \
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
        total as f64 / secs.max(1e-6)
    );
    report_conflicts(s.conflicts.iter().map(String::as_str));
}

/// The daemon's exporter: each export gets its own read connection, made
/// by the batcher from the store it has open, and closed when the export ends.
pub struct DaemonExporter {
    ops: std::sync::mpsc::Sender<StoreOp>,
    busy: crate::batcher::Busy,
}

impl DaemonExporter {
    pub fn new(ops: std::sync::mpsc::Sender<StoreOp>, busy: crate::batcher::Busy) -> Self {
        DaemonExporter { ops, busy }
    }

    fn conn(&self) -> Result<Reader, AdminError> {
        let (tx, rx) = std::sync::mpsc::channel();
        self.ops
            .send(StoreOp::Reader(tx))
            .map_err(|_| AdminError::Internal("the store is closed".into()))?;
        rx.recv_timeout(Duration::from_secs(30))
            .map_err(|_| AdminError::Internal("the store did not answer".into()))?
            .map_err(AdminError::Internal)
    }
}

/// `bundle=zip` (the only bundle), which names no single table.
fn bundle_of(q: &ExportQuery) -> Result<(), AdminError> {
    match (q.bundle.as_deref(), &q.table) {
        (Some("zip"), None) => Ok(()),
        (Some("zip"), Some(_)) => Err(AdminError::Invalid(
            "table= and bundle=zip exclude each other: a bundle holds every table".into(),
        )),
        (Some(other), _) => Err(AdminError::Invalid(format!(
            "unknown bundle {other:?} (only zip)"
        ))),
        (None, _) => Ok(()),
    }
}

fn one_table(q: &ExportQuery) -> Result<Table, AdminError> {
    match q.table.as_deref() {
        None => Ok(Table::Hits),
        Some(t) => Table::from_name(t).ok_or_else(|| {
            AdminError::Invalid(format!(
                "unknown table {t:?} (sites, hits, props, goals, funnels, imported_days or imported_values)"
            ))
        }),
    }
}

impl Exporter for DaemonExporter {
    fn prepare(&self, q: &ExportQuery) -> Result<(u64, &'static str), AdminError> {
        let filter = filter_of(q).map_err(AdminError::Invalid)?;
        let media = match &q.format {
            None => "application/vnd.hitvault.takeout-frames",
            Some(f) if q.bundle.is_some() => {
                bundle_of(q)?;
                f.parse::<Format>().map_err(AdminError::Invalid)?;
                "application/zip"
            }
            Some(f) => {
                one_table(q)?;
                f.parse::<Format>()
                    .map_err(AdminError::Invalid)?
                    .media_type()
            }
        };
        let rows = self
            .conn()?
            .count_hits(&filter)
            .map_err(|e| AdminError::Internal(e.to_string()))?;
        Ok((rows, media))
    }

    fn export(&self, q: ExportQuery, mut out: BodyWriter) -> Result<(), AdminError> {
        use std::io::Write;
        let _running = self.busy.enter();
        let filter = filter_of(&q).map_err(AdminError::Invalid)?;
        let reader = self.conn()?;
        match &q.format {
            None => {
                let mut rows = 0u64;
                let result = reader.export(&filter, &mut |t, batch| {
                    let table = Table::from_name(t).expect("the store exports Takeout tables");
                    rows += batch.num_rows() as u64;
                    let frame = data_frame(table, &batch).map_err(|e| e.to_string())?;
                    out.write_all(&frame).map_err(|e| e.to_string())
                });
                let last = match &result {
                    Ok(()) => end_frame(rows),
                    Err(e) => error_frame(&e.to_string()),
                };
                out.write_all(&last)
                    .map_err(|e| AdminError::Internal(e.to_string()))?;
                // The error frame (if any) is how this protocol fails: the
                // body itself ends complete.
                out.finish()
                    .map_err(|e| AdminError::Internal(e.to_string()))?;
                result.map_err(|e| AdminError::Internal(e.to_string()))
            }
            Some(f) if q.bundle.is_some() => {
                let format: Format = f.parse().map_err(AdminError::Invalid)?;
                let mut z = hitvault_takeout::zip::ZipExport::new(out, format);
                let result = reader.export(&filter, &mut |t, batch| {
                    let table = Table::from_name(t).expect("the store exports Takeout tables");
                    z.write(table, &batch).map_err(|e| e.to_string())
                });
                let meta = Filter {
                    sites: q.sites.clone(),
                    from: filter.from_us.map(hitvault_takeout::format_time),
                    until: filter.until_us.map(hitvault_takeout::format_time),
                };
                // On a failure `z` and the BodyWriter in it are dropped
                // unfinished, which cuts the chunked body: no zip arrives
                // that looks complete.
                result.map_err(|e| AdminError::Internal(e.to_string()))?;
                let (_, out) = z
                    .finish(meta)
                    .map_err(|e| AdminError::Internal(e.to_string()))?;
                out.finish()
                    .map_err(|e| AdminError::Internal(e.to_string()))
            }
            Some(f) => {
                let format: Format = f.parse().map_err(AdminError::Invalid)?;
                let table = one_table(&q)?;
                let mut w = TableWriter::new(format, table, out)
                    .map_err(|e| AdminError::Internal(e.to_string()))?;
                let result = reader.export(&filter, &mut |t, batch| {
                    if t == table.name() {
                        w.write(&batch).map_err(|e| e.to_string())
                    } else {
                        Ok(())
                    }
                });
                match result {
                    Ok(()) => {
                        let out = w
                            .finish()
                            .map_err(|e| AdminError::Internal(e.to_string()))?;
                        out.finish()
                            .map_err(|e| AdminError::Internal(e.to_string()))
                    }
                    Err(e) => {
                        // Cut the body so the reader cannot take a partial file as complete.
                        if let Ok(out) = w.finish() {
                            out.abort(&e.to_string());
                        }
                        Err(AdminError::Internal(e.to_string()))
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    /// The Takeout checks `imported_values.dim` against its own list (the
    /// format crate knows no store): it must be the stats API's.
    #[test]
    fn takeout_dimensions_are_the_stats_apis() {
        let api: Vec<&str> = hitvault_store::stats::Dim::ALL
            .iter()
            .map(|(_, n)| *n)
            .collect();
        assert_eq!(api, hitvault_takeout::schema::IMPORTED_DIMS);
    }

    /// What the daemon replies to an import reads back as the same counts.
    #[test]
    fn import_counts_survive_the_control_socket() {
        let s = hitvault_store::ImportStats {
            hits_added: 1,
            hits_renumbered: 12,
            hits_present: 2,
            props_added: 3,
            sites_added: 4,
            goals_added: 5,
            goals_present: 6,
            funnels_added: 7,
            funnels_present: 8,
            imported_days_added: 9,
            imported_days_replaced: 10,
            imported_days_present: 11,
            conflicts: vec!["c".into()],
        };
        assert_eq!(super::stats_of_json(&super::stats_json(&s)), s);
    }
}
