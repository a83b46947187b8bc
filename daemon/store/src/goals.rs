//! Goals, funnels and event properties: their definitions (written by the
//! writer thread, DuckDB's only writer) and their numbers (read by [`Stats`]).
//!
//! - A **goal** is reached by a custom event of a name, or by a pageview whose
//!   path matches a pattern (`*` matches any run of characters: `/blog/*`).
//!   Its numbers over a window: the visitors who reached it (distinct, per UTC
//!   day as everywhere), the conversions (matching hits), and the conversion
//!   rate (those visitors / all visitors), all over the selected hits.
//! - A **funnel** is 2 to 8 ordered steps, each like a goal. A session reaches
//!   step k if it reached step k-1 and later holds a hit matching step k
//!   (earliest matches first, which finds every ordered match). Funnels run
//!   over the sessions that hold at least one selected hit, the same rule as
//!   the session metrics.
//! - **Properties** of custom events: the keys, or one key's values, with
//!   visitors and events, over the selected hits.

use duckdb::{OptionalExt, params_from_iter};

use crate::stats::Stats;
use crate::stats::model::{Filter, StatsError, Window};
use crate::stats::sql::{Sql, base, base_hits};
use crate::{QueryError, Store};

/// Most goals one site may have.
pub const MAX_GOALS: usize = 100;
/// Most funnels one site may have.
pub const MAX_FUNNELS: usize = 50;
/// Steps of a funnel.
pub const FUNNEL_STEPS: std::ops::RangeInclusive<usize> = 2..=8;
/// Longest event name or path pattern, and longest goal or funnel name (bytes).
pub const MAX_VALUE_LEN: usize = 200;

/// What reaches a goal or a funnel step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GoalKind {
    /// A custom event of this name.
    Event,
    /// A pageview whose path matches this pattern.
    Page,
}

impl GoalKind {
    pub fn name(self) -> &'static str {
        match self {
            GoalKind::Event => "event",
            GoalKind::Page => "page",
        }
    }

    pub fn parse(s: &str) -> Option<GoalKind> {
        match s {
            "event" => Some(GoalKind::Event),
            "page" => Some(GoalKind::Page),
            _ => None,
        }
    }
}

/// A goal or a funnel step: a kind and its event name or path pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    pub kind: GoalKind,
    pub value: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Goal {
    pub id: u32,
    pub site_id: u16,
    pub step: Step,
    pub display_name: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Funnel {
    pub id: u32,
    pub site_id: u16,
    pub name: String,
    pub steps: Vec<Step>,
}

/// Why a definition was not stored.
#[derive(Debug, thiserror::Error)]
pub enum DefError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0} already exists")]
    Exists(String),
    /// The store's writer did not answer (the daemon is stopping, say).
    #[error("the store is not available: {0}")]
    Unavailable(&'static str),
    #[error(transparent)]
    Query(#[from] QueryError),
}

impl From<duckdb::Error> for DefError {
    fn from(e: duckdb::Error) -> Self {
        DefError::Query(QueryError::Db(e))
    }
}

pub(crate) fn check_text(what: &str, v: &str) -> Result<(), DefError> {
    if v.trim().is_empty() {
        return Err(DefError::Invalid(format!("{what} is empty")));
    }
    if v.len() > MAX_VALUE_LEN {
        return Err(DefError::Invalid(format!(
            "{what} is longer than {MAX_VALUE_LEN} bytes"
        )));
    }
    if v.chars().any(char::is_control) {
        return Err(DefError::Invalid(format!(
            "{what} holds a control character"
        )));
    }
    Ok(())
}

pub(crate) fn check_step(what: &str, s: &Step) -> Result<(), DefError> {
    check_text(what, &s.value)?;
    if s.kind == GoalKind::Page && !s.value.starts_with('/') && !s.value.starts_with('*') {
        return Err(DefError::Invalid(format!(
            "{what}: a path pattern starts with '/' or '*'"
        )));
    }
    Ok(())
}

fn next_id(conn: &duckdb::Connection, table: &str) -> Result<u32, duckdb::Error> {
    conn.query_row(
        &format!("SELECT (coalesce(max(id), 0) + 1)::UINTEGER FROM {table}"),
        [],
        |r| r.get(0),
    )
}

/// What [`Store::set_created`] dates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Made {
    Goal,
    Funnel,
    Site,
}

