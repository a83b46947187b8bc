//! USB Takeout on the appliance: the record of Takeouts written onto USB
//! sticks, the last [`RUNS_KEPT`] outcomes in the file [`RUNS_FILE`] of the
//! data directory, and the routes that write and show it.
//!
//! | route | kind | who |
//! | --- | --- | --- |
//! | `POST /usb-takeouts` | control: records a run (JSON [`StickRun`]); `201` with it, `400` naming a bad field | an instance admin (the socket's caller) |
//! | `GET /usb-takeouts` | control: the runs, newest first (JSON) | the same |
//! | `GET /admin/usb-takeouts` | dashboard page: the runs, newest first, a failed one with its reason | an instance admin (`Need::Admin`) |
//!
//! `hitvault takeout --stick-label L --stick-device D` (the appliance's
//! stick unit) records its run through the control socket, or, with no
//! daemon running, into the file itself while it holds the data
//! directory's lock; the daemon serializes its own writes. The file is
//! replaced whole (written beside it, fsync'd, renamed), so a reader sees
//! the old list or the new one.

use std::fmt::Write as _;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use crate::error::ApiError;
use crate::rules::{Face, Need, Routes};

/// File name of the record, in the data directory.
pub const RUNS_FILE: &str = "usb-takeouts.json";

/// Runs kept: the oldest goes when one more is recorded.
pub const RUNS_KEPT: usize = 20;

/// The formats of a Takeout.
const FORMATS: [&str; 4] = ["parquet", "csv", "json", "ndjson"];

/// Longest label, device, directory name and format accepted (bytes).
pub const NAME_MAX: usize = 255;

/// Longest error text kept (bytes; a longer one is cut at a character).
pub const ERROR_MAX: usize = 2000;

/// One Takeout onto a stick.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StickRun {
    /// When the run ended (unix milliseconds; the daemon sets it when 0).
    #[serde(default)]
    pub at_ms: u64,
    /// The stick's file system label.
    pub label: String,
    /// The stick's device (`sdb1`).
    pub device: String,
    /// The Takeout's directory on the stick.
    pub dir: String,
    /// parquet, csv, json or ndjson.
    pub format: String,
    /// Written, verified against its MANIFEST and synced.
    pub ok: bool,
    /// `hitvault takeout verify` passed on what is on the stick.
    pub verified: bool,
    /// Rows and bytes of the data files, from the MANIFEST (0 without one).
    #[serde(default)]
    pub rows: u64,
    #[serde(default)]
    pub bytes: u64,
    /// How long the run took.
    #[serde(default)]
    pub millis: u64,
    /// Why it failed (none when `ok`).
    #[serde(default)]
    pub error: Option<String>,
}

impl StickRun {
    /// Refuses a run that is not well formed, naming the field; cuts a long
    /// error text to [`ERROR_MAX`] bytes.
    pub fn check(mut self) -> Result<StickRun, String> {
        for (name, v) in [
            ("label", &self.label),
            ("device", &self.device),
            ("dir", &self.dir),
            ("format", &self.format),
        ] {
            if v.is_empty() || v.len() > NAME_MAX || v.chars().any(char::is_control) {
                return Err(format!(
                    "{name} must be 1 to {NAME_MAX} bytes without control characters, not {v:?}"
                ));
            }
        }
        if !FORMATS.contains(&self.format.as_str()) {
            return Err(format!(
                "format must be parquet, csv, json or ndjson, not {:?}",
                self.format
            ));
        }
        match (&self.error, self.ok) {
            (Some(_), true) => return Err("a run with an error is not ok".into()),
            (None, false) => return Err("a failed run needs its error".into()),
            (Some(e), false) if e.trim().is_empty() => {
                return Err("a failed run needs its error".into());
            }
            _ => {}
        }
        if self.ok && !self.verified {
            return Err("a run is ok only once verified".into());
        }
        if let Some(e) = &mut self.error
            && e.len() > ERROR_MAX
        {
            let mut end = ERROR_MAX;
            while !e.is_char_boundary(end) {
                end -= 1;
            }
            e.truncate(end);
        }
        Ok(self)
    }
}

