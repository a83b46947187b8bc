//! Sites as the daemon serves them: the ones declared in the configuration,
//! then the ones added at run time (kept in the store). The daemon builds its
//! ingest registry from here, and `hitvault site` lists from here when no
//! daemon runs, so the two never disagree.
//!
//! A leaf beside `config`: the daemon and the CLI both use it.

use hitvault_core::sites::Sites;
use hitvault_server::SiteInfo;
use hitvault_store::{SiteRow, Store};

/// Builds the in-memory registry from the declared sites and the runtime ones.
pub fn registry(declared: &[(String, Vec<String>)], store: &Store) -> Result<Sites, String> {
    let mut sites = Sites::new();
    for (h, aliases) in declared {
        sites
            .add(h, aliases.clone())
            .map_err(|e| format!("site {h:?}: {e}"))?;
    }
    for row in store.sites().map_err(|e| e.to_string())? {
        if row.origin == "runtime"
            && let Err(e) = sites.add(&row.hostname, row.aliases.clone())
        {
            tracing::warn!(site = %row.hostname, error = %e, "a site added at run time conflicts; skipped");
        }
    }
    Ok(sites)
}

/// Sites as `site list` shows them: declared ones first, then runtime ones.
pub fn infos(rows: Vec<SiteRow>, declared: &[(String, Vec<String>)]) -> Vec<SiteInfo> {
    let mut out: Vec<SiteInfo> = declared
        .iter()
        .map(|(h, a)| SiteInfo {
            hostname: h.clone(),
            aliases: a.clone(),
            origin: "config".into(),
        })
        .collect();
    for row in rows {
        if row.origin == "runtime" {
            out.push(info(row));
        }
    }
    out
}

/// A stored site as the control API shows it.
pub fn info(row: SiteRow) -> SiteInfo {
    SiteInfo {
        hostname: row.hostname,
        aliases: row.aliases,
        origin: row.origin,
    }
}

/// Adds the runtime sites `rows` has and `registry` lacks; replaces the
/// registry if any were added.
pub fn add_runtime(registry: &std::sync::RwLock<std::sync::Arc<Sites>>, rows: Vec<SiteRow>) {
    let current = registry.read().unwrap_or_else(|p| p.into_inner()).clone();
    let mut next = (*current).clone();
    let mut added = 0;
    for row in rows {
        if row.origin == "runtime" && next.resolve(&row.hostname).is_none() {
            match next.add(&row.hostname, row.aliases.clone()) {
                Ok(()) => added += 1,
                Err(e) => {
                    tracing::warn!(site = %row.hostname, error = %e, "an imported site conflicts; not served")
                }
            }
        }
    }
    if added > 0 {
        *registry.write().unwrap_or_else(|p| p.into_inner()) = std::sync::Arc::new(next);
    }
}
