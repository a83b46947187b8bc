//! The daemon's side of the server crate's traits: what the control socket,
//! the goals API and Takeout over HTTP ask of the store, done through the
//! one [`Writer`].
//!
//! - [`DaemonSites`] ([`SiteAdmin`]): lists and adds sites; an added site is
//!   written by the writer, then the ingest registry is swapped.
//! - [`DaemonDefs`] ([`DefAdmin`]): goal and funnel definitions.
//! - [`DaemonExporter`] ([`Exporter`]): each export reads on its own
//!   connection, made by the writer from the store it has open, beside it.
//! - [`DaemonMaintenance`] ([`Maintenance`]): backup snapshots, Takeout
//!   imports, Plausible imports and prunes.
//!
//! An import (`hitvault import` through the daemon): the CLI checks every
//! hit row and sends the largest id first, then streams the tables as Arrow
//! frames. Before any row is staged, the queue reserves ids above that id
//! (for imported hits whose id this instance gave to another hit), raises
//! its numbering above them, and everything numbered before is committed; so
//! imported and new ids never meet a hit id given out later. The writer
//! stages the frames and merges them in one transaction.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use hitvault_core::sites::{Sites, normalize_host};
use hitvault_queue::Queue;
use hitvault_server::{
    AdminError, BodyWriter, DefAdmin, ExportQuery, Exporter, Maintenance, Prepared, SiteAdmin,
    SiteInfo,
};
use hitvault_store::goals::{DefError, Funnel, Goal, Step};

use super::cluster::{DefChange, step_pair};
use crate::links::now_ms;
use hitvault_store::{ImportStats, Reader, RecordBatch, Store};
use hitvault_takeout::manifest::Filter;
use hitvault_takeout::stream::{data_frame, end_frame, error_frame};
use hitvault_takeout::write::TableWriter;
use hitvault_takeout::{Format, Table};

use super::writer::{ExportsRunning, Feed, HEARTBEAT_EVERY, RecvTimeoutError, Unavailable, Writer};
use crate::control::{SnapshotHeader, filter_of, stats_json};
use crate::datadir::SNAPSHOT_PREFIX;
use crate::retention::{self, Policy};

/// A writer that could not serve a control request: the client may retry.
fn unavailable(e: Unavailable) -> AdminError {
    AdminError::Unavailable(e.to_string())
}

/// Site management for the control socket.
pub struct DaemonSites {
    pub writer: Writer,
    /// The ingest registry, swapped whole when a site is added.
    pub sites: Arc<RwLock<Arc<Sites>>>,
    pub declared: Vec<(String, Vec<String>)>,
    /// On a cluster node: a site is added through the log.
    pub cluster: Option<Arc<super::cluster::Gate>>,
}

impl SiteAdmin for DaemonSites {
    fn list(&self) -> Result<Vec<SiteInfo>, AdminError> {
        let rows = self
            .writer
            .call(|s, _| s.sites().map_err(|e| e.to_string()))
            .map_err(unavailable)?
            .map_err(AdminError::Internal)?;
        Ok(crate::sites::infos(rows, &self.declared))
    }

    fn add(&self, site: SiteInfo) -> Result<SiteInfo, AdminError> {
        let host = normalize_host(&site.hostname)
            .map_err(|e| AdminError::Invalid(format!("{:?}: {e}", site.hostname)))?;
        let aliases = site
            .aliases
            .iter()
            .map(|a| normalize_host(a).map_err(|e| AdminError::Invalid(format!("{a:?}: {e}"))))
            .collect::<Result<Vec<_>, _>>()?;
        let current = self.sites.read().unwrap_or_else(|p| p.into_inner()).clone();
        let mut next = (*current).clone();
        next.add(&host, aliases.clone())
            .map_err(|e| AdminError::Conflict(e.to_string()))?;
        if let Some(gate) = &self.cluster {
            // Every node stores it and learns it (the log applies it,
            // registry included), this one before the answer.
            let change = DefChange::AddSite {
                hostname: host.clone(),
                aliases,
                at_ms: now_ms() as i64,
            };
            through_log(&self.writer, gate, change).map_err(|e| match e {
                DefError::Exists(m) => AdminError::Conflict(format!("{m} already exists")),
                DefError::Invalid(m) => AdminError::Invalid(m),
                DefError::Unavailable(m) => AdminError::Unavailable(m.to_owned()),
                DefError::Query(q) => AdminError::Internal(q.to_string()),
            })?;
            let rows = self
                .writer
                .call(|s, _| s.sites().map_err(|e| e.to_string()))
                .map_err(unavailable)?
                .map_err(AdminError::Internal)?;
            let row = rows
                .into_iter()
                .find(|r| r.hostname == host)
                .ok_or_else(|| AdminError::Internal(format!("site {host:?} is not stored")))?;
            tracing::info!(site = %row.hostname, "site added through the cluster");
            return Ok(crate::sites::info(row));
        }
        let row = self
            .writer
            .call(move |s, _| s.upsert_site(&host, &aliases, "runtime"))
            .map_err(unavailable)?
            .map_err(|e| match e {
                hitvault_store::QueryError::SiteExists(h) => {
                    AdminError::Conflict(format!("site {h:?} already exists"))
                }
                other => AdminError::Internal(other.to_string()),
            })?;
        *self.sites.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(next);
        tracing::info!(site = %row.hostname, "site added");
        Ok(crate::sites::info(row))
    }
}

