//! Every route the daemon serves, assembled here and only here, each under
//! the access rule of its kind:
//!
//! | kind | routes | who may call |
//! | --- | --- | --- |
//! | public | tracker, ingest, health, metrics ([`crate::routes`]), `/ca.crt` ([`crate::ca`]) | anyone |
//! | sign-in | set-up, sign-in, sign-out, the account page, the assets ([`crate::account`]) | requests to one of the appliance's names; the account page needs a session |
//! | JSON API | stats, goals and definitions, realtime, Takeout, the audit export, OpenAPI | requests to one of the appliance's names ([`hosts::gate`]) that [`access::api_gate`] admits: loopback, or a session |
//! | dashboard | the pages ([`crate::dashboard`]), the audit log ([`crate::audit`]) | requests to one of the appliance's names ([`hosts::gate`]) that the dashboard's gate admits: the same, else a redirect to sign in |
//! | control | sites, users, Takeout, backup, prune, imports, the audit log ([`crate::control`], [`crate::account::control`], [`crate::audit`]) | whoever can open the control socket |
//!
//! [`app`] is the public listener (the first three kinds); [`control_app`]
//! the control socket. The modules only list their routes; the layer of a
//! kind is applied once, here. A new route goes into the module of its
//! surface and into the list of its kind below: there is no way to serve
//! it without saying who may call it.
//!
//! Every route of both carries the audit log as a request extension
//! ([`audit::Audit`]); the control socket's also carry
//! [`audit::ControlSocket`], so their entries name the CLI as the actor.

use std::sync::Arc;

use axum::Router;

use crate::account::{self, AccountState};
use crate::ca::TlsInfo;
use crate::dashboard::{self, DashboardState};
use crate::hosts::{self, Hostnames};
use crate::{
    AppState, Exporter, Maintenance, SiteAdmin, access, audit, ca, control, export, goals_api,
    realtime, routes, stats_api,
};

/// What the public listener serves from.
pub struct Services {
    /// Accounts and sessions: the sign-in pages and every gate.
    pub accounts: AccountState,
    /// Ingest, the tracker, health and metrics.
    pub public: AppState,
    /// The dashboard's state: the stats readers, the realtime feed and the
    /// definitions writer, which the JSON API reads and writes too.
    pub dashboard: DashboardState,
    /// Runs Takeout exports (`GET /api/v1/takeout`).
    pub exporter: Arc<dyn Exporter>,
    /// The names the appliance answers to (setting `hostnames`).
    pub hostnames: Hostnames,
    /// The listener's TLS: its mode and the local CA (`/ca.crt`).
    pub tls: TlsInfo,
    /// The audit log, which the routes write and the admins read.
    pub audit: Arc<hitvault_accounts::AuditLog>,
}

/// The public listener's routes: every kind but control.
pub fn app(s: Services) -> Router {
    let Services {
        accounts,
        public,
        dashboard: state,
        exporter,
        hostnames,
        tls,
        audit: log,
    } = s;
    // Anyone.
    let open = routes::router(public).merge(ca::routes(tls));
    // Only requests addressed to the appliance's own names (DNS rebinding).
    let named = axum::middleware::from_fn_with_state(hostnames, hosts::gate);
    // What the access layer admits: loopback, or a session.
    let api = Router::new()
        .merge(stats_api::routes(state.stats.clone()))
        .merge(goals_api::routes(state.stats.clone(), state.defs.clone()))
        .merge(realtime::routes(state.realtime.clone()))
        .merge(export::routes(exporter))
        .merge(audit::read::api_routes())
        .layer(axum::middleware::from_fn_with_state(
            accounts.clone(),
            access::api_gate,
        ))
        .layer(named.clone());
    // What the dashboard's gate admits: the same, or a redirect to sign in.
    let pages = dashboard::routes(state)
        .merge(audit::read::page_routes())
        .layer(axum::middleware::from_fn_with_state(
            accounts.clone(),
            dashboard::gate,
        ))
        .layer(named.clone());
    // Anyone addressing one of our names: sign-in, set-up, the account
    // page (which checks its session itself) and the assets.
    let sign_in = account::pages::routes(accounts.clone())
        .merge(account::passkey::routes(accounts.clone()))
        .merge(dashboard::asset_routes())
        .layer(axum::middleware::from_fn_with_state(
            accounts,
            account::pages::layer,
        ))
        .layer(named);
    open.merge(api)
        .merge(pages)
        .merge(sign_in)
        .layer(axum::Extension(audit::Audit(log)))
}

/// The control socket's routes. The socket is the gate: mode 0600 inside
/// the 0700 data dir, so whoever can open it owns the data anyway.
pub fn control_app(
    admin: Arc<dyn SiteAdmin>,
    exporter: Arc<dyn Exporter>,
    maintenance: Arc<dyn Maintenance>,
    accounts: Arc<hitvault_accounts::Accounts>,
    audit: Arc<hitvault_accounts::AuditLog>,
) -> Router {
    control::routes(admin, exporter, maintenance)
        .merge(account::control::routes(accounts))
        .merge(audit::read::control_routes())
        .layer(axum::Extension(audit::ControlSocket))
        .layer(axum::Extension(audit::Audit(audit)))
}
