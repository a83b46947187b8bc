//! The Takeout schema: three tables, their columns and Arrow types. The
//! README documents each column; this is the one definition the writers,
//! the readers and the store's export queries are checked against.

use std::sync::Arc;

use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};

/// Version of the Takeout layout (tables, columns, types, MANIFEST). Import
/// refuses any other. Independent of the database's migrations.
pub const TAKEOUT_VERSION: u32 = 1;

/// A table of a Takeout, one data file each.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Table {
    /// The sites the exported hits belong to.
    Sites,
    /// One row per pageview or event.
    Hits,
    /// Custom properties of events: (hit id, key, value).
    Props,
}

impl Table {
    /// In the order they are exported and imported.
    pub const ALL: [Table; 3] = [Table::Sites, Table::Hits, Table::Props];

    pub fn name(self) -> &'static str {
        match self {
            Table::Sites => "sites",
            Table::Hits => "hits",
            Table::Props => "props",
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

/// Allowed values of `hits.kind`.
pub const KINDS: [&str; 2] = ["pageview", "event"];
/// Allowed values of `hits.device` (NULL: unknown).
pub const DEVICES: [&str; 3] = ["desktop", "mobile", "tablet"];
