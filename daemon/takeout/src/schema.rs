//! The Takeout schema: five tables (three in version 1), their columns and
//! Arrow types. The README documents each column; this is the one definition
//! the writers, the readers and the store's export queries are checked against.

use std::sync::Arc;

use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};

/// Version of the Takeout layout (tables, columns, types, MANIFEST) that
/// exports write. Independent of the database's migrations. Version 2 added
/// the `goals` and `funnels` tables; readers take every version in
/// [`READ_VERSIONS`] and refuse any other.
pub const TAKEOUT_VERSION: u32 = 2;

/// Layout versions this hitvault reads.
pub const READ_VERSIONS: [u32; 2] = [1, 2];

/// A table of a Takeout, one data file each.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Table {
    /// The sites the exported hits belong to.
    Sites,
    /// One row per pageview or event.
    Hits,
    /// Custom properties of events: (hit id, key, value).
    Props,
    /// Goal definitions of the exported sites (version 2 on).
    Goals,
    /// Funnel definitions of the exported sites, one row per step (version 2 on).
    Funnels,
}

impl Table {
    /// In the order they are exported and imported (the current version's).
    pub const ALL: [Table; 5] = [
        Table::Sites,
        Table::Hits,
        Table::Props,
        Table::Goals,
        Table::Funnels,
    ];

    /// The tables of a layout version, in order; `None` for a version this
    /// hitvault does not read.
    pub fn of_version(version: u32) -> Option<&'static [Table]> {
        match version {
            1 => Some(&Table::ALL[..3]),
            2 => Some(&Table::ALL),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Table::Sites => "sites",
            Table::Hits => "hits",
            Table::Props => "props",
            Table::Goals => "goals",
            Table::Funnels => "funnels",
        }
    }

    pub fn from_name(s: &str) -> Option<Table> {
        Table::ALL.into_iter().find(|t| t.name() == s)
    }

    /// The Arrow schema of this table's files.
    pub fn schema(self) -> SchemaRef {
        match self {
            Table::Sites => sites_schema(),
            Table::Hits => hits_schema(),
            Table::Props => props_schema(),
            Table::Goals => goals_schema(),
            Table::Funnels => funnels_schema(),
        }
    }
}

/// UTC instant, microsecond precision (Parquet: TIMESTAMP(MICROS, isAdjustedToUTC=true)).
pub fn ts_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

fn s(name: &str, nullable: bool) -> Field {
    Field::new(name, DataType::Utf8, nullable)
}

fn sites_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        s("hostname", false),
        s("aliases", false),
        s("origin", false),
        Field::new("created_at", ts_type(), false),
    ]))
}

fn hits_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::UInt64, false),
        s("site", false),
        Field::new("ts", ts_type(), false),
        s("kind", false),
        s("name", false),
        s("path", false),
        s("referrer", true),
        s("source", true),
        s("utm_source", true),
        s("utm_medium", true),
        s("utm_campaign", true),
        s("utm_term", true),
        s("utm_content", true),
        s("browser", true),
        s("browser_version", true),
        s("os", true),
        s("os_version", true),
        s("device", true),
        s("country", true),
        s("language", true),
        Field::new("screen_width", DataType::UInt16, true),
        Field::new("visitor", DataType::UInt64, false),
    ]))
}

fn props_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::UInt64, false),
        s("key", false),
        s("value", false),
    ]))
}

fn goals_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        s("site", false),
        s("name", false),
        s("kind", false),
        s("value", false),
        Field::new("created_at", ts_type(), false),
    ]))
}

fn funnels_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        s("site", false),
        s("name", false),
        Field::new("step", DataType::UInt16, false),
        s("kind", false),
        s("value", false),
        Field::new("created_at", ts_type(), false),
    ]))
}

/// Allowed values of `goals.kind` and `funnels.kind`.
pub const GOAL_KINDS: [&str; 2] = ["event", "page"];

/// Allowed values of `hits.kind`.
pub const KINDS: [&str; 2] = ["pageview", "event"];
/// Allowed values of `hits.device` (NULL: unknown).
pub const DEVICES: [&str; 3] = ["desktop", "mobile", "tablet"];
