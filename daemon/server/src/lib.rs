//! The HTTP edge of hitvault: every route, on axum/hyper.
//!
//! [`app`] assembles every route of the public listener (tracker, ingest,
//! health and metrics; the JSON API; the dashboard), each kind behind its
//! access rule, and [`control_app`] the local control service served on
//! `<data dir>/control.sock` for the CLI (`assembly.rs` has the table of
//! kinds). [`router`] is the public kind alone, as tests serve it.
//! Every JSON refusal is an [`ApiError`].
//! [`serve`] runs a router on a listener until a shutdown future resolves,
//! then stops accepting and lets in-flight requests finish; its [`Edge`]
//! chooses TLS or plain HTTP per connection ([`edge`]), and [`hosts`] holds
//! the names the appliance answers to.
//!
//! Handlers only parse requests into typed values and call [`ingest::Ingest`];
//! they never touch the queue's files or DuckDB directly. Nothing here makes an
//! outbound connection.

pub mod access;
pub mod account;
pub mod audit;
pub mod ca;
pub mod cluster;
pub mod dashboard;
pub mod edge;
pub mod goals_api;
pub mod hosts;
pub mod ingest;
pub mod metrics;
pub mod realtime;
pub mod salt;
pub mod stats_api;
pub mod tracker;
pub mod usb;
pub mod wire;

mod assembly;
pub mod caller;
mod control;
mod error;
pub mod export;
mod routes;
pub mod rules;
mod urlencoded;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

pub use account::AccountState;
pub use assembly::{Services, app, control_app};
pub use ca::{CaInfo, TlsInfo};
pub use control::{Maintenance, SiteAdmin, SiteInfo};
pub use dashboard::DashboardState;
pub use edge::{Edge, Transport, serve};
pub use error::{AdminError, ApiError, Code};
pub use export::{BodyWriter, ExportQuery, Exporter, Prepared, stream_prepared};
pub use goals_api::DefAdmin;
pub use realtime::{Commits, RealtimeState};
pub use routes::router;
pub use stats_api::StatsState;

use crate::ingest::Ingest;
use crate::metrics::{Gauges, Metrics};

/// Shared state of the public router.
#[derive(Clone)]
pub struct AppState {
    pub ingest: Ingest,
    pub metrics: Arc<Metrics>,
    /// Set when the store is open and the writer runs; cleared on shutdown.
    pub ready: Arc<AtomicBool>,
    /// Reads the gauges (queue depth, committed position) for `/metrics`.
    pub gauges: Arc<dyn Fn() -> Gauges + Send + Sync>,
    /// The accounts, whose API tokens with the `ingest` scope may send
    /// batches (`None`: only the configured ingest token).
    pub accounts: Option<Arc<hitvault_accounts::Accounts>>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("ready", &self.ready.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}
