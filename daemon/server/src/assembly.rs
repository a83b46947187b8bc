//! Every route the daemon serves, assembled here and only here, each under
//! the access rule of its kind:
//!
//! | kind | routes | who may call |
//! | --- | --- | --- |
//! | public | tracker, ingest, health, metrics ([`crate::routes`]), `/ca.crt` ([`crate::ca`]) | anyone |
//! | sign-in | set-up, sign-in, sign-out, the account page, the assets ([`crate::account`]); a share link's page `/share/{secret}` ([`dashboard::share`]) | requests to one of the appliance's names; the account page needs a session; a share link's page needs its secret (and password) |
//! | JSON API | stats, goals and definitions, realtime, Takeout, the audit export, OpenAPI | requests to one of the appliance's names ([`hosts::gate`]) that [`access::api_gate`] admits: loopback, a session, or an API token |
//! | dashboard | the pages ([`crate::dashboard`]), a site's members and share links ([`dashboard::members`]), the audit log ([`crate::audit`]), the USB Takeouts ([`crate::usb`]) | requests to one of the appliance's names ([`hosts::gate`]) that the dashboard's gate admits: the same but tokens, else a redirect to sign in |
//! | control | sites, users, tokens, Takeout, backup, prune, imports, the audit log, the USB Takeouts ([`crate::control`], [`crate::account::control`], [`crate::audit`], [`crate::usb`]) | whoever can open the control socket |
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

use std::sync::{Arc, OnceLock};

use axum::Router;
use serde_json::json;

use crate::account::{self, AccountState};
use crate::ca::TlsInfo;
use crate::dashboard::{self, DashboardState};
use crate::hosts::{self, Hostnames};
use crate::rules::{self, Face, Need, Routes, Rule};
use crate::{
    AppState, Exporter, Maintenance, SiteAdmin, access, audit, ca, cluster, control, export,
    goals_api, realtime, routes, stats_api, usb,
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
    /// The control API's sites and maintenance, which admins also reach
    /// over the network under `/api/v1/control` ([`control_routes`]).
    pub sites: Arc<dyn SiteAdmin>,
    pub maintenance: Arc<dyn Maintenance>,
    /// The record of USB Takeouts, which the control API writes and the
    /// admins read ([`usb`]).
    pub usb: Arc<usb::Runs>,
    /// The cluster node, if this daemon is one ([`cluster`]).
    pub cluster: cluster::Cluster,
}

/// The public listener's routes: every kind but control.
pub fn app(s: Services) -> Router {
    let (router, table) = app_with_table(s);
    let known = rules::known_set(&table);
    router.route_layer(axum::middleware::from_fn_with_state(known, rules::known))
}

/// [`app`] before its last layer, and the table of every route's rule.
fn app_with_table(s: Services) -> (Router, Vec<Rule>) {
    let Services {
        accounts,
        public,
        dashboard: state,
        exporter,
        hostnames,
        tls,
        audit: log,
        sites,
        maintenance,
        usb: usb_runs,
        cluster: cluster_node,
    } = s;
    let control = control_routes(
        sites,
        exporter.clone(),
        maintenance,
        accounts.accounts.clone(),
    );
    // Filled once every route is in: what `GET /api/v1/routes` answers.
    let table: Arc<OnceLock<Vec<Rule>>> = Arc::new(OnceLock::new());
    // Anyone.
    let open = routes::routes(public).merge(ca::routes(tls));
    // Only requests addressed to the appliance's own names (DNS rebinding).
    let named = axum::middleware::from_fn_with_state(hostnames, hosts::gate);
    // What the access layer admits: loopback, a session, or a token.
    let served = table.clone();
    let api = stats_api::routes(state.stats.clone())
        .merge(goals_api::routes(state.stats.clone(), state.defs.clone()))
        .merge(realtime::routes(state.realtime.clone()))
        .merge(export::routes(exporter))
        .merge(audit::read::api_routes())
        .nest("/api/v1/control", control)
        .merge(
            Routes::new(Face::Json).get("/api/v1/routes", Need::Admitted, move || {
                let served = served.clone();
                async move { axum::Json(json!({ "routes": served.get() })) }
            }),
        )
        .map(|r| {
            r.layer(axum::middleware::from_fn_with_state(
                accounts.clone(),
                access::api_gate,
            ))
            .layer(named.clone())
        });
    // What the dashboard's gate admits: the same but tokens, or a redirect
    // to sign in.
    let pages = dashboard::routes(state.clone())
        .merge(dashboard::members::routes(state.clone(), accounts.clone()))
        .merge(audit::read::page_routes())
        .merge(usb::page_routes())
        .merge(cluster::page_routes())
        .map(|r| {
            r.layer(axum::middleware::from_fn_with_state(
                accounts.clone(),
                dashboard::gate,
            ))
            .layer(named.clone())
        });
    // Anyone addressing one of our names: sign-in, set-up, the account
    // pages (which need a session), the assets, and share links' pages
    // (which check their secret).
    let sign_in = account::pages::routes(accounts.clone())
        .merge(account::passkey::routes(accounts.clone()))
        .merge(dashboard::asset_routes())
        .merge(dashboard::share::routes(state, accounts.clone()))
        .map(|r| {
            r.layer(axum::middleware::from_fn_with_state(
                accounts,
                account::pages::layer,
            ))
            .layer(named)
        });
    let (router, rules) = open.merge(api).merge(pages).merge(sign_in).into_parts();
    let _ = table.set(rules.clone());
    (
        router
            .layer(axum::Extension(audit::Audit(log)))
            .layer(axum::Extension(usb::UsbTakeouts(usb_runs)))
            .layer(axum::Extension(cluster_node)),
        rules,
    )
}

/// The control socket's routes. The socket is the gate: mode 0600 inside
/// the 0700 data dir, so whoever can open it owns the data anyway.
pub fn control_app(
    admin: Arc<dyn SiteAdmin>,
    exporter: Arc<dyn Exporter>,
    maintenance: Arc<dyn Maintenance>,
    accounts: Arc<hitvault_accounts::Accounts>,
    audit: Arc<hitvault_accounts::AuditLog>,
    usb_runs: Arc<usb::Runs>,
    cluster_node: cluster::Cluster,
) -> Router {
    control_routes(admin, exporter, maintenance, accounts)
        .into_parts()
        .0
        // Whoever opens the socket is the operator.
        .layer(axum::Extension(crate::caller::Caller::Local))
        .layer(axum::Extension(audit::ControlSocket))
        .layer(axum::Extension(audit::Audit(audit)))
        .layer(axum::Extension(usb::UsbTakeouts(usb_runs)))
        .layer(axum::Extension(cluster_node))
}

/// The control API: sites, users, tokens, Takeout, backup, prune, imports,
/// the audit log and the record of USB Takeouts, every route for an instance admin. Served on the
/// socket (the operator) and under `/api/v1/control` of the JSON API (an
/// admin's session, or an admin's token with the admin scope and no sites).
fn control_routes(
    admin: Arc<dyn SiteAdmin>,
    exporter: Arc<dyn Exporter>,
    maintenance: Arc<dyn Maintenance>,
    accounts: Arc<hitvault_accounts::Accounts>,
) -> Routes {
    control::routes(admin.clone(), exporter, maintenance)
        .merge(account::control::routes(accounts, admin))
        .merge(audit::read::control_routes())
        .merge(usb::control_routes())
        .merge(cluster::control_routes())
}
