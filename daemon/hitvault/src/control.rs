//! What the CLI and the daemon say to each other over the control socket,
//! beyond the server crate's own types: the header that describes a backup
//! snapshot, the counts of an import, and how an export query filters. Both sides serialise and read them
//! through this one module, so they cannot drift apart.
//!
//! A leaf: the daemon's adapters write these, the CLI reads them.

use hitvault_server::ExportQuery;
use hitvault_store::{ExportFilter, ImportStats, SnapshotInfo};
use serde::{Deserialize, Serialize};

/// Header of the reply to `POST /backup` that describes the snapshot.
pub const SNAPSHOT_HEADER: &str = "x-hitvault-backup";

/// The JSON in [`SNAPSHOT_HEADER`]: what the streamed database copy holds.
#[derive(Debug, Serialize, Deserialize)]
pub struct SnapshotHeader {
    pub schema_version: u32,
    pub committed_seq: u64,
    pub max_hit_id: u64,
    pub hits: u64,
    pub props: u64,
    pub sites: u64,
    pub bytes: u64,
}

impl From<(&SnapshotInfo, u64)> for SnapshotHeader {
    fn from((i, bytes): (&SnapshotInfo, u64)) -> Self {
        SnapshotHeader {
            schema_version: i.schema_version,
            committed_seq: i.committed_seq,
            max_hit_id: i.max_hit_id,
            hits: i.hits,
            props: i.props,
            sites: i.sites,
            bytes,
        }
    }
}

/// An export's filter from its query (the CLI's flags or the daemon's
/// query string); a bad time is the caller's to fix.
pub fn filter_of(q: &ExportQuery) -> Result<ExportFilter, String> {
    Ok(ExportFilter {
        sites: q.sites.clone(),
        from_us: q
            .from
            .as_deref()
            .map(hitvault_takeout::parse_time)
            .transpose()?,
        until_us: q
            .until
            .as_deref()
            .map(hitvault_takeout::parse_time)
            .transpose()?,
    })
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
        "engagements_added": s.engagements_added,
        "engagements_present": s.engagements_present,
        "conflicts": s.conflicts,
    })
}

/// [`stats_json`] read back (a missing count reads as 0).
pub fn stats_of_json(v: &serde_json::Value) -> ImportStats {
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
        engagements_added: n("engagements_added"),
        engagements_present: n("engagements_present"),
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

#[cfg(test)]
mod tests {
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
            engagements_added: 13,
            engagements_present: 14,
            conflicts: vec!["c".into()],
        };
        assert_eq!(super::stats_of_json(&super::stats_json(&s)), s);
    }
}
