//! The names of what people hold: roles on a site and the scopes of API
//! tokens (what they allow is [`crate::rights`]).

use serde::{Deserialize, Serialize};

/// A user's role on one site; each includes the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SiteRole {
    Viewer,
    Editor,
    Owner,
}

impl SiteRole {
    pub const ALL: [SiteRole; 3] = [SiteRole::Viewer, SiteRole::Editor, SiteRole::Owner];

    pub fn as_str(self) -> &'static str {
        match self {
            SiteRole::Viewer => "viewer",
            SiteRole::Editor => "editor",
            SiteRole::Owner => "owner",
        }
    }

    pub fn parse(s: &str) -> Option<SiteRole> {
        SiteRole::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

/// What an API token may be used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Scope {
    /// Read numbers: the stats API, goals and funnels, the realtime stream.
    #[serde(rename = "stats:read")]
    StatsRead,
    /// Send hits to `/api/ingest/batch`.
    #[serde(rename = "ingest")]
    Ingest,
    /// Take data out: Takeout over HTTP.
    #[serde(rename = "export")]
    Export,
    /// Change things: definitions, members, and (for an admin's token)
    /// users, sites and the control API.
    #[serde(rename = "admin")]
    Admin,
}

impl Scope {
    pub const ALL: [Scope; 4] = [Scope::StatsRead, Scope::Ingest, Scope::Export, Scope::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::StatsRead => "stats:read",
            Scope::Ingest => "ingest",
            Scope::Export => "export",
            Scope::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|r| r.as_str() == s)
    }
}