impl Store {
    /// Adds a goal to a site. Names are unique per site.
    pub fn add_goal(&self, site_id: u16, step: Step, display_name: &str) -> Result<Goal, DefError> {
        check_step("the goal's value", &step)?;
        check_text("the goal's name", display_name)?;
        let n: u64 = self.conn.query_row(
            "SELECT count(*) FROM goals WHERE site_id = ?",
            [site_id],
            |r| r.get(0),
        )?;
        if n as usize >= MAX_GOALS {
            return Err(DefError::Invalid(format!(
                "a site has at most {MAX_GOALS} goals"
            )));
        }
        let taken: Option<u32> = self
            .conn
            .query_row(
                "SELECT id FROM goals WHERE site_id = ? AND display_name = ?",
                duckdb::params![site_id, display_name],
                |r| r.get(0),
            )
            .optional()?;
        if taken.is_some() {
            return Err(DefError::Exists(format!("goal {display_name:?}")));
        }
        let id = next_id(&self.conn, "goals")?;
        self.conn.execute(
            "INSERT INTO goals VALUES (?, ?, ?, ?, ?, now())",
            duckdb::params![id, site_id, step.kind.name(), step.value, display_name],
        )?;
        Ok(Goal {
            id,
            site_id,
            step,
            display_name: display_name.to_owned(),
        })
    }

    /// Removes a goal; false if the site has no such goal.
    pub fn delete_goal(&self, site_id: u16, id: u32) -> Result<bool, QueryError> {
        let n = self.conn.execute(
            "DELETE FROM goals WHERE site_id = ? AND id = ?",
            duckdb::params![site_id, id],
        )?;
        Ok(n > 0)
    }

    /// Adds a funnel of 2 to 8 steps to a site. Names are unique per site.
    pub fn add_funnel(
        &self,
        site_id: u16,
        name: &str,
        steps: Vec<Step>,
    ) -> Result<Funnel, DefError> {
        check_text("the funnel's name", name)?;
        if !FUNNEL_STEPS.contains(&steps.len()) {
            return Err(DefError::Invalid(format!(
                "a funnel has {} to {} steps, not {}",
                FUNNEL_STEPS.start(),
                FUNNEL_STEPS.end(),
                steps.len()
            )));
        }
        for (i, s) in steps.iter().enumerate() {
            check_step(&format!("step {}", i + 1), s)?;
        }
        let n: u64 = self.conn.query_row(
            "SELECT count(*) FROM funnels WHERE site_id = ?",
            [site_id],
            |r| r.get(0),
        )?;
        if n as usize >= MAX_FUNNELS {
            return Err(DefError::Invalid(format!(
                "a site has at most {MAX_FUNNELS} funnels"
            )));
        }
        let taken: Option<u32> = self
            .conn
            .query_row(
                "SELECT id FROM funnels WHERE site_id = ? AND name = ?",
                duckdb::params![site_id, name],
                |r| r.get(0),
            )
            .optional()?;
        if taken.is_some() {
            return Err(DefError::Exists(format!("funnel {name:?}")));
        }
        let id = next_id(&self.conn, "funnels")?;
        // Lists are passed as strings split on a separator no value can hold.
        let kinds: Vec<&str> = steps.iter().map(|s| s.kind.name()).collect();
        let values: Vec<&str> = steps.iter().map(|s| s.value.as_str()).collect();
        self.conn.execute(
            "INSERT INTO funnels VALUES (?, ?, ?, string_split(?, chr(31)), string_split(?, chr(31)), now())",
            duckdb::params![id, site_id, name, kinds.join("\u{1f}"), values.join("\u{1f}")],
        )?;
        Ok(Funnel {
            id,
            site_id,
            name: name.to_owned(),
            steps,
        })
    }

    /// On a cluster node: the highest log index of a definitions change
    /// applied here (0: none), kept in row 2 of `cluster_state`, committed
    /// with the change.
    pub fn cluster_defs_applied(&self) -> Result<u64, QueryError> {
        let b: Option<Vec<u8>> = self
            .conn
            .query_row("SELECT state FROM cluster_state WHERE id = 2", [], |r| {
                r.get(0)
            })
            .optional()?;
        Ok(b.and_then(|b| <[u8; 8]>::try_from(b.as_slice()).ok())
            .map_or(0, u64::from_le_bytes))
    }

