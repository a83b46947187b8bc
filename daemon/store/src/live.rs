//! Small reads for the dashboard beside the stats engine: the sites with
//! their recent totals, one site by name, and the realtime numbers (the last
//! minutes of a site, as the realtime stream and the overview's live tile
//! show them).
//!
//! These queries never derive sessions: they count hits and distinct
//! visitors over a few minutes, so they stay cheap however large the store
//! is (the `hits` rows of a site are found by `site_id` and `ts`).

use duckdb::{Connection, params};
use jiff::Timestamp;

use crate::{QueryError, SiteRow};

/// Visitors seen in this many minutes are "live".
pub const LIVE_MINUTES: i64 = 5;
/// The realtime view covers this many minutes.
pub const RECENT_MINUTES: i64 = 30;

/// A reader for the dashboard's small queries, on its own connection.
pub struct LiveStats {
    conn: Connection,
}

/// A site with its totals of the last 30 days.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SiteSummary {
    pub site: SiteRow,
    pub visitors_30d: u64,
    pub pageviews_30d: u64,
}

/// One row of a realtime top list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecentRow {
    /// `None` for hits without a value (direct traffic for sources).
    pub value: Option<String>,
    pub visitors: u64,
    pub pageviews: u64,
}

/// The last minutes of a site.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Realtime {
    /// Distinct visitors with a hit in the last [`LIVE_MINUTES`].
    pub live_visitors: u64,
    /// Pageviews in the last [`RECENT_MINUTES`].
    pub pageviews: u64,
    /// Pageviews per minute over the last [`RECENT_MINUTES`], oldest first.
    pub per_minute: Vec<u64>,
    /// Top pages of the last [`RECENT_MINUTES`] by visitors.
    pub top_pages: Vec<RecentRow>,
    /// Top sources of the last [`RECENT_MINUTES`] by visitors.
    pub top_sources: Vec<RecentRow>,
}

pub(crate) fn read_sites(
    conn: &Connection,
    only: Option<&str>,
) -> Result<Vec<SiteRow>, QueryError> {
    let select = "SELECT id, hostname, array_to_string(aliases, ','), origin FROM sites";
    let map = |r: &duckdb::Row<'_>| {
        let aliases: String = r.get(2)?;
        Ok(SiteRow {
            id: r.get(0)?,
            hostname: r.get(1)?,
            aliases: aliases
                .split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
            origin: r.get(3)?,
        })
    };
    Ok(match only {
        Some(name) => {
            let name = name.trim().to_ascii_lowercase();
            let mut stmt = conn.prepare(&format!(
                "{select} WHERE hostname = $1 OR list_contains(aliases, $1) ORDER BY id"
            ))?;
            stmt.query_map(params![name], map)?
                .collect::<Result<_, _>>()?
        }
        None => {
            let mut stmt = conn.prepare(&format!("{select} ORDER BY id"))?;
            stmt.query_map([], map)?.collect::<Result<_, _>>()?
        }
    })
}

fn minutes_before(now: Timestamp, minutes: i64) -> i64 {
    now.as_microsecond() - minutes * 60_000_000
}

impl LiveStats {
    pub(crate) fn new(conn: Connection) -> LiveStats {
        LiveStats { conn }
    }

    /// The site named `hostname` or one of its aliases.
    pub fn site(&self, hostname: &str) -> Result<Option<SiteRow>, QueryError> {
        Ok(read_sites(&self.conn, Some(hostname))?.into_iter().next())
    }

    /// Every site, ordered by id, with its visitors and pageviews of the 30
    /// days before `now`.
    pub fn sites(&self, now: Timestamp) -> Result<Vec<SiteSummary>, QueryError> {
        let totals: std::collections::HashMap<u16, (u64, u64)> = {
            let mut stmt = self.conn.prepare(
                "SELECT site_id, count(DISTINCT visitor), count(*) FILTER (WHERE kind = 0)
                 FROM hits WHERE ts >= make_timestamp(?::BIGINT)::TIMESTAMPTZ
                 GROUP BY site_id",
            )?;
            stmt.query_map(params![minutes_before(now, 30 * 24 * 60)], |r| {
                Ok((r.get(0)?, (r.get(1)?, r.get(2)?)))
            })?
            .collect::<Result<_, _>>()?
        };
        Ok(read_sites(&self.conn, None)?
            .into_iter()
            .map(|site| {
                let (visitors_30d, pageviews_30d) = totals.get(&site.id).copied().unwrap_or((0, 0));
                SiteSummary {
                    site,
                    visitors_30d,
                    pageviews_30d,
                }
            })
            .collect())
    }

    /// Distinct visitors of the site with a hit in the [`LIVE_MINUTES`]
    /// before `now` (hits stamped after `now` count too: clocks differ).
    pub fn live_visitors(&self, site_id: u16, now: Timestamp) -> Result<u64, QueryError> {
        Ok(self.conn.query_row(
            "SELECT count(DISTINCT visitor) FROM hits
             WHERE site_id = ? AND ts >= make_timestamp(?::BIGINT)::TIMESTAMPTZ",
            params![site_id, minutes_before(now, LIVE_MINUTES)],
            |r| r.get(0),
        )?)
    }

