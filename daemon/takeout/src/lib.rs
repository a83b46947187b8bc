//! Takeout: the export format of hitvault, and reading it back.
//!
//! A Takeout is a directory holding eight tables (sites, hits, props, goals,
//! funnels, imported_days, imported_values, engagements; version 1 had the
//! first three, version 2 the first five, versions 3 and 4 the first seven) as data files in one format
//! (Parquet, CSV, JSON or NDJSON) and a `MANIFEST` (JSON) listing every file
//! with its table, row count, size and SHA-256. The manifest is written last,
//! under a temporary name that is renamed into place after every data file
//! and the directory were fsync'd: a directory without a `MANIFEST` is not a
//! Takeout, so an export killed half-way never passes [`verify`].
//!
//! The same Takeout also travels as one zip stream ([`zip`]): the data
//! files and the MANIFEST, written front to back.
//!
//! This crate knows files and Arrow record batches in the Takeout schema
//! ([`schema`]); it never opens the database: the binary moves batches between
//! the store and these writers and readers.

mod json;
pub mod manifest;
pub mod parallel;
pub mod read;
pub mod schema;
pub mod stream;
mod text;
pub mod write;
pub mod zip;

pub use manifest::{FileEntry, Filter, Manifest, VerifyError, read_manifest, verify};
pub use read::{ImportError, read_table};
pub use schema::{READ_VERSIONS, TAKEOUT_VERSION, Table};
pub use write::{ExportError, ExportWriter};

use std::fmt;
use std::str::FromStr;

/// The file format of a Takeout.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Parquet,
    Csv,
    /// One JSON array of objects per file.
    Json,
    /// One JSON object per line.
    Ndjson,
}

impl Format {
    pub const ALL: [Format; 4] = [Format::Parquet, Format::Csv, Format::Json, Format::Ndjson];

    /// File extension, also the name used on the command line.
    pub fn ext(self) -> &'static str {
        match self {
            Format::Parquet => "parquet",
            Format::Csv => "csv",
            Format::Json => "json",
            Format::Ndjson => "ndjson",
        }
    }

    /// Media type, for HTTP.
    pub fn media_type(self) -> &'static str {
        match self {
            Format::Parquet => "application/vnd.apache.parquet",
            Format::Csv => "text/csv; charset=utf-8",
            Format::Json => "application/json",
            Format::Ndjson => "application/x-ndjson",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.ext())
    }
}

impl FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Format::ALL
            .into_iter()
            .find(|f| f.ext() == s)
            .ok_or_else(|| format!("unknown format {s:?} (parquet, csv, json or ndjson)"))
    }
}

/// Parses a time bound: RFC 3339 (`2026-01-31T12:00:00Z`) or a date
/// (`2026-01-31`, midnight UTC). Returns microseconds since the epoch.
pub fn parse_time(s: &str) -> Result<i64, String> {
    if let Ok(t) = s.parse::<jiff::Timestamp>() {
        return Ok(t.as_microsecond());
    }
    if let Ok(d) = s.parse::<jiff::civil::Date>() {
        let t = d
            .to_datetime(jiff::civil::Time::midnight())
            .to_zoned_datetime(jiff::tz::TimeZone::UTC)
            .map_err(|e| format!("{s:?}: {e}"))?;
        return Ok(t.timestamp().as_microsecond());
    }
    Err(format!(
        "{s:?} is not a time: use RFC 3339 (2026-01-31T12:00:00Z) or a date (2026-01-31)"
    ))
}

/// Formats microseconds since the epoch as RFC 3339 UTC with six decimals.
pub fn format_time(micros: i64) -> String {
    let mut b = [0u8; 27];
    text::fmt_ts(micros, &mut b);
    String::from_utf8_lossy(&b).into_owned()
}