/// The runs recorded in `data_dir`, newest first (none when no file).
pub fn read(data_dir: &Path) -> std::io::Result<Vec<StickRun>> {
    let path = data_dir.join(RUNS_FILE);
    let text = match std::fs::read(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut runs: Vec<StickRun> = serde_json::from_slice(&text).map_err(|e| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{}: {e}", path.display()),
        )
    })?;
    runs.reverse();
    Ok(runs)
}

/// Adds `run` (checked by the caller) to the record in `data_dir`,
/// keeping the last [`RUNS_KEPT`]. The caller serializes writers.
pub fn record(data_dir: &Path, run: StickRun) -> std::io::Result<()> {
    let mut runs = read(data_dir)?;
    runs.reverse();
    runs.push(run);
    let drop = runs.len().saturating_sub(RUNS_KEPT);
    runs.drain(..drop);
    let path = data_dir.join(RUNS_FILE);
    let tmp = data_dir.join(format!("{RUNS_FILE}.tmp"));
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&serde_json::to_vec_pretty(&runs).map_err(std::io::Error::other)?)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, &path)?;
    std::fs::File::open(data_dir)?.sync_all()
}

/// The record, as a request extension of both listeners' routes
/// ([`crate::assembly`]).
#[derive(Clone, Debug)]
pub struct UsbTakeouts(pub Arc<Runs>);

/// The record in a data directory, its writes one at a time.
#[derive(Debug)]
pub struct Runs {
    dir: PathBuf,
    write: std::sync::Mutex<()>,
}

impl Runs {
    pub fn new(data_dir: &Path) -> Runs {
        Runs {
            dir: data_dir.to_owned(),
            write: std::sync::Mutex::new(()),
        }
    }

    fn read(&self) -> std::io::Result<Vec<StickRun>> {
        read(&self.dir)
    }

    fn record(&self, run: StickRun) -> std::io::Result<()> {
        let _one = self.write.lock().unwrap_or_else(|e| e.into_inner());
        record(&self.dir, run)
    }
}

/// The control socket's routes (also under `/api/v1/control`).
pub(crate) fn control_routes() -> Routes {
    Routes::new(Face::Json)
        .get("/usb-takeouts", Need::Admin, list)
        .post("/usb-takeouts", Need::Admin, add)
}

/// The dashboard's page.
pub(crate) fn page_routes() -> Routes {
    Routes::new(Face::Page).get("/admin/usb-takeouts", Need::Admin, page)
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> Result<T, Response> {
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(ApiError::internal("the USB Takeout record", e).into_response()),
        Err(e) => Err(ApiError::internal("a USB Takeout task", e).into_response()),
    }
}

async fn list(axum::Extension(UsbTakeouts(runs)): axum::Extension<UsbTakeouts>) -> Response {
    match blocking(move || runs.read()).await {
        Ok(v) => axum::Json(v).into_response(),
        Err(r) => r,
    }
}

