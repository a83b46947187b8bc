//! Retention: finding a site's hits older than a cutoff, and deleting
//! exactly those in one transaction.
//!
//! Archiving comes first and is the caller's job (the binary writes a
//! Takeout from a [`crate::Reader`] export with the same site and cutoff);
//! [`Store::delete_expired`] then removes the rows only if they are still
//! exactly what was counted before the archive was written, so nothing that
//! is not in the archive is ever deleted. The writer runs both steps with no
//! append in between (it is the one writer).

use crate::{QueryError, Reader, Store};

/// A site's rows older than a cutoff.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expired {
    pub site: String,
    pub hits: u64,
    pub props: u64,
    /// Microseconds since the epoch of the oldest and newest expired hit.
    pub first_us: Option<i64>,
    pub last_us: Option<i64>,
}

/// Deleting expired rows failed; nothing was deleted.
#[derive(Debug, thiserror::Error)]
pub enum PruneError {
    #[error("DuckDB: {0}")]
    Db(#[from] duckdb::Error),
    #[error(
        "site {site}: {found_hits} hits and {found_props} props are older than the cutoff now, \
         but {archived_hits} and {archived_props} were archived; nothing deleted"
    )]
    Changed {
        site: String,
        found_hits: u64,
        found_props: u64,
        archived_hits: u64,
        archived_props: u64,
    },
}

const HITS_BEFORE: &str = "FROM hits h JOIN sites s ON s.id = h.site_id \
     WHERE s.hostname = ? AND h.ts < make_timestamp(?::BIGINT)::TIMESTAMPTZ";
const PROPS_BEFORE: &str = "FROM hit_props p JOIN sites s ON s.id = p.site_id \
     WHERE s.hostname = ? AND p.ts < make_timestamp(?::BIGINT)::TIMESTAMPTZ";

fn expired(conn: &duckdb::Connection, site: &str, before_us: i64) -> duckdb::Result<Expired> {
    let (hits, first_us, last_us) = conn.query_row(
        &format!("SELECT count(*), epoch_us(min(h.ts)), epoch_us(max(h.ts)) {HITS_BEFORE}"),
        duckdb::params![site, before_us],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;
    let props = conn.query_row(
        &format!("SELECT count(*) {PROPS_BEFORE}"),
        duckdb::params![site, before_us],
        |r| r.get(0),
    )?;
    Ok(Expired {
        site: site.to_owned(),
        hits,
        props,
        first_us,
        last_us,
    })
}

impl Reader {
    /// The hits of `site` (hostname) before `before_us`, and their props.
    pub fn expired(&self, site: &str, before_us: i64) -> Result<Expired, QueryError> {
        Ok(expired(&self.conn, site, before_us)?)
    }
}

impl Store {
    /// Deletes the hits of `site` before `before_us` and their props, in one
    /// transaction, if they are exactly `archived` (counted before the
    /// archive was written); otherwise deletes nothing.
    pub fn delete_expired(
        &mut self,
        site: &str,
        before_us: i64,
        archived: &Expired,
    ) -> Result<(), PruneError> {
        let c = &self.conn;
        c.execute_batch("BEGIN TRANSACTION")?;
        let run = || -> Result<(), PruneError> {
            let now = expired(c, site, before_us)?;
            if now.hits != archived.hits || now.props != archived.props {
                return Err(PruneError::Changed {
                    site: site.to_owned(),
                    found_hits: now.hits,
                    found_props: now.props,
                    archived_hits: archived.hits,
                    archived_props: archived.props,
                });
            }
            let p = c.execute(
                "DELETE FROM hit_props WHERE site_id = (SELECT id FROM sites WHERE hostname = ?) \
                 AND ts < make_timestamp(?::BIGINT)::TIMESTAMPTZ",
                duckdb::params![site, before_us],
            )?;
            let h = c.execute(
                "DELETE FROM hits WHERE site_id = (SELECT id FROM sites WHERE hostname = ?) \
                 AND ts < make_timestamp(?::BIGINT)::TIMESTAMPTZ",
                duckdb::params![site, before_us],
            )?;
            // Engagements carry their pageview's time: they go with it.
            c.execute(
                "DELETE FROM engagements WHERE site_id = (SELECT id FROM sites WHERE hostname = ?) \
                 AND ts < make_timestamp(?::BIGINT)::TIMESTAMPTZ",
                duckdb::params![site, before_us],
            )?;
            if h as u64 != archived.hits || p as u64 != archived.props {
                return Err(PruneError::Changed {
                    site: site.to_owned(),
                    found_hits: h as u64,
                    found_props: p as u64,
                    archived_hits: archived.hits,
                    archived_props: archived.props,
                });
            }
            Ok(())
        };
        match run() {
            Ok(()) => {
                c.execute_batch("COMMIT")?;
                self.changes.any();
                Ok(())
            }
            Err(e) => {
                let _ = c.execute_batch("ROLLBACK");
                Err(e)
            }
        }
    }
}
