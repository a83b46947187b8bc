//! A stats reader's cache: its last plans (which whole days of a window
//! have a valid rollup) and the tables it derived from raw hits for the
//! rest of its last windows, with the rule that says when each is stale.
//!
//! Each stats reader keeps, on its own connection, its last plans and the
//! tables it derived for the raw part of its last windows, so that a page
//! reloaded or opened by a second person does not scan and derive the same
//! hits again. The store counts its commits ([`crate::Changes`]): every
//! write to `hits` (append, import, retention) and every rollup rebuild goes
//! through the store, which bumps `past` when it touched a day before the
//! current UTC day and `hits` always. A plan is reused while `past` is
//! unchanged; a derived part that had ended before its UTC day began
//! likewise, and one that reaches into the current day (today's hits) only
//! while `hits` is unchanged, so live ingest re-derives it on the next
//! request. The counters are read before the work they guard, so a commit
//! in between only makes the entry stale.
//!
//! The cache keeps the bookkeeping only: what a plan is and how a range is
//! derived into tables is the rollup path's (`rollup`), which hands both in.

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use jiff::Timestamp;

use crate::Changes;
use crate::stats::model::DAY_US;

/// A stats reader's cache: plans of whole days, and ranges derived from
/// raw hits (as temporary tables on its connection). See the module docs.
#[derive(Debug, Default)]
pub(crate) struct Cache {
    /// (site, first day, end day) -> (`Changes::past` then, rolled days).
    plans: HashMap<(u16, i64, i64), (u64, Vec<i32>)>,
    /// Least recently used first.
    ranges: Vec<Derived>,
    /// Numbers the derived ranges' tables.
    next: u64,
}

/// The raw ranges of one window, derived from raw hits together and kept.
#[derive(Debug)]
struct Derived {
    site_id: u16,
    ranges: Vec<(i64, i64)>,
    values: bool,
    /// The ranges ended before the UTC day they were derived on began: only
    /// history can change them (`Changes::past`), not live hits.
    closed: bool,
    /// The guarding counter's value before it was derived.
    seen: u64,
    /// Prefix of its tables; `None` if the ranges held no hits.
    tables: Option<String>,
}

/// Plans kept per reader (each a few days' numbers).
const MAX_PLANS: usize = 64;
/// Derived windows kept per reader (each a partial day or two of rollup rows).
const MAX_RANGES: usize = 16;

impl Cache {
    /// Forgets everything, handing the prefix of every derived range's
    /// tables to `drop`.
    pub(crate) fn clear(&mut self, mut drop: impl FnMut(Option<&str>)) {
        self.plans.clear();
        for d in self.ranges.drain(..) {
            drop(d.tables.as_deref());
        }
    }

    /// The rolled days planned for `key` while `Changes::past` is still
    /// `seen`; otherwise `rolled_days` computes them and they are kept.
    pub(crate) fn plan<E>(
        &mut self,
        key: (u16, i64, i64),
        seen: u64,
        rolled_days: impl FnOnce() -> Result<Vec<i32>, E>,
    ) -> Result<Vec<i32>, E> {
        Ok(match self.plans.get(&key) {
            Some((at, rolled)) if *at == seen => rolled.clone(),
            _ => {
                let rolled = rolled_days()?;
                if self.plans.len() >= MAX_PLANS {
                    self.plans.clear();
                }
                self.plans.insert(key, (seen, rolled.clone()));
                rolled
            }
        })
    }

    /// The prefix of the tables of `ranges` derived from `site_id`'s raw hits
    /// (with the panel values if `values`), kept while nothing that could
    /// change them was committed since; `None` if the ranges hold no hits.
    /// On a miss `derive` fills the tables under the prefix it is given and
    /// says whether the ranges held hits; `drop` drops a stale or evicted
    /// entry's tables.
    pub(crate) fn derived<E>(
        &mut self,
        changes: &Changes,
        site_id: u16,
        ranges: &[(i64, i64)],
        values: bool,
        derive: impl FnOnce(&str) -> Result<bool, E>,
        drop: impl Fn(Option<&str>),
    ) -> Result<Option<String>, E> {
        if ranges.is_empty() {
            return Ok(None);
        }
        if let Some(i) = self
            .ranges
            .iter()
            .position(|d| d.site_id == site_id && d.ranges == ranges && (d.values || !values))
        {
            let d = self.ranges.remove(i);
            if d.valid(changes) {
                let tables = d.tables.clone();
                self.ranges.push(d);
                return Ok(tables);
            }
            drop(d.tables.as_deref());
        }
        let today = Timestamp::now().as_microsecond().div_euclid(DAY_US) * DAY_US;
        let closed = ranges.iter().all(|r| r.1 <= today);
        // Read before deriving: a commit during the derivation makes it stale.
        let seen = if closed {
            changes.past.load(Ordering::Acquire)
        } else {
            changes.hits.load(Ordering::Acquire)
        };
        let out = format!("hv_c{}", self.next);
        self.next += 1;
        let tables = derive(&out)?.then_some(out);
        self.ranges.push(Derived {
            site_id,
            ranges: ranges.to_vec(),
            values,
            closed,
            seen,
            tables: tables.clone(),
        });
        while self.ranges.len() > MAX_RANGES {
            let old = self.ranges.remove(0);
            drop(old.tables.as_deref());
        }
        Ok(tables)
    }
}

impl Derived {
    fn valid(&self, changes: &Changes) -> bool {
        let counter = if self.closed {
            &changes.past
        } else {
            &changes.hits
        };
        counter.load(Ordering::Acquire) == self.seen
    }
}
