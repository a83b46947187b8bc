//! Reading everything out for Takeout, and loading a Takeout back in.
//!
//! Export runs on a [`Reader`], a second connection to the same database
//! (DuckDB allows readers beside its one writer in a process): one read
//! transaction, so every table is one consistent snapshot while ingest
//! keeps committing (`export`). Import runs in one transaction on the
//! writer's connection ([`Importer`], `import`); at its end the staged
//! definitions and imported aggregates are merged into the instance's
//! (`merge`), and so are the engagements, once every hit has its id.
//!
//! This module holds what both directions share: the [`Reader`], the error,
//! the counts of an import.

mod export;
mod import;
mod merge;

use duckdb::Connection;

pub use export::{EXPORT_TABLES, ExportFilter};
pub use import::Importer;

/// A read-only connection for long reads beside the writer.
pub struct Reader {
    pub(crate) conn: Connection,
}

impl std::fmt::Debug for Reader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Reader")
    }
}

/// An export or import statement failed.
#[derive(Debug, thiserror::Error)]
pub enum TakeoutError {
    #[error("DuckDB: {0}")]
    Db(#[from] duckdb::Error),
    #[error("{0}")]
    Sink(String),
    #[error("{0}")]
    Invalid(String),
}

/// Counts of what an import changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImportStats {
    pub sites_added: u64,
    pub hits_added: u64,
    /// Of `hits_added`, those stored under a new id: the instance had given
    /// theirs to other hits.
    pub hits_renumbered: u64,
    pub hits_present: u64,
    pub props_added: u64,
    pub goals_added: u64,
    /// Goals already stored with the same name and content.
    pub goals_present: u64,
    pub funnels_added: u64,
    pub funnels_present: u64,
    /// Imported days (a site's rows of one day in `imported_days` and
    /// `imported_values`) the instance did not have.
    pub imported_days_added: u64,
    /// Imported days the instance had with other rows: replaced.
    pub imported_days_replaced: u64,
    /// Imported days the instance had with the same rows: left alone.
    pub imported_days_present: u64,
    /// Engagements stored, with the pageview they belong to.
    pub engagements_added: u64,
    /// Engagements the instance had already (the same id for the same
    /// pageview): left alone.
    pub engagements_present: u64,
    /// Goals and funnels whose name the instance already gives to a
    /// different definition: the instance's was kept. One sentence each.
    pub conflicts: Vec<String>,
}

/// `s` as an SQL string literal.
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}
