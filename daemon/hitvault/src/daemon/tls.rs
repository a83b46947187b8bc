//! The listener's TLS in the running daemon: the certificate source chosen
//! by the configuration, loaded once the process is confined (so reading
//! the files, and writing the local CA, is what the sandbox allows from
//! then on), logged at every start, and kept fresh while the daemon runs:
//!
//! - on SIGHUP: the files are read again; the local CA's server
//!   certificate is re-issued if due;
//! - every [`POLL`]: the files are read again if they changed;
//! - every [`DAILY`]: the local CA's server certificate is re-issued if due.
//!
//! A reload that fails keeps the certificate being served and logs why.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use hitvault_server::{CaInfo, Edge, TlsInfo};
use hitvault_tls::{Certs, Refreshed, Source, Started, Trigger};

use crate::config::{Config, TlsMode};
use crate::datadir::TLS_DIR;
use crate::exit::Failure;

/// How often the certificate files are checked for a change.
pub const POLL: Duration = Duration::from_secs(2);
/// How often the local CA's server certificate is checked for renewal.
pub const DAILY: Duration = Duration::from_secs(86_400);

/// The listener's TLS: what the edge serves with, what the routes show, and
/// the certificates to keep fresh (none when TLS is off).
pub struct Tls {
    pub edge: Edge,
    pub info: TlsInfo,
    certs: Option<Arc<Mutex<Certs>>>,
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn date(unix: i64) -> String {
    jiff::Timestamp::from_second(unix).map_or_else(|_| unix.to_string(), |t| t.to_string())
}

/// The certificate source of `cfg`, if TLS is on.
pub fn source(cfg: &Config) -> Option<Source> {
    match cfg.tls_mode {
        TlsMode::Off => None,
        TlsMode::LocalCa => Some(Source::LocalCa {
            dir: cfg.data_dir.join(TLS_DIR),
            names: cfg.hostnames.clone(),
        }),
        TlsMode::Files => Some(Source::Files {
            cert: cfg.tls_cert_file.clone().expect("validated at load"),
            key: cfg.tls_key_file.clone().expect("validated at load"),
        }),
    }
}

/// Loads (or, the first time, creates) the certificate of `cfg`, and logs
/// what is served. Runs confined.
pub fn start(cfg: &Config) -> Result<Tls, Failure> {
    let mode = cfg.tls_mode.name();
    let Some(source) = source(cfg) else {
        tracing::info!("TLS is off (tls.mode = off): plain HTTP on {}", cfg.listen);
        return Ok(Tls {
            edge: Edge {
                tls: None,
                allow_plain_http: cfg.allow_plain_http,
            },
            info: TlsInfo::off(),
            certs: None,
        });
    };
    if cfg.hostnames.is_empty() && !cfg.listen.ip().to_canonical().is_loopback() {
        tracing::warn!(
            "`hostnames` is empty: the certificate names only localhost, and the dashboard and \
             API answer only requests addressed to localhost; set `hostnames` to the names \
             clients use (e.g. hostnames = [\"analytics.example.lan\"])"
        );
    }
    let (certs, started) = Certs::start(source, now()).map_err(|e| {
        let denied = matches!(&e, hitvault_tls::TlsError::Io { source, .. }
            if source.kind() == std::io::ErrorKind::PermissionDenied);
        match (cfg.tls_mode, denied, &cfg.user) {
            (TlsMode::Files, true, Some(user)) => Failure::startup(format!(
                "invalid setting `{}`: {e}: the daemon reads it as the account {user:?} (and \
                 again at each reload): let that account read it, e.g. `chgrp {user} FILE; \
                 chmod 640 FILE`",
                tls_setting(&e)
            )),
            (TlsMode::Files, ..) => {
                Failure::startup(format!("invalid setting `{}`: {e}", tls_setting(&e)))
            }
            _ => Failure::startup(format!("TLS (tls.mode = \"local-ca\"): {e}")),
        }
    })?;
    let Started { created_ca, issued } = started;
    let ca = certs.ca();
    if let Some(ca) = &ca {
        let dir = cfg.data_dir.join(TLS_DIR);
        tracing::info!(
            fingerprint = %ca.fingerprint,
            "TLS: local CA {} in {}; its SHA-256 fingerprint is {} (clients trust it by \
             importing GET /ca.crt after comparing this fingerprint)",
            if created_ca { "created" } else { "kept" },
            dir.display(),
            ca.fingerprint
        );
    }
    log_served(certs.current(), issued.as_deref());
    let resolver = certs.resolver();
    let config =
        hitvault_tls::server_config(resolver).map_err(|e| Failure::startup(format!("TLS: {e}")))?;
    Ok(Tls {
        edge: Edge {
            tls: Some(config),
            allow_plain_http: cfg.allow_plain_http,
        },
        info: TlsInfo {
            mode,
            ca: ca.map(|c| CaInfo {
                pem: c.pem.into(),
                fingerprint: c.fingerprint.into(),
            }),
        },
        certs: Some(Arc::new(Mutex::new(certs))),
    })
}

/// The setting a certificate file error concerns.
fn tls_setting(e: &hitvault_tls::TlsError) -> &'static str {
    match e {
        hitvault_tls::TlsError::Io { what, .. } | hitvault_tls::TlsError::Bad { what, .. } => what,
        _ => "tls.cert_file",
    }
}

