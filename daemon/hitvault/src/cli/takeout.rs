//! `hitvault takeout --to DIR` and `hitvault takeout verify DIR`.
//!
//! An export reads through the running daemon when its control socket
//! answers: the daemon runs the queries on a second DuckDB connection (a
//! reader beside the writer, so ingest never stops) and streams Arrow
//! record batches as frames ([`hitvault_takeout::stream`]); this process
//! writes the files, which the daemon's sandbox could not reach anyway. With
//! no daemon, it opens the database read-only itself. Either way the files
//! and the MANIFEST are written by [`ExportWriter`].

use std::io::IsTerminal;
use std::path::Path;
use std::time::{Duration, Instant};

use hitvault_server::ExportQuery;
use hitvault_store::Store;
use hitvault_takeout::manifest::Filter;
use hitvault_takeout::stream::{Frame, read_frame};
use hitvault_takeout::{ExportWriter, Format, Table};

use super::client;
use crate::config::Config;
use crate::control::filter_of;
use crate::datadir::CONTROL_SOCKET;
use crate::exit::{Exit, Failure, OrExit};

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
pub fn export(cfg: &Config, dir: &Path, format: Format, q: ExportQuery) -> Result<(), Failure> {
    let filter = filter_of(&q).or_exit(Exit::Usage)?;
    let started = Instant::now();
    let w = ExportWriter::create_with_threads(dir, format, true).or_exit(Exit::Usage)?;
    let mut hits = 0u64;
    let socket = cfg.data_dir.join(CONTROL_SOCKET);
    let (w, how) = match client::connect(&socket) {
        Some(conn) => {
            let path = format!("/takeout?{}", q.to_query());
            let mut reply = client::stream(conn, "GET", &path).or_exit(Exit::Runtime)?;
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
                    match read_frame(&mut reply.body).or_exit(Exit::Runtime)? {
                        Frame::Data(table, batch) => {
                            sent += batch.num_rows() as u64;
                            if table == Table::Hits {
                                hits += batch.num_rows() as u64;
                                progress.tick(hits);
                            }
                            send(table, batch).or_exit(Exit::Runtime)?;
                        }
                        Frame::End { rows } => {
                            if rows != sent {
                                return Err(Failure::runtime(format!(
                                    "the daemon sent {rows} rows, {sent} arrived"
                                )));
                            }
                            return Ok(());
                        }
                        Frame::Error(m) => {
                            return Err(Failure::runtime(format!(
                                "the daemon failed the export: {m}"
                            )));
                        }
                    }
                }
            })?;
            progress.done();
            (w, "through the running daemon")
        }
        None => {
            let db = Store::open_read_only(&cfg.data_dir).or_exit(Exit::Startup)?;
            // Recorded before any row is read (the daemon records its own).
            let mut recorded = q.clone();
            recorded.format = Some(format.to_string());
            let (site, mut detail) = hitvault_server::export::export_detail(&recorded, "cli");
            detail["bundle"] = serde_json::Value::String("takeout".into());
            detail["table"] = serde_json::Value::Null;
            crate::links::audit_cli(
                cfg,
                hitvault_accounts::Kind::Export,
                site.as_deref(),
                detail,
            )?;
            // One DuckDB thread: the encoders use the other core; a second
            // DuckDB thread cost about a tenth more CPU per row in hand-over.
            db.set_threads(1).or_exit(Exit::Startup)?;
            let store = db.reader().or_exit(Exit::Startup)?;
            // The total is only for the progress bar: no counting pass without one.
            let total = if std::io::stderr().is_terminal() {
                store.count_hits(&filter).or_exit(Exit::Runtime)?
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
                    .or_exit(Exit::Runtime)
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
    let m = w.finish(meta).or_exit(Exit::Runtime)?;
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
pub const PIPELINE_DEPTH: usize = 8;

type BatchSink<'a> = dyn FnMut(Table, hitvault_store::RecordBatch) -> Result<(), String> + 'a;

/// Runs `produce` on this thread and the file writing on another, so that
/// reading (DuckDB, or the daemon's stream) and encoding use both cores.
fn pipelined(
    mut w: ExportWriter,
    produce: impl FnOnce(&mut BatchSink<'_>) -> Result<(), Failure>,
) -> Result<ExportWriter, Failure> {
    std::thread::scope(|s| {
        let (tx, rx) = std::sync::mpsc::sync_channel(PIPELINE_DEPTH);
        let writer = s.spawn(move || -> Result<ExportWriter, Failure> {
            for (table, batch) in rx {
                w.write(table, &batch).or_exit(Exit::Runtime)?;
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
pub fn verify(dir: &Path) -> Result<(), Failure> {
    let m = hitvault_takeout::verify(dir).or_exit(Exit::Runtime)?;
    let rows: u64 = m.files.iter().map(|f| f.rows).sum();
    println!(
        "{}: valid {} Takeout, {} files, {rows} rows",
        dir.display(),
        m.format,
        m.files.len()
    );
    Ok(())
}

/// The stick an export goes onto (the appliance's stick unit).
pub struct Stick {
    pub label: String,
    pub device: String,
}

/// `hitvault takeout --to DIR --stick-label L --stick-device D`: the
/// export, then `verify` of what was written and a sync of the stick's file
/// system; the outcome, good or bad, is recorded for the dashboard
/// ([`hitvault_server::usb`]) through the daemon, or in the data dir when
/// no daemon runs. Fails as the export or the verify failed.
pub fn stick(
    cfg: &Config,
    dir: &Path,
    format: Format,
    q: ExportQuery,
    stick: Stick,
) -> Result<(), Failure> {
    let started = Instant::now();
    let mut verified = false;
    let outcome = export(cfg, dir, format, q).and_then(|()| {
        let m = hitvault_takeout::verify(dir).or_exit(Exit::Runtime)?;
        verified = true;
        println!(
            "{}: valid {} Takeout, {} files, {} rows",
            dir.display(),
            m.format,
            m.files.len(),
            m.files.iter().map(|f| f.rows).sum::<u64>()
        );
        syncfs(dir).or_exit_with(Exit::Runtime, |e| {
            format!("syncing the stick's file system: {e}")
        })
    });
    let (rows, bytes) = hitvault_takeout::read_manifest(dir)
        .map(|m| {
            (
                m.files.iter().map(|f| f.rows).sum(),
                m.files.iter().map(|f| f.bytes).sum(),
            )
        })
        .unwrap_or((0, 0));
    let run = hitvault_server::usb::StickRun {
        at_ms: crate::links::now_ms(),
        label: stick.label,
        device: stick.device,
        dir: dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| dir.display().to_string()),
        format: format.to_string(),
        ok: outcome.is_ok(),
        verified: verified && outcome.is_ok(),
        rows,
        bytes,
        millis: started.elapsed().as_millis() as u64,
        error: outcome.as_ref().err().map(failure_text),
    };
    if let Err(e) = record(cfg, run) {
        eprintln!(
            "the USB Takeout's outcome is not recorded for the dashboard: {}",
            failure_text(&e)
        );
    }
    outcome
}

/// A failure and its causes, on one line.
fn failure_text(f: &Failure) -> String {
    let mut t = f.message.clone();
    let mut cause: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(f);
    while let Some(c) = cause {
        let c_text = c.to_string();
        if !t.contains(&c_text) {
            t.push_str(": ");
            t.push_str(&c_text);
        }
        cause = c.source();
    }
    t
}

/// `fsync` of the whole file system `dir` is on (the stick).
fn syncfs(dir: &Path) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let f = std::fs::File::open(dir)?;
    // SAFETY: syncfs on a descriptor we own.
    if unsafe { libc::syncfs(f.as_raw_fd()) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Records a stick run: through the daemon's control socket, or, with no
/// daemon, into the data dir under its lock.
fn record(cfg: &Config, run: hitvault_server::usb::StickRun) -> Result<(), Failure> {
    let socket = cfg.data_dir.join(CONTROL_SOCKET);
    match client::connect(&socket) {
        Some(conn) => {
            let body = serde_json::to_vec(&run).expect("a run serializes");
            let reply = client::request(conn, "POST", "/usb-takeouts", Some(&body))
                .or_exit(Exit::Runtime)?;
            if reply.status != 201 {
                return Err(client::refusal(
                    reply.status,
                    &reply.body,
                    "the daemon refused the record",
                ));
            }
            Ok(())
        }
        None => {
            let run = run.check().map_err(Failure::usage)?;
            let _lock = crate::datadir::lock(&cfg.data_dir)?;
            hitvault_server::usb::record(&cfg.data_dir, run).or_exit_with(Exit::Runtime, |e| {
                format!("writing {}: {e}", hitvault_server::usb::RUNS_FILE)
            })
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
}
