//! `hitvault import-plausible --site HOST PATH`: Plausible's CSV export (a
//! directory of `imported_*_YYYYMMDD_YYYYMMDD.csv` files, or the zip that
//! holds them) into the imported history of one site.
//!
//! The export is read and checked whole by `hitvault_plausible` before
//! anything is written; the first problem is reported with the file, the
//! row and the reason, and nothing is imported. The history then replaces
//! the site's imported rows of the export's whole date range: through the
//! running daemon's writer when there is one, else on the store directly.

use std::path::Path;
use std::time::Instant;

use hitvault_store::{Store, StoreOptions};

use super::client;
use crate::config::Config;
use crate::datadir::{self, CONTROL_SOCKET};
use crate::exit::{Exit, Failure, OrExit};

/// `hitvault import-plausible --site HOST PATH`.
pub fn import(cfg: &Config, site: &str, path: &Path) -> Result<(), Failure> {
    crate::cli::refuse_on_cluster(cfg)?;
    let started = Instant::now();
    let (set, counts) = hitvault_plausible::read_export(path)
        .or_exit_with(Exit::Usage, |e| format!("nothing imported: {e}"))?;
    let rows: u64 = counts.iter().map(|c| c.1).sum();
    let socket = cfg.data_dir.join(CONTROL_SOCKET);
    let (how, replaced) = if let Some(conn) = client::connect(&socket) {
        conn.set_read_timeout(None).or_exit(Exit::Runtime)?;
        let body = serde_json::to_vec(&hitvault_plausible::ImportBody::of(site, &set))
            .expect("serialises");
        let reply = client::request(conn, "POST", "/import-plausible", Some(&body))
            .or_exit_with(Exit::Runtime, |e| {
                format!("the daemon's control socket: {e}")
            })?;
        if reply.status != 200 {
            return Err(client::refusal(
                reply.status,
                &reply.body,
                "the daemon refused the import",
            )
            .context("nothing imported: "));
        }
        let v: serde_json::Value = serde_json::from_slice(&reply.body).unwrap_or_default();
        (
            " through the running daemon",
            v["rows_replaced"].as_u64().unwrap_or(0),
        )
    } else {
        datadir::prepare(&cfg.data_dir)?;
        let mut store =
            Store::open(&cfg.data_dir, &StoreOptions::default()).or_exit(Exit::Startup)?;
        let r = store.replace_imported(site, &set).map_err(|e| match e {
            hitvault_store::imported::ImportedError::Invalid(m) => {
                Failure::usage(format!("nothing imported: {m}"))
            }
            e => Failure::runtime(format!("nothing imported: {e}")),
        })?;
        store.checkpoint().or_exit(Exit::Runtime)?;
        crate::links::audit_cli(
            cfg,
            hitvault_accounts::Kind::Import,
            Some(site),
            serde_json::json!({ "format": "plausible", "counts": {
                "first_day": set.first_day.to_string(), "last_day": set.last_day.to_string(),
                "days": set.days.len(), "values": set.values.len(),
                "rows_replaced": r.rows_replaced,
            } }),
        )?;
        ("", r.rows_replaced)
    };
    println!(
        "imported Plausible export {} for {site}{how}: {} to {}, {} days, {} values \
         from {rows} rows in {} files; {replaced} earlier rows of that range replaced ({:.2} s)",
        path.display(),
        set.first_day,
        set.last_day,
        set.days.len(),
        set.values.len(),
        counts.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