    /// Applies the definitions change the cluster's log holds at `index`:
    /// `f` and the index in one transaction (a change `f` refuses changes
    /// nothing but the index; a database error changes nothing at all and
    /// is returned). `None` when an earlier run applied it (a replay).
    pub fn cluster_def_change<T>(
        &mut self,
        index: u64,
        f: impl FnOnce(&mut Store) -> Result<T, DefError>,
    ) -> Result<Option<Result<T, DefError>>, QueryError> {
        if index <= self.cluster_defs_applied()? {
            return Ok(None);
        }
        self.conn.execute_batch("BEGIN TRANSACTION")?;
        let r = match f(self) {
            // The database failed, not the change: nothing is applied (the
            // log applies it again).
            Err(DefError::Query(e)) => return Err(self.undo(e)),
            r => r,
        };
        if r.is_err()
            && let Err(e) = self.conn.execute_batch("ROLLBACK; BEGIN TRANSACTION")
        {
            return Err(self.undo(e.into()));
        }
        let done = self
            .conn
            .execute(
                "INSERT OR REPLACE INTO cluster_state VALUES (2, ?)",
                [index.to_le_bytes().to_vec()],
            )
            .and_then(|_| self.conn.execute_batch("COMMIT"));
        if let Err(e) = done {
            return Err(self.undo(e.into()));
        }
        self.refresh_sites()?;
        Ok(Some(r))
    }

    /// Rolls back after `e` (the cached sites too); returns `e`.
    fn undo(&mut self, e: QueryError) -> QueryError {
        let _ = self.conn.execute_batch("ROLLBACK");
        let _ = self.refresh_sites();
        e
    }

    /// Runs `f` and undoes what it did: the checks a change would pass
    /// or fail, without making it.
    pub fn def_dry_run<T>(
        &mut self,
        f: impl FnOnce(&mut Store) -> Result<T, DefError>,
    ) -> Result<T, DefError> {
        self.conn.execute_batch("BEGIN TRANSACTION")?;
        let r = f(self);
        self.conn.execute_batch("ROLLBACK")?;
        self.refresh_sites()?;
        r
    }

    /// The id of a site's goal (or funnel) named `name`, if it has one.
    pub fn def_named(
        &self,
        funnel: bool,
        site_id: u16,
        name: &str,
    ) -> Result<Option<u32>, QueryError> {
        let sql = if funnel {
            "SELECT id FROM funnels WHERE site_id = ? AND name = ?"
        } else {
            "SELECT id FROM goals WHERE site_id = ? AND display_name = ?"
        };
        Ok(self
            .conn
            .query_row(sql, duckdb::params![site_id, name], |r| r.get(0))
            .optional()?)
    }

    /// Sets when a goal, a funnel or a site was made (unix ms): on a
    /// cluster node the time its proposer decided, so every node stores the
    /// same row.
    pub fn set_created(&self, what: Made, id: u32, at_ms: i64) -> Result<(), QueryError> {
        let table = match what {
            Made::Goal => "goals",
            Made::Funnel => "funnels",
            Made::Site => "sites",
        };
        self.conn.execute(
            &format!("UPDATE {table} SET created_at = to_timestamp(?::DOUBLE / 1000) WHERE id = ?"),
            duckdb::params![at_ms, id],
        )?;
        Ok(())
    }

    /// Removes a funnel; false if the site has no such funnel.
    pub fn delete_funnel(&self, site_id: u16, id: u32) -> Result<bool, QueryError> {
        let n = self.conn.execute(
            "DELETE FROM funnels WHERE site_id = ? AND id = ?",
            duckdb::params![site_id, id],
        )?;
        Ok(n > 0)
    }
}

/// A goal's numbers over a window.
#[derive(Clone, Debug, PartialEq)]
pub struct GoalRow {
    pub goal: Goal,
    /// Distinct visitors with a matching hit.
    pub visitors: u64,
    /// Matching hits.
    pub conversions: u64,
    /// `visitors` / all visitors of the window with the same filters, 0..=1.
    pub conversion_rate: f64,
}

/// A funnel step's numbers over a window.
#[derive(Clone, Debug, PartialEq)]
pub struct FunnelRow {
    pub step: Step,
    /// Distinct visitors with a session that reached this step.
    pub visitors: u64,
    /// Sessions that reached this step.
    pub sessions: u64,
    /// `visitors` / the first step's visitors, 0..=1.
    pub conversion_rate: f64,
    /// Visitors of the previous step who did not reach this one.
    pub dropoff: u64,
}