    /// The realtime numbers of the site at `now`, top lists of `limit` rows.
    pub fn realtime(
        &self,
        site_id: u16,
        now: Timestamp,
        limit: usize,
    ) -> Result<Realtime, QueryError> {
        let start = minutes_before(now, RECENT_MINUTES);
        let recent =
            "FROM hits WHERE site_id = $1 AND ts >= make_timestamp($2::BIGINT)::TIMESTAMPTZ";
        let (live_visitors, pageviews) = self.conn.query_row(
            &format!(
                "SELECT count(DISTINCT visitor) FILTER (WHERE ts >= make_timestamp($3::BIGINT)::TIMESTAMPTZ),
                        count(*) FILTER (WHERE kind = 0)
                 {recent}"
            ),
            params![site_id, start, minutes_before(now, LIVE_MINUTES)],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        let mut per_minute = vec![0u64; RECENT_MINUTES as usize];
        {
            let mut stmt = self.conn.prepare(&format!(
                "SELECT (epoch_us(ts) - $2::BIGINT) // 60000000 AS m, count(*)
                 {recent} AND kind = 0 GROUP BY m"
            ))?;
            let rows = stmt.query_map(params![site_id, start], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, u64>(1)?))
            })?;
            for row in rows {
                let (m, n) = row?;
                // A hit stamped a little after `now` belongs to the last minute.
                let i = m.clamp(0, RECENT_MINUTES - 1) as usize;
                per_minute[i] += n;
            }
        }
        let top = |column: &str| -> Result<Vec<RecentRow>, QueryError> {
            let mut stmt = self.conn.prepare(&format!(
                "SELECT {column}, count(DISTINCT visitor) AS v, count(*) AS c
                 {recent} AND kind = 0
                 GROUP BY {column} ORDER BY v DESC, c DESC, {column} NULLS LAST LIMIT {limit}"
            ))?;
            let rows = stmt.query_map(params![site_id, start], |r| {
                Ok(RecentRow {
                    value: r.get(0)?,
                    visitors: r.get(1)?,
                    pageviews: r.get(2)?,
                })
            })?;
            Ok(rows.collect::<Result<_, _>>()?)
        };
        Ok(Realtime {
            live_visitors,
            pageviews,
            per_minute,
            top_pages: top("path")?,
            top_sources: top("source")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::tests::hit;
    use crate::{Store, StoreOptions};
    use jiff::Timestamp;

    #[test]
    fn realtime_counts_the_last_minutes_only() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(dir.path(), &StoreOptions::default()).unwrap();
        s.upsert_site("a.test", &["www.a.test".into()], "config")
            .unwrap();
        let now = Timestamp::from_second(1_800_000_000).unwrap();
        let ago = |min: i64| now.as_millisecond() - min * 60_000;
        let at = |visitor: u64, min: i64, path: &str, source: &str| {
            let mut h = hit("a.test", ago(min), path);
            h.visitor = visitor;
            h.source = source.into();
            h
        };
        let hits = [
            at(1, 2, "/", "Google"),
            at(2, 10, "/b", ""),
            at(2, 9, "/b", ""),
            at(3, 40, "/old", "Google"),
        ];
        let batch: Vec<_> = hits
            .into_iter()
            .enumerate()
            .map(|(i, h)| (i as u64 + 1, h))
            .collect();
        s.append(&batch, 4).unwrap();
        let live = s.live().unwrap();

        let id = live
            .site(" WWW.A.test")
            .unwrap()
            .expect("found by alias")
            .id;
        assert!(live.site("b.test").unwrap().is_none());
        let r = live.realtime(id, now, 10).unwrap();
        assert_eq!(r.live_visitors, 1);
        assert_eq!(r.pageviews, 3);
        assert_eq!(r.per_minute.len(), 30);
        assert_eq!(r.per_minute[28], 1, "{:?}", r.per_minute);
        assert_eq!(r.per_minute[20] + r.per_minute[21], 2, "{:?}", r.per_minute);
        assert_eq!(r.per_minute.iter().sum::<u64>(), 3);
        let pages: Vec<_> = r
            .top_pages
            .iter()
            .map(|p| (p.value.as_deref(), p.visitors, p.pageviews))
            .collect();
        // Ties in visitors go to the one with more pageviews.
        assert_eq!(pages, [(Some("/b"), 1, 2), (Some("/"), 1, 1)]);
        let sources: Vec<_> = r.top_sources.iter().map(|p| p.value.as_deref()).collect();
        assert_eq!(sources, [None, Some("Google")]);
        assert_eq!(live.live_visitors(id, now).unwrap(), 1);

        let sites = live.sites(now).unwrap();
        assert_eq!(sites.len(), 1);
        assert_eq!((sites[0].visitors_30d, sites[0].pageviews_30d), (3, 4));
    }
}