/// Goal and funnel definitions.
pub struct DaemonDefs {
    pub writer: Writer,
    /// On a cluster node: changes go through the log.
    pub cluster: Option<Arc<super::cluster::Gate>>,
}

impl DaemonDefs {
    fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Store) -> Result<T, DefError> + Send + 'static,
    ) -> Result<T, DefError> {
        self.writer.call(|s, _| f(s)).map_err(def_unavailable)?
    }
}

impl DefAdmin for DaemonDefs {
    fn add_goal(&self, site_id: u16, step: Step, name: String) -> Result<Goal, DefError> {
        let Some(gate) = &self.cluster else {
            return self.run(move |s| s.add_goal(site_id, step, &name));
        };
        let change = DefChange::AddGoal {
            site_id,
            step: step_pair(&step),
            name: name.clone(),
            at_ms: now_ms() as i64,
        };
        through_log(&self.writer, gate, change)?;
        let n = name.clone();
        let id = self
            .run(move |s| Ok(s.def_named(false, site_id, &n)?))?
            .ok_or_else(|| DefError::Invalid(format!("goal {name:?} was removed meanwhile")))?;
        Ok(Goal {
            id,
            site_id,
            step,
            display_name: name,
        })
    }
    fn delete_goal(&self, site_id: u16, id: u32) -> Result<bool, DefError> {
        let Some(gate) = &self.cluster else {
            return self.run(move |s| Ok(s.delete_goal(site_id, id)?));
        };
        match through_log(&self.writer, gate, DefChange::DeleteGoal { site_id, id }) {
            Ok(()) => Ok(true),
            // None here (the dry run says so), or another node removed
            // it first.
            Err(DefError::Invalid(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }
    fn add_funnel(&self, site_id: u16, name: String, steps: Vec<Step>) -> Result<Funnel, DefError> {
        let Some(gate) = &self.cluster else {
            return self.run(move |s| s.add_funnel(site_id, &name, steps));
        };
        let change = DefChange::AddFunnel {
            site_id,
            name: name.clone(),
            steps: steps.iter().map(step_pair).collect(),
            at_ms: now_ms() as i64,
        };
        through_log(&self.writer, gate, change)?;
        let n = name.clone();
        let id = self
            .run(move |s| Ok(s.def_named(true, site_id, &n)?))?
            .ok_or_else(|| DefError::Invalid(format!("funnel {name:?} was removed meanwhile")))?;
        Ok(Funnel {
            id,
            site_id,
            name,
            steps,
        })
    }
    fn delete_funnel(&self, site_id: u16, id: u32) -> Result<bool, DefError> {
        let Some(gate) = &self.cluster else {
            return self.run(move |s| Ok(s.delete_funnel(site_id, id)?));
        };
        match through_log(&self.writer, gate, DefChange::DeleteFunnel { site_id, id }) {
            Ok(()) => Ok(true),
            Err(DefError::Invalid(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }
}

/// A definitions call the writer did not take.
fn def_unavailable(e: Unavailable) -> DefError {
    match e {
        Unavailable::Closed => DefError::Unavailable("the store is closed"),
        Unavailable::Busy => DefError::Unavailable("the store did not answer"),
    }
}

/// On a cluster node: checks `change` against this node's store (its
/// refusal at once), then makes it through the log, applied on every node
/// and here before this returns.
fn through_log(
    writer: &Writer,
    gate: &super::cluster::Gate,
    change: DefChange,
) -> Result<(), DefError> {
    let c = change.clone();
    writer
        .call(move |s, _| s.def_dry_run(|s| c.apply(s)))
        .map_err(def_unavailable)??;
    let body = serde_json::to_vec(&change).expect("changes serialise");
    match gate.propose_blocking(|origin| hitvault_cluster::Command::Definitions {
        origin,
        change: body,
    }) {
        Ok(None) => Ok(()),
        Ok(Some(reason)) => Err(DefError::Invalid(format!(
            "a change made at the same time on another node came first ({reason}); nothing \
             changed"
        ))),
        Err(e) => {
            tracing::warn!(error = %e, "a change was not confirmed by the cluster");
            Err(DefError::Unavailable(
                "the cluster did not confirm the change (no majority in time); try again",
            ))
        }
    }
}

/// A new read connection to the store the writer has open (after a reopen
/// too), for one export or snapshot.
fn reader(writer: &Writer) -> Result<Reader, AdminError> {
    writer
        .call(|s, _| s.reader().map_err(|e| e.to_string()))
        .map_err(unavailable)?
        .map_err(AdminError::Internal)
}

/// The daemon's exporter: each export gets its own read connection, made
/// by the writer from the store it has open, and closed when the export ends.
pub struct DaemonExporter {
    pub writer: Writer,
    pub exports: ExportsRunning,
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
        let rows = reader(&self.writer)?
            .count_hits(&filter)
            .map_err(|e| AdminError::Internal(e.to_string()))?;
        Ok((rows, media))
    }

    fn export(&self, q: ExportQuery, mut out: BodyWriter) -> Result<(), AdminError> {
        use std::io::Write;
        let _running = self.exports.enter();
        let filter = filter_of(&q).map_err(AdminError::Invalid)?;
        let reader = reader(&self.writer)?;
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

/// What an import through the daemon feeds the writer.
pub enum ImportMsg {
    Batch(&'static str, RecordBatch),
    /// Every batch was sent: merge and commit.
    End,
    /// The stream failed: roll back.
    Abort(String),
}

/// Longest pause between two messages of an import before it is rolled back.
const IMPORT_IDLE: Duration = Duration::from_secs(60);

/// Record batches an import has in flight to the writer.
const IMPORT_DEPTH: usize = 8;

/// An import's failure as the control socket answers it: the request's
/// fault (ours to explain, sent as `invalid`) or the store's (logged, never
/// sent: DuckDB's text stays in the daemon's log).
fn import_error(e: hitvault_store::TakeoutError) -> AdminError {
    match e {
        hitvault_store::TakeoutError::Invalid(m) => AdminError::Invalid(m),
        other => AdminError::Internal(format!("import: {other}")),
    }
}

/// On the writer: stages what `feed` brings, then merges it in one transaction.
fn stage_and_merge(
    store: &mut Store,
    feed: &Feed<ImportMsg>,
    max_id: u64,
    renumber_above: u64,
    heartbeat: &mut dyn FnMut(),
) -> Result<ImportStats, AdminError> {
    let mut imp = store.begin_import().map_err(import_error)?;
    imp.renumber_above(renumber_above);
    let mut idle = Instant::now();
    loop {
        heartbeat();
        match feed.recv_timeout(HEARTBEAT_EVERY) {
            Ok(ImportMsg::Batch(table, batch)) => {
                imp.append(table, batch).map_err(import_error)?;
                idle = Instant::now();
            }
            Ok(ImportMsg::End) => break,
            Ok(ImportMsg::Abort(m)) => return Err(AdminError::Invalid(m)),
            Err(RecvTimeoutError::Timeout) if idle.elapsed() < IMPORT_IDLE => {}
            Err(RecvTimeoutError::Timeout) => {
                return Err(AdminError::Invalid(format!(
                    "no data for {} s; nothing imported",
                    IMPORT_IDLE.as_secs()
                )));
            }
            Err(RecvTimeoutError::Disconnected) => {
                return Err(AdminError::Invalid(
                    "the import stream ended early; nothing imported".into(),
                ));
            }
        }
    }
    let staged = imp.staged_max_id().map_err(import_error)?;
    if staged > max_id {
        return Err(AdminError::Invalid(format!(
            "the import holds hit id {staged}, above the announced max_id {max_id}; nothing imported"
        )));
    }
    imp.commit().map_err(import_error)
}

/// How long a backup waits for the writer to commit what was acknowledged
/// before the request.
const CATCH_UP: Duration = Duration::from_secs(60);

/// The daemon's backups, imports and prunes.
pub struct DaemonMaintenance {
    pub writer: Writer,
    pub queue: Queue,
    /// The writer's committed position.
    pub committed: Arc<AtomicU64>,
    /// `<data dir>/tmp`, where snapshots are made before they are streamed.
    pub tmp: PathBuf,
    /// The ingest registry: sites an import adds are added to it too.
    pub sites: Arc<RwLock<Arc<Sites>>>,
    /// Retention periods and the archive, for prunes.
    pub retention: Policy,
    /// On a cluster node: imports are refused (not replicated yet), and a
    /// prune is a retention pass through the log.
    pub cluster: Option<Arc<super::cluster::Gate>>,
}

impl DaemonMaintenance {
    /// Waits until the writer has committed `target`.
    fn wait_committed(&self, target: u64) -> Result<(), AdminError> {
        let until = Instant::now() + CATCH_UP;
        while self.committed.load(Ordering::Acquire) < target {
            if Instant::now() > until {
                return Err(AdminError::Internal(format!(
                    "the writer did not reach queue position {target} in {} s",
                    CATCH_UP.as_secs()
                )));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(())
    }

    /// Adds the runtime sites the store has and the registry lacks.
    fn refresh_sites(&self) -> Result<(), AdminError> {
        let rows = self
            .writer
            .call(|s, _| s.sites().map_err(|e| e.to_string()))
            .map_err(unavailable)?
            .map_err(AdminError::Internal)?;
        crate::sites::add_runtime(&self.sites, rows);
        Ok(())
    }
}

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
        let snap = reader(&self.writer)?.snapshot(&file);
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
        let header =
            serde_json::to_string(&SnapshotHeader::from((&info, bytes))).expect("serialises");
        Ok(Prepared {
            media: "application/vnd.duckdb",
            headers: vec![(crate::control::SNAPSHOT_HEADER, header)],
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
        if self.cluster.is_some() {
            return Err(AdminError::Invalid(
                crate::config::NO_IMPORT_ON_CLUSTER.into(),
            ));
        }
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
        let (feeder, pending) = self
            .writer
            .feed(IMPORT_DEPTH, move |store, heartbeat, feed| {
                stage_and_merge(store, &feed, max_id, renumber_above, heartbeat)
            })
            .map_err(unavailable)?;
        let mut rows = 0u64;
        let fed: Result<(), String> = loop {
            match read_frame(&mut body) {
                Ok(Frame::Data(table, batch)) => {
                    rows += batch.num_rows() as u64;
                    if !feeder.send(ImportMsg::Batch(table.name(), batch)) {
                        break Ok(()); // the writer stopped; its answer says why
                    }
                }
                Ok(Frame::End { rows: n }) if n == rows => {
                    feeder.send(ImportMsg::End);
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
            feeder.send(ImportMsg::Abort(format!("nothing imported: {m}")));
        }
        drop(feeder);
        let stats = pending.wait().map_err(unavailable)?.inspect_err(|e| {
            tracing::warn!(error = %e, "import refused");
        })?;
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
        let mut reply = stats_json(&stats);
        reply["next_id_at_least"] = (renumber_above + reserved + 1).into();
        Ok(reply)
    }

    fn import_plausible(&self, body: &[u8]) -> Result<serde_json::Value, AdminError> {
        if self.cluster.is_some() {
            return Err(AdminError::Invalid(
                crate::config::NO_IMPORT_ON_CLUSTER.into(),
            ));
        }
        let wire: hitvault_plausible::ImportBody = serde_json::from_slice(body)
            .map_err(|e| AdminError::Invalid(format!("not an import-plausible body: {e}")))?;
        let (site, set) = wire.into_set().map_err(AdminError::Invalid)?;
        let r = self
            .writer
            .call(move |store, _| store.replace_imported(&site, &set))
            .map_err(unavailable)?
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
        // On a cluster node every node deletes the same hits: the pass
        // goes through the log (a dry run changes nothing: it runs here).
        if let Some(gate) = self.cluster.as_ref().filter(|_| !dry_run) {
            let r = gate
                .prune(&self.retention)
                .map_err(AdminError::Unavailable)?;
            return Ok(serde_json::to_value(r).expect("report serialises"));
        }
        let policy = self.retention.clone();
        let r = self
            .writer
            .call(move |store, heartbeat| {
                let r = retention::run(store, &policy, retention::now_us(), dry_run, heartbeat);
                if let Err(e) = &r {
                    tracing::error!(error = %e, "prune failed");
                }
                r
            })
            .map_err(unavailable)?
            .map_err(AdminError::Internal)?;
        Ok(serde_json::to_value(r).expect("report serialises"))
    }
}
