//! The Takeout schema: eight tables (three in version 1, five in version 2,
//! seven in versions 3 and 4), their columns and Arrow types. `docs/reference/takeout-format.md`
//! documents each column; this is the one definition the writers, the
//! readers and the store's export queries are checked against.
//!
//! It also holds the rest of the layout that both sides share: the name of
//! a table's data file ([`file_name`]), how the MANIFEST spells a checksum
//! ([`hex`]), and [`conform`], which fits a batch to its table's schema.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::TimestampMicrosecondType;
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};

use crate::Format;

/// Version of the Takeout layout (tables, columns, types, MANIFEST) that
/// exports write. Independent of the database's migrations. Version 2 added
/// the `goals` and `funnels` tables, version 3 `imported_days` and
/// `imported_values`, version 4 the manifest's `hit_ids`, version 5
/// `engagements`; readers take every version in [`READ_VERSIONS`] and
/// refuse any other.
pub const TAKEOUT_VERSION: u32 = 5;

/// Layout versions this hitvault reads.
pub const READ_VERSIONS: [u32; 5] = [1, 2, 3, 4, 5];

/// Largest `engagements.engaged_ms`: one day, as ingest takes it.
pub const MAX_ENGAGED_MS: u64 = 86_400_000;
/// Largest `engagements.scroll_depth`, in percent.
pub const MAX_SCROLL_DEPTH: u16 = 100;

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
    /// History imported from another product: per site and day, the
    /// overview's totals (version 3 on).
    ImportedDays,
    /// History imported from another product: per site, day, dimension and
    /// value, visitors and a count (version 3 on).
    ImportedValues,
    /// Time on page and scroll depth reported for a pageview: (id, hit
    /// id, engaged ms, scroll depth) (version 5 on).
    Engagements,
}

impl Table {
    /// In the order they are exported and imported (the current version's).
    pub const ALL: [Table; 8] = [
        Table::Sites,
        Table::Hits,
        Table::Props,
        Table::Goals,
        Table::Funnels,
        Table::ImportedDays,
        Table::ImportedValues,
        Table::Engagements,
    ];

    /// The tables of a layout version, in order; `None` for a version this
    /// hitvault does not read.
    pub fn of_version(version: u32) -> Option<&'static [Table]> {
        match version {
            1 => Some(&Table::ALL[..3]),
            2 => Some(&Table::ALL[..5]),
            3 | 4 => Some(&Table::ALL[..7]),
            5 => Some(&Table::ALL),
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
            Table::ImportedDays => "imported_days",
            Table::ImportedValues => "imported_values",
            Table::Engagements => "engagements",
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
            Table::ImportedDays => imported_days_schema(),
            Table::ImportedValues => imported_values_schema(),
            Table::Engagements => engagements_schema(),
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

/// Non-NULL counts.
fn u64s(names: &[&str]) -> Vec<Field> {
    names
        .iter()
        .map(|n| Field::new(*n, DataType::UInt64, false))
        .collect()
}

fn imported_days_schema() -> SchemaRef {
    let mut f = vec![s("site", false), Field::new("day", DataType::Date32, false)];
    f.extend(u64s(&[
        "visitors",
        "pageviews",
        "events",
        "visits",
        "bounces",
        "visit_duration_s",
    ]));
    Arc::new(Schema::new(f))
}

fn imported_values_schema() -> SchemaRef {
    let mut f = vec![
        s("site", false),
        Field::new("day", DataType::Date32, false),
        s("dim", false),
        s("value", true),
    ];
    f.extend(u64s(&["visitors", "count"]));
    Arc::new(Schema::new(f))
}

fn engagements_schema() -> SchemaRef {
    let mut f = u64s(&["id", "hit_id", "engaged_ms"]);
    f.push(Field::new("scroll_depth", DataType::UInt16, true));
    Arc::new(Schema::new(f))
}

/// Allowed values of `imported_values.dim`: the stats API's dimension names.
pub const IMPORTED_DIMS: [&str; 17] = [
    "page",
    "entry_page",
    "exit_page",
    "source",
    "referrer",
    "utm_source",
    "utm_medium",
    "utm_campaign",
    "utm_term",
    "utm_content",
    "country",
    "browser",
    "os",
    "device",
    "language",
    "screen",
    "event",
];

/// Allowed values of `goals.kind` and `funnels.kind`.
pub const GOAL_KINDS: [&str; 2] = ["event", "page"];

/// Allowed values of `hits.kind`.
pub const KINDS: [&str; 2] = ["pageview", "event"];
/// Allowed values of `hits.device` (NULL: unknown).
pub const DEVICES: [&str; 3] = ["desktop", "mobile", "tablet"];

/// The data file name of a table: `hits.parquet`, `props.ndjson`, ...
pub fn file_name(table: Table, format: Format) -> String {
    format!("{}.{}", table.name(), format.ext())
}

/// Lower-case hexadecimal of `b` (SHA-256 sums in manifests).
pub fn hex(b: &[u8]) -> String {
    use std::fmt::Write as _;
    b.iter()
        .fold(String::with_capacity(b.len() * 2), |mut s, x| {
            let _ = write!(s, "{x:02x}");
            s
        })
}

/// A batch that does not fit its table's schema.
#[derive(Debug, thiserror::Error)]
#[error("{table}: column {column} has type {found}, the Takeout schema says {expected}")]
pub struct SchemaMismatch {
    pub table: &'static str,
    pub column: String,
    pub found: String,
    pub expected: String,
}

/// Conforms a batch from the store to the table's schema: same columns in the
/// same order and types; timestamps are relabelled UTC (they are UTC instants).
pub fn conform(table: Table, batch: &RecordBatch) -> Result<RecordBatch, SchemaMismatch> {
    let schema = table.schema();
    let mut cols: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
    for (field, col) in schema.fields().iter().zip(batch.columns()) {
        let col = match (field.data_type(), col.data_type()) {
            (a, b) if a == b => col.clone(),
            (
                DataType::Timestamp(TimeUnit::Microsecond, _),
                DataType::Timestamp(TimeUnit::Microsecond, _),
            ) => Arc::new(
                col.as_primitive::<TimestampMicrosecondType>()
                    .clone()
                    .with_timezone("UTC"),
            ),
            (expected, found) => {
                return Err(SchemaMismatch {
                    table: table.name(),
                    column: field.name().clone(),
                    found: found.to_string(),
                    expected: expected.to_string(),
                });
            }
        };
        cols.push(col);
    }
    if batch.num_columns() != schema.fields().len() {
        return Err(SchemaMismatch {
            table: table.name(),
            column: format!("count {}", batch.num_columns()),
            found: batch.num_columns().to_string(),
            expected: schema.fields().len().to_string(),
        });
    }
    RecordBatch::try_new(schema, cols).map_err(|e| SchemaMismatch {
        table: table.name(),
        column: "*".into(),
        found: e.to_string(),
        expected: "the Takeout schema".into(),
    })
}
