//! The end of an import: staged goals, funnels and imported aggregates
//! merged into the instance's.
//!
//! Goals and funnels are keyed by (site, name): one that is present with the
//! same content is left alone; one whose name is taken by a different
//! definition keeps the instance's and is reported in
//! [`ImportStats::conflicts`], never merged. Imported aggregates are keyed
//! by (site, day), a day being every row of `imported_days` and
//! `imported_values` of that site and day: a day the Takeout holds replaces
//! the instance's rows of that site and day unless they are the same
//! already (then it is present and nothing is written); days the Takeout
//! does not hold are left alone. This is what `import-plausible` does for
//! the days of its range: the import brought last wins, and a day's rows
//! always come from one source, never a mix.
//!
//! Engagements are keyed by (pageview, engagement id), as hits are by id:
//! each goes to the hit its pageview is stored as (the same id, the new id
//! a clashing hit got, or the stored hit with the content of one imported
//! before under a new id), and one the instance holds for that pageview
//! under the same id is present and left alone. So an import brought twice,
//! or a later Takeout of the same instance over an earlier one, adds only
//! the engagements that are new, and drops none.

use duckdb::{Connection, OptionalExt};

use crate::goals::{
    DefError, FUNNEL_STEPS, GoalKind, MAX_FUNNELS, MAX_GOALS, Step, check_step, check_text,
};
use crate::takeout::{ImportStats, TakeoutError};

/// A staged goal or funnel: site, name, steps (one for a goal), created_at (µs).
struct Def {
    site: String,
    name: String,
    steps: Vec<Step>,
    created_us: i64,
}

fn steps_text(steps: &[Step]) -> String {
    steps
        .iter()
        .map(|s| format!("{} {:?}", s.kind.name(), s.value))
        .collect::<Vec<_>>()
        .join(" -> ")
}

/// Reads staged definitions: `sql` returns site, name, kind, value,
/// created_at (µs), ordered so that a funnel's steps are together and in order.
fn staged_defs(c: &Connection, sql: &str) -> Result<Vec<Def>, TakeoutError> {
    let mut stmt = c.prepare(sql)?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, String>(3)?,
            r.get::<_, i64>(4)?,
        ))
    })?;
    let mut defs: Vec<Def> = Vec::new();
    for row in rows {
        let (site, name, kind, value, created_us) = row?;
        let kind = GoalKind::parse(&kind)
            .ok_or_else(|| TakeoutError::Invalid(format!("{site} {name:?}: kind {kind:?}")))?;
        let step = Step { kind, value };
        match defs.last_mut() {
            Some(d) if d.site == site && d.name == name => d.steps.push(step),
            _ => defs.push(Def {
                site,
                name,
                steps: vec![step],
                created_us,
            }),
        }
    }
    Ok(defs)
}

