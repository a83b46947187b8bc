//! Numbered, embedded schema migrations.
//!
//! Each migration runs once, in order, inside its own transaction, and is
//! recorded in `schema_migrations`. A database written by a newer binary (a
//! version above [`SCHEMA_VERSION`]) is refused rather than misread.

use duckdb::Connection;

use crate::OpenError;

/// (version, name, SQL). Versions are consecutive from 1; never edit a shipped one.
pub const MIGRATIONS: &[(u32, &str, &str)] = &[
    (1, "initial", include_str!("../migrations/0001_initial.sql")),
    (
        2,
        "goals_funnels_rollups",
        include_str!("../migrations/0002_goals_funnels_rollups.sql"),
    ),
    (
        3,
        "imported",
        include_str!("../migrations/0003_imported.sql"),
    ),
    (
        4,
        "engagements",
        include_str!("../migrations/0004_engagements.sql"),
    ),
    (
        5,
        "sessions",
        include_str!("../migrations/0005_sessions.sql"),
    ),
    (6, "cluster", include_str!("../migrations/0006_cluster.sql")),
];

/// The schema version this binary writes.
pub const SCHEMA_VERSION: u32 = MIGRATIONS[MIGRATIONS.len() - 1].0;

pub(crate) fn apply(conn: &Connection) -> Result<(), OpenError> {
    let boot = |source| OpenError::Migration {
        version: 0,
        name: "schema_migrations",
        source,
    };
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version    INTEGER PRIMARY KEY,
             name       VARCHAR NOT NULL,
             applied_at TIMESTAMPTZ NOT NULL
         )",
    )
    .map_err(boot)?;
    let current: u32 = conn
        .query_row(
            "SELECT coalesce(max(version), 0) FROM schema_migrations",
            [],
            |r| r.get(0),
        )
        .map_err(boot)?;
    if current > SCHEMA_VERSION {
        return Err(OpenError::TooNew {
            found: current,
            known: SCHEMA_VERSION,
        });
    }
    for &(version, name, sql) in MIGRATIONS.iter().filter(|m| m.0 > current) {
        let fail = |source| OpenError::Migration {
            version,
            name,
            source,
        };
        conn.execute_batch("BEGIN TRANSACTION").map_err(fail)?;
        let run = conn.execute_batch(sql).and_then(|_| {
            if version == 5 {
                // Every stored hit gets its session's number (the rule is
                // code, `crate::sessions`, not this migration's text).
                crate::sessions::renumber(conn, crate::sessions::Keys::Unnumbered)?;
            }
            conn.execute(
                "INSERT INTO schema_migrations VALUES (?, ?, now())",
                duckdb::params![version, name],
            )
            .map(|_| ())
        });
        match run {
            Ok(()) => conn.execute_batch("COMMIT").map_err(fail)?,
            Err(e) => {
                let _ = conn.execute_batch("ROLLBACK");
                return Err(fail(e));
            }
        }
        tracing::info!(version, name, "applied schema migration");
    }
    Ok(())
}
