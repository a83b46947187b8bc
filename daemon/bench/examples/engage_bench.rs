//! The writer's engagement-matching step: how fast `Store::append_batch`
//! attributes engagements to their pageviews (an `ASOF JOIN` over the
//! pageviews of the batch's day) as that day fills up.
//!
//! For each day size N (pageviews of one site on one UTC day, appended first
//! as the writer would), commits `--batches` batches of `--per-batch`
//! engagements, each of a random pageview of that day (its visitor and path,
//! a few seconds after it), and prints engagements matched per second and
//! the commit time per batch. Every engagement must find its pageview; the
//! run fails otherwise.
//!
//!     cargo run --release -p hitvault-bench --example engage_bench -- \
//!         --pageviews 10000,100000,1000000 --per-batch 1000 --batches 30

use std::time::Instant;

use anyhow::{Context, ensure};
use clap::Parser;
use hitvault_bench::Rng;
use hitvault_core::{Device, Engagement, EngagementRef, Hit, Kind, Utm};
use hitvault_store::{Store, StoreOptions};

#[derive(Parser, Debug)]
struct Args {
    /// Pageviews in the day, one run each (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "10000,100000,1000000")]
    pageviews: Vec<u64>,
    /// Engagements per committed batch.
    #[arg(long, default_value_t = 1000)]
    per_batch: usize,
    /// Batches timed per run.
    #[arg(long, default_value_t = 30)]
    batches: usize,
}

const SITE: &str = "bench.test";
/// 2026-01-10T00:00:00Z, in milliseconds.
const DAY_MS: i64 = 1_768_003_200_000;
const PAGES: u64 = 200;

fn pageview(visitor: u64, ts_ms: i64) -> Hit {
    Hit {
        ts_ms,
        site: SITE.into(),
        kind: Kind::Pageview,
        name: "pageview".into(),
        path: format!("/page/{}", visitor % PAGES),
        referrer: String::new(),
        source: String::new(),
        utm: Utm::default(),
        browser: "Firefox".into(),
        browser_version: "128".into(),
        os: "Linux".into(),
        os_version: String::new(),
        device: Device::Desktop,
        country: "DE".into(),
        language: "de-DE".into(),
        screen_width: 1280,
        visitor,
        props: vec![],
    }
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    println!(
        "{:>12} {:>10} {:>14} {:>12} {:>12}",
        "pageviews", "per batch", "matched/s", "p50 ms", "max ms"
    );
    for &n in &a.pageviews {
        let dir = tempfile::tempdir()?;
        let mut store = Store::open(dir.path(), &StoreOptions::default()).context("open store")?;
        store.upsert_site(SITE, &[], "runtime")?;
        // The day's pageviews: visitor i at a time spread over the first
        // 23 hours (one pageview each), appended in writer-sized batches.
        let mut seq = 0u64;
        let ts_of = |i: u64| DAY_MS + (i * 82_800_000 / n.max(1)) as i64;
        let mut i = 0u64;
        while i < n {
            let end = (i + 100_000).min(n);
            let batch: Vec<(u64, Hit)> = (i..end)
                .map(|v| {
                    seq += 1;
                    (seq, pageview(v, ts_of(v)))
                })
                .collect();
            store.append(&batch, seq)?;
            i = end;
        }
        store.checkpoint()?;
        let mut rng = Rng::new(n);
        let mut times = Vec::with_capacity(a.batches);
        let mut matched = 0usize;
        for _ in 0..a.batches {
            let engagements: Vec<Engagement> = (0..a.per_batch)
                .map(|_| {
                    let v = rng.below(n);
                    Engagement::of(
                        pageview(v, ts_of(v) + 1_000 + rng.below(60_000) as i64),
                        rng.below(120_000) as u32,
                        Some(rng.below(101) as u8),
                    )
                })
                .collect();
            let refs: Vec<(u64, EngagementRef<'_>)> = engagements
                .iter()
                .map(|e| {
                    seq += 1;
                    (seq, e.as_ref())
                })
                .collect();
            let t = Instant::now();
            let st = store.append_batch(&[], &refs, seq)?;
            times.push(t.elapsed().as_secs_f64());
            ensure!(
                st.unattributed == 0,
                "{} engagements found no pageview",
                st.unattributed
            );
            matched += st.engagements;
        }
        let total: f64 = times.iter().sum();
        times.sort_by(f64::total_cmp);
        println!(
            "{n:>12} {:>10} {:>14.0} {:>12.2} {:>12.2}",
            a.per_batch,
            matched as f64 / total,
            times[times.len() / 2] * 1e3,
            times[times.len() - 1] * 1e3
        );
    }
    Ok(())
}