/// Merges the staged goals and funnels (the sites are merged already):
/// new ones are added; one with the same (site, name) and the same content
/// is present; one with the same name and other content is a conflict, and
/// the stored one stays. The rules of [`crate::Store::add_goal`] and
/// [`crate::Store::add_funnel`] apply to what is added.
pub(super) fn merge_definitions(
    c: &Connection,
    stats: &mut ImportStats,
) -> Result<(), TakeoutError> {
    let invalid = |what: String, e: DefError| TakeoutError::Invalid(format!("{what}: {e}"));
    let goals = staged_defs(
        c,
        "SELECT site, name, kind, value, epoch_us(created_at) FROM _import_goals ORDER BY site, name",
    )?;
    for g in goals {
        let what = format!("goals: site {} goal {:?}", g.site, g.name);
        let step = &g.steps[0];
        check_text("the name", &g.name).map_err(|e| invalid(what.clone(), e))?;
        check_step("the value", step).map_err(|e| invalid(what.clone(), e))?;
        let site_id: u16 =
            c.query_row("SELECT id FROM sites WHERE hostname = ?", [&g.site], |r| {
                r.get(0)
            })?;
        let stored: Option<(String, String)> = c
            .query_row(
                "SELECT kind, value FROM goals WHERE site_id = ? AND display_name = ?",
                duckdb::params![site_id, g.name],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        match stored {
            Some((kind, value)) if kind == step.kind.name() && value == step.value => {
                stats.goals_present += 1;
            }
            Some((kind, value)) => stats.conflicts.push(format!(
                "site {} goal {:?}: the import has {}, this instance has {kind} {value:?}; kept this instance's",
                g.site,
                g.name,
                steps_text(&g.steps)
            )),
            None => {
                let n: u64 = c.query_row(
                    "SELECT count(*) FROM goals WHERE site_id = ?",
                    [site_id],
                    |r| r.get(0),
                )?;
                if n as usize >= MAX_GOALS {
                    return Err(TakeoutError::Invalid(format!(
                        "{what}: site {} would have more than {MAX_GOALS} goals",
                        g.site
                    )));
                }
                c.execute(
                    "INSERT INTO goals SELECT (SELECT coalesce(max(id), 0) + 1 FROM goals), ?, ?, ?, ?, \
                     make_timestamp(?::BIGINT)::TIMESTAMPTZ",
                    duckdb::params![site_id, step.kind.name(), step.value, g.name, g.created_us],
                )?;
                stats.goals_added += 1;
            }
        }
    }
    let funnels = staged_defs(
        c,
        "SELECT site, name, kind, value, epoch_us(created_at) FROM _import_funnels \
         ORDER BY site, name, step",
    )?;
    for f in funnels {
        let what = format!("funnels: site {} funnel {:?}", f.site, f.name);
        check_text("the name", &f.name).map_err(|e| invalid(what.clone(), e))?;
        if !FUNNEL_STEPS.contains(&f.steps.len()) {
            return Err(TakeoutError::Invalid(format!(
                "{what}: {} steps, a funnel has {} to {}",
                f.steps.len(),
                FUNNEL_STEPS.start(),
                FUNNEL_STEPS.end()
            )));
        }
        for (i, s) in f.steps.iter().enumerate() {
            check_step(&format!("step {}", i + 1), s).map_err(|e| invalid(what.clone(), e))?;
        }
        let site_id: u16 =
            c.query_row("SELECT id FROM sites WHERE hostname = ?", [&f.site], |r| {
                r.get(0)
            })?;
        let stored: Option<(String, String)> = c
            .query_row(
                "SELECT array_to_string(step_kinds, chr(31)), array_to_string(step_values, chr(31)) \
                 FROM funnels WHERE site_id = ? AND name = ?",
                duckdb::params![site_id, f.name],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let kinds: Vec<&str> = f.steps.iter().map(|s| s.kind.name()).collect();
        let values: Vec<&str> = f.steps.iter().map(|s| s.value.as_str()).collect();
        let (kinds, values) = (kinds.join("\u{1f}"), values.join("\u{1f}"));
        match stored {
            Some((k, v)) if k == kinds && v == values => stats.funnels_present += 1,
            Some((k, v)) => {
                let theirs: Vec<Step> = k
                    .split('\u{1f}')
                    .zip(v.split('\u{1f}'))
                    .map(|(k, v)| Step {
                        kind: GoalKind::parse(k).unwrap_or(GoalKind::Event),
                        value: v.to_owned(),
                    })
                    .collect();
                stats.conflicts.push(format!(
                    "site {} funnel {:?}: the import has {}, this instance has {}; kept this instance's",
                    f.site,
                    f.name,
                    steps_text(&f.steps),
                    steps_text(&theirs)
                ));
            }
            None => {
                let n: u64 = c.query_row(
                    "SELECT count(*) FROM funnels WHERE site_id = ?",
                    [site_id],
                    |r| r.get(0),
                )?;
                if n as usize >= MAX_FUNNELS {
                    return Err(TakeoutError::Invalid(format!(
                        "{what}: site {} would have more than {MAX_FUNNELS} funnels",
                        f.site
                    )));
                }
                c.execute(
                    "INSERT INTO funnels SELECT (SELECT coalesce(max(id), 0) + 1 FROM funnels), ?, ?, \
                     string_split(?, chr(31)), string_split(?, chr(31)), make_timestamp(?::BIGINT)::TIMESTAMPTZ",
                    duckdb::params![site_id, f.name, kinds, values, f.created_us],
                )?;
                stats.funnels_added += 1;
            }
        }
    }
    Ok(())
}

/// Merges the staged imported aggregates (the sites are merged already) by
/// (site, day), as the module doc says: a day whose rows differ from the
/// instance's in either table, or that the instance lacks, is written whole
/// (the instance's rows of that site and day deleted first); a day with the
/// same rows is present.
pub(super) fn merge_imported(c: &Connection, stats: &mut ImportStats) -> Result<(), TakeoutError> {
    c.execute_batch(
        "CREATE TEMP TABLE _import_d AS \
             SELECT s.id AS site_id, (i.day - DATE '1970-01-01')::INTEGER AS day, i.visitors, \
                    i.pageviews, i.events, i.visits, i.bounces, i.visit_duration_s \
             FROM _import_imported_days i JOIN sites s ON s.hostname = i.site; \
         CREATE TEMP TABLE _import_v AS \
             SELECT s.id AS site_id, (i.day - DATE '1970-01-01')::INTEGER AS day, i.dim, i.value, \
                    i.visitors, i.count \
             FROM _import_imported_values i JOIN sites s ON s.hostname = i.site; \
         CREATE TEMP TABLE _import_keys AS \
             SELECT DISTINCT site_id, day FROM (SELECT site_id, day FROM _import_d \
                                                UNION ALL SELECT site_id, day FROM _import_v); \
         CREATE TEMP TABLE _import_stored_d AS \
             SELECT d.* FROM imported_days d SEMI JOIN _import_keys k USING (site_id, day); \
         CREATE TEMP TABLE _import_stored_v AS \
             SELECT v.* FROM imported_values v SEMI JOIN _import_keys k USING (site_id, day); \
         CREATE TEMP TABLE _import_changed AS SELECT DISTINCT site_id, day FROM ( \
             SELECT site_id, day FROM (SELECT * FROM _import_d EXCEPT ALL SELECT * FROM _import_stored_d) \
             UNION ALL SELECT site_id, day FROM (SELECT * FROM _import_stored_d EXCEPT ALL SELECT * FROM _import_d) \
             UNION ALL SELECT site_id, day FROM (SELECT * FROM _import_v EXCEPT ALL SELECT * FROM _import_stored_v) \
             UNION ALL SELECT site_id, day FROM (SELECT * FROM _import_stored_v EXCEPT ALL SELECT * FROM _import_v));",
    )?;
    let (keys, changed, replaced): (u64, u64, u64) = c.query_row(
        "SELECT (SELECT count(*) FROM _import_keys), (SELECT count(*) FROM _import_changed), \
                (SELECT count(*) FROM _import_changed ch WHERE EXISTS \
                    (SELECT 1 FROM _import_stored_d s WHERE s.site_id = ch.site_id AND s.day = ch.day) \
                  OR EXISTS \
                    (SELECT 1 FROM _import_stored_v s WHERE s.site_id = ch.site_id AND s.day = ch.day))",
        [],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;
    if changed > 0 {
        c.execute_batch(
            "DELETE FROM imported_days d USING _import_changed ch \
                 WHERE d.site_id = ch.site_id AND d.day = ch.day; \
             DELETE FROM imported_values v USING _import_changed ch \
                 WHERE v.site_id = ch.site_id AND v.day = ch.day; \
             INSERT INTO imported_days SELECT i.* FROM _import_d i SEMI JOIN _import_changed USING (site_id, day); \
             INSERT INTO imported_values SELECT i.* FROM _import_v i SEMI JOIN _import_changed USING (site_id, day);",
        )?;
    }
    c.execute_batch(
        "DROP TABLE _import_d; DROP TABLE _import_v; DROP TABLE _import_keys; \
         DROP TABLE _import_stored_d; DROP TABLE _import_stored_v; DROP TABLE _import_changed;",
    )?;
    stats.imported_days_added = changed - replaced;
    stats.imported_days_replaced = replaced;
    stats.imported_days_present = keys - changed;
    Ok(())
}

/// Stores the staged engagements (checked already: each names a hit of the
/// import, no id twice, values in range), each with the hit its pageview is
/// stored as, unless the instance holds an engagement of that id for that
/// pageview. Runs after the hits are stored and renumbered.
pub(super) fn merge_engagements(
    c: &Connection,
    stats: &mut ImportStats,
) -> Result<(), TakeoutError> {
    let staged: u64 = c.query_row("SELECT count(*) FROM _import_engagements", [], |r| r.get(0))?;
    if staged == 0 {
        return Ok(());
    }
    // The stored id of each engagement's pageview: a renumbered hit's new
    // id; a clashing hit not renumbered was imported before under a new id
    // (the stored hit with its content); any other hit is stored under its
    // own id (added now, or present with the same site, time and visitor).
    c.execute_batch(
        "CREATE TEMP TABLE _import_eng_target AS
         SELECT e.id, e.engaged_ms, e.scroll_depth,
                coalesce(r.new_id, CASE WHEN k.id IS NULL THEN e.hit_id END, (
                  SELECT min(h.id) FROM hits h
                  WHERE h.site_id = k.site_id AND h.ts = k.ts AND h.visitor = k.visitor
                    AND h.kind = k.kind AND h.name IS NOT DISTINCT FROM k.name
                    AND h.path IS NOT DISTINCT FROM k.path)) AS hit_id,
                e.hit_id AS file_hit_id
         FROM _import_engagements e
         LEFT JOIN _import_renum r ON r.old_id = e.hit_id
         LEFT JOIN _import_clash k ON k.id = e.hit_id",
    )?;
    let not_pageview: Option<String> = c
        .query_row(
            "SELECT 'engagements: id ' || t.id || ' names hit ' || t.file_hit_id || \
                    ', which is an event, not a pageview' \
             FROM _import_eng_target t JOIN hits h ON h.id = t.hit_id WHERE h.kind <> 0 LIMIT 1",
            [],
            |r| r.get(0),
        )
        .optional()?;
    if let Some(problem) = not_pageview {
        return Err(TakeoutError::Invalid(problem));
    }
    let added = c.execute(
        "INSERT INTO engagements
         SELECT t.id, h.id, h.site_id, h.ts, h.path, t.engaged_ms::UINTEGER, t.scroll_depth::UTINYINT
         FROM _import_eng_target t JOIN hits h ON h.id = t.hit_id
         WHERE NOT EXISTS (
           SELECT 1 FROM engagements s WHERE s.hit_id = t.hit_id AND s.id = t.id)",
        [],
    )? as u64;
    c.execute_batch("DROP TABLE _import_eng_target")?;
    stats.engagements_added = added;
    stats.engagements_present = staged - added;
    Ok(())
}