fn log_served(cert: &hitvault_tls::Summary, issued: Option<&str>) {
    let names = cert.names.join(", ");
    let until = date(cert.not_after);
    match issued {
        Some(why) => tracing::info!(
            names = %names,
            not_after = %until,
            "TLS: server certificate issued ({why}) for {names}, valid until {until}"
        ),
        None => tracing::info!(
            names = %names,
            not_after = %until,
            subject = %cert.subject,
            "TLS: serving the certificate of {} for {names}, valid until {until}",
            cert.subject
        ),
    }
    if cert.not_after < now() {
        tracing::warn!("TLS: the certificate served expired at {until}: clients will refuse it");
    }
}

impl Tls {
    /// Keeps the certificate fresh until `stop` turns true. `hup` is the
    /// SIGHUP handler, installed before the daemon said it was ready.
    pub async fn keep(
        certs: Option<Arc<Mutex<Certs>>>,
        mut hup: tokio::signal::unix::Signal,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) {
        let files = certs.as_ref().is_some_and(|c| {
            matches!(
                c.lock().unwrap_or_else(|p| p.into_inner()).source(),
                Source::Files { .. }
            )
        });
        let mut poll = tokio::time::interval(POLL);
        let mut daily = tokio::time::interval(DAILY);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        daily.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The first ticks are immediate: the start just did that work.
        poll.tick().await;
        daily.tick().await;
        loop {
            let trigger = tokio::select! {
                _ = hup.recv() => Trigger::Signal,
                _ = poll.tick(), if files => Trigger::Poll,
                _ = daily.tick() => Trigger::Daily,
                _ = stop.wait_for(|s| *s) => return,
            };
            let Some(certs) = certs.clone() else {
                if trigger == Trigger::Signal {
                    tracing::info!("SIGHUP: TLS is off, no certificate to reload");
                }
                continue;
            };
            // File reads and key generation: off the async workers.
            let done = tokio::task::spawn_blocking(move || {
                certs
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .refresh(trigger, now())
            })
            .await;
            match done {
                Ok(Ok(Refreshed::Unchanged)) => {
                    if trigger == Trigger::Signal {
                        tracing::info!("SIGHUP: the TLS certificate is current, nothing to do");
                    }
                }
                Ok(Ok(Refreshed::Replaced { why, cert })) if files => {
                    tracing::info!("TLS: new certificate: {why}");
                    log_served(&cert, None);
                }
                Ok(Ok(Refreshed::Replaced { why, cert })) => log_served(&cert, Some(&why)),
                Ok(Err(e)) => tracing::error!(
                    "TLS: keeping the certificate being served; the new one was not taken: {e}"
                ),
                Err(e) => tracing::error!("TLS: the certificate refresh failed: {e}"),
            }
        }
    }

    /// The certificates to keep fresh, for [`Tls::keep`].
    pub fn certs(&self) -> Option<Arc<Mutex<Certs>>> {
        self.certs.clone()
    }
}