async fn add(
    axum::Extension(UsbTakeouts(runs)): axum::Extension<UsbTakeouts>,
    body: axum::body::Bytes,
) -> Response {
    let run = match serde_json::from_slice::<StickRun>(&body)
        .map_err(|e| format!("the body must be a USB Takeout run (JSON): {e}"))
        .and_then(StickRun::check)
    {
        Ok(r) => r,
        Err(m) => return ApiError::invalid(m).into_response(),
    };
    let run = StickRun {
        at_ms: if run.at_ms == 0 { now_ms() } else { run.at_ms },
        ..run
    };
    if run.ok {
        tracing::info!(label = %run.label, device = %run.device, dir = %run.dir, rows = run.rows, "USB Takeout written and verified");
    } else {
        tracing::warn!(label = %run.label, device = %run.device, dir = %run.dir, error = run.error.as_deref().unwrap_or(""), "USB Takeout failed");
    }
    let stored = run.clone();
    match blocking(move || runs.record(stored)).await {
        Ok(()) => (StatusCode::CREATED, axum::Json(run)).into_response(),
        Err(r) => r,
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

async fn page(axum::Extension(UsbTakeouts(runs)): axum::Extension<UsbTakeouts>) -> Response {
    match blocking(move || runs.read()).await {
        Ok(v) => crate::dashboard::html(StatusCode::OK, render(&v)),
        Err(r) => r,
    }
}

fn render(runs: &[StickRun]) -> String {
    use crate::audit::time_text;
    use crate::dashboard::html::{esc, int, page};
    let mut m = format!(
        "<h1>USB Takeout</h1><p>Takeouts the appliance wrote onto USB sticks with the Takeout \
         label, newest first: the last {RUNS_KEPT}. A run is done when its Takeout was \
         verified against its MANIFEST on the stick and synced; check a stick anywhere with \
         <code>hitvault takeout verify DIR</code>.</p>"
    );
    if runs.is_empty() {
        m.push_str("<p class=\"empty\" id=\"usb-none\">No stick has been plugged in yet.</p>");
        return page("USB Takeout", None, "page-usb", &m);
    }
    m.push_str(
        "<table id=\"usb-takeouts\"><caption class=\"sr-only\">USB Takeout runs, newest first</caption>\
         <thead><tr><th scope=\"col\">Time</th><th scope=\"col\">Result</th><th scope=\"col\">Stick</th>\
         <th scope=\"col\">Directory</th><th scope=\"col\">Format</th><th scope=\"col\">Rows</th>\
         <th scope=\"col\">Bytes</th><th scope=\"col\">Verified</th><th scope=\"col\">Time taken</th>\
         <th scope=\"col\">Reason</th></tr></thead><tbody>",
    );
    for r in runs {
        let _ = write!(
            m,
            "<tr class=\"usb-run\" data-result=\"{result}\"><td>{at}</td><td>{result}</td>\
             <td>{label} on {device}</td><td><code>{dir}</code></td><td>{format}</td>\
             <td class=\"num\">{rows}</td><td class=\"num\">{bytes}</td><td>{verified}</td>\
             <td class=\"num\">{secs:.1} s</td><td>{error}</td></tr>",
            result = if r.ok { "done" } else { "failed" },
            at = time_text(r.at_ms),
            label = esc(&r.label),
            device = esc(&r.device),
            dir = esc(&r.dir),
            format = esc(&r.format),
            rows = int(r.rows),
            bytes = int(r.bytes),
            verified = if r.verified { "yes" } else { "no" },
            secs = r.millis as f64 / 1000.0,
            error = esc(r.error.as_deref().unwrap_or("")),
        );
    }
    m.push_str("</tbody></table>");
    page("USB Takeout", None, "page-usb", &m)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(n: u64) -> StickRun {
        StickRun {
            at_ms: n,
            label: "HVTAKEOUT".into(),
            device: "sdb1".into(),
            dir: format!("hitvault-takeout-{n}"),
            format: "parquet".into(),
            ok: true,
            verified: true,
            rows: n,
            bytes: 10 * n,
            millis: 5,
            error: None,
        }
    }

    #[test]
    fn keeps_the_last_runs_newest_first() {
        let d = tempfile::tempdir().unwrap();
        assert!(read(d.path()).unwrap().is_empty());
        for n in 1..=(RUNS_KEPT as u64 + 3) {
            record(d.path(), run(n)).unwrap();
        }
        let runs = read(d.path()).unwrap();
        assert_eq!(runs.len(), RUNS_KEPT);
        assert_eq!(runs[0].at_ms, RUNS_KEPT as u64 + 3);
        assert_eq!(runs[RUNS_KEPT - 1].at_ms, 4);
        assert!(!d.path().join(format!("{RUNS_FILE}.tmp")).exists());
    }

    #[test]
    fn refuses_runs_that_do_not_hold_together() {
        assert!(run(1).check().is_ok());
        let mut r = run(1);
        r.ok = false;
        assert_eq!(r.check().unwrap_err(), "a failed run needs its error");
        let mut r = run(1);
        r.error = Some("No space left on device".into());
        assert_eq!(r.check().unwrap_err(), "a run with an error is not ok");
        let mut r = run(1);
        r.verified = false;
        assert!(r.check().unwrap_err().contains("verified"));
        let mut r = run(1);
        r.format = "xml".into();
        assert!(r.check().unwrap_err().contains("format must be"));
        let mut r = run(1);
        r.label = "a\nb".into();
        assert!(r.check().unwrap_err().starts_with("label must be"));
        let mut r = run(1);
        r.ok = false;
        r.verified = false;
        r.error = Some("é".repeat(ERROR_MAX));
        let r = r.check().unwrap();
        assert!(r.error.unwrap().len() <= ERROR_MAX);
    }
}