/// A property key or value's numbers over a window.
#[derive(Clone, Debug, PartialEq)]
pub struct PropRow {
    pub value: String,
    pub visitors: u64,
    /// Custom events carrying it.
    pub events: u64,
}

/// SQL `LIKE` pattern for a path pattern (`*` is any run of characters).
fn like_pattern(p: &str) -> String {
    let mut out = String::with_capacity(p.len() + 4);
    for c in p.chars() {
        match c {
            '*' => out.push('%'),
            '%' | '_' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out
}

/// A condition on hit columns `kind`, `name`, `path` (of relation `rel`)
/// matching `s`, with its one parameter.
fn step_cond(rel: &str, s: &Step) -> (String, duckdb::types::Value) {
    use duckdb::types::Value as V;
    match s.kind {
        GoalKind::Event => (
            format!("({rel}.kind = 1 AND {rel}.name = ?)"),
            V::Text(s.value.clone()),
        ),
        GoalKind::Page => (
            format!("({rel}.kind = 0 AND {rel}.path LIKE ? ESCAPE '\\')"),
            V::Text(like_pattern(&s.value)),
        ),
    }
}

fn row_to_step(kind: String, value: String) -> Step {
    Step {
        kind: GoalKind::parse(&kind).unwrap_or(GoalKind::Event),
        value,
    }
}

impl Stats {
    /// The goals of a site, by name.
    pub fn goals_of(&self, site_id: u16) -> Result<Vec<Goal>, QueryError> {
        let mut stmt = self.conn.prepare(
            "SELECT id, kind, value, display_name FROM goals WHERE site_id = ? ORDER BY display_name",
        )?;
        let rows = stmt.query_map([site_id], |r| {
            Ok(Goal {
                id: r.get(0)?,
                site_id,
                step: row_to_step(r.get(1)?, r.get(2)?),
                display_name: r.get(3)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The funnels of a site, by name.
    pub fn funnels_of(&self, site_id: u16) -> Result<Vec<Funnel>, QueryError> {
        let mut stmt = self.conn.prepare(
            "SELECT id, name, array_to_string(step_kinds, chr(31)), array_to_string(step_values, chr(31))
             FROM funnels WHERE site_id = ? ORDER BY name",
        )?;
        let rows = stmt.query_map([site_id], |r| {
            let kinds: String = r.get(2)?;
            let values: String = r.get(3)?;
            Ok(Funnel {
                id: r.get(0)?,
                site_id,
                name: r.get(1)?,
                steps: kinds
                    .split('\u{1f}')
                    .zip(values.split('\u{1f}'))
                    .map(|(k, v)| row_to_step(k.to_owned(), v.to_owned()))
                    .collect(),
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Visitors, conversions and conversion rate of each goal.
    pub fn goal_stats(
        &self,
        w: &Window,
        filters: &[Filter],
        goals: &[Goal],
    ) -> Result<Vec<GoalRow>, StatsError> {
        let b = base_hits(w, filters)?;
        let mut params = b.params.clone();
        let mut arms = Vec::new();
        for (i, g) in goals.iter().enumerate() {
            let (cond, p) = step_cond("sel", &g.step);
            arms.push(format!(
                "SELECT {i} AS g, count(DISTINCT visitor) AS v, count(*) AS c FROM sel WHERE {cond}"
            ));
            params.push(p);
        }
        let arms = if arms.is_empty() {
            "SELECT 0 AS g, 0 AS v, 0 AS c WHERE FALSE".to_owned()
        } else {
            arms.join(" UNION ALL ")
        };
        let text = format!(
            "{}
            SELECT g, v, c, (SELECT count(DISTINCT visitor) FROM sel) FROM ({arms}) ORDER BY g",
            b.text
        );
        let mut stmt = self.conn.prepare(&text)?;
        let rows: Vec<(usize, u64, u64, u64)> = stmt
            .query_map(params_from_iter(params.iter()), |r| {
                Ok((
                    r.get::<_, i64>(0)? as usize,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                ))
            })?
            .collect::<Result<_, _>>()?;
        Ok(rows
            .into_iter()
            .map(|(i, visitors, conversions, total)| GoalRow {
                goal: goals[i].clone(),
                visitors,
                conversions,
                conversion_rate: if total == 0 {
                    0.0
                } else {
                    visitors as f64 / total as f64
                },
            })
            .collect())
    }

    /// How many visitors and sessions reached each step of a funnel, in order
    /// within one session.
    pub fn funnel_stats(
        &self,
        w: &Window,
        filters: &[Filter],
        steps: &[Step],
    ) -> Result<Vec<FunnelRow>, StatsError> {
        let b = base(w, filters)?;
        let mut params = b.params.clone();
        let mut ctes = vec![
            "fh AS (
              SELECT h.visitor, h.sess, h.kind, h.name, h.path,
                     row_number() OVER (PARTITION BY h.visitor, h.sess ORDER BY h.us, h.id) AS ord
              FROM h SEMI JOIN sess_sel USING (visitor, sess)
            )"
            .to_owned(),
        ];
        let mut counts = Vec::new();
        for (i, s) in steps.iter().enumerate() {
            let (cond, p) = step_cond("fh", s);
            params.push(p);
            ctes.push(if i == 0 {
                format!(
                    "s0 AS (SELECT visitor, sess, min(ord) AS o FROM fh WHERE {cond} GROUP BY visitor, sess)"
                )
            } else {
                format!(
                    "s{i} AS (
                      SELECT fh.visitor, fh.sess, min(fh.ord) AS o
                      FROM fh JOIN s{p} ON fh.visitor = s{p}.visitor AND fh.sess = s{p}.sess
                      WHERE fh.ord > s{p}.o AND {cond}
                      GROUP BY fh.visitor, fh.sess
                    )",
                    p = i - 1
                )
            });
            counts.push(format!(
                "(SELECT count(DISTINCT visitor) FROM s{i}), (SELECT count(*) FROM s{i})"
            ));
        }
        let text = format!(
            "{}, {} SELECT {}",
            b.text,
            ctes.join(", "),
            counts.join(", ")
        );
        let mut stmt = self.conn.prepare(&text)?;
        let n = steps.len();
        let got: Vec<(u64, u64)> = stmt.query_row(params_from_iter(params.iter()), |r| {
            (0..n)
                .map(|i| Ok((r.get(2 * i)?, r.get(2 * i + 1)?)))
                .collect()
        })?;
        let first = got.first().map_or(0, |g| g.0);
        Ok(steps
            .iter()
            .zip(&got)
            .enumerate()
            .map(|(i, (s, &(visitors, sessions)))| FunnelRow {
                step: s.clone(),
                visitors,
                sessions,
                conversion_rate: if first == 0 {
                    0.0
                } else {
                    visitors as f64 / first as f64
                },
                dropoff: if i == 0 {
                    0
                } else {
                    got[i - 1].0.saturating_sub(visitors)
                },
            })
            .collect())
    }

    /// The property keys of custom events (`key` None), or the values of one
    /// key, optionally of one event name only; by visitors, then events.
    pub fn props(
        &self,
        w: &Window,
        filters: &[Filter],
        event: Option<&str>,
        key: Option<&str>,
        limit: usize,
    ) -> Result<Vec<PropRow>, StatsError> {
        use duckdb::types::Value as V;
        let b: Sql = base_hits(w, filters)?;
        let mut params = b.params.clone();
        let mut conds = vec!["sel.kind = 1".to_owned()];
        if let Some(e) = event {
            conds.push("sel.name = ?".into());
            params.push(V::Text(e.to_owned()));
        }
        let col = match key {
            Some(k) => {
                conds.push("p.key = ?".into());
                params.push(V::Text(k.to_owned()));
                "p.value"
            }
            None => "p.key",
        };
        let text = format!(
            "{}
            SELECT {col} AS v, count(DISTINCT sel.visitor), count(DISTINCT sel.id)
            FROM sel JOIN hit_props p ON p.hit_id = sel.id AND p.site_id = ?
            WHERE {}
            GROUP BY v ORDER BY 2 DESC, 3 DESC, v LIMIT {limit}",
            b.text,
            conds.join(" AND ")
        );
        // The site parameter comes before the WHERE parameters in the text.
        let at = b.params.len();
        params.insert(at, V::USmallInt(w.site_id));
        let mut stmt = self.conn.prepare(&text)?;
        let rows = stmt
            .query_map(params_from_iter(params.iter()), |r| {
                Ok(PropRow {
                    value: r.get(0)?,
                    visitors: r.get(1)?,
                    events: r.get(2)?,
                })
            })?
            .collect::<Result<_, _>>()?;
        Ok(rows)
    }
}
