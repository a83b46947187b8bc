//! `hv-query`: times the dashboard's overview on a seeded store.
//!
//! The overview of one site is what the dashboard asks for on every page load:
//! the KPIs of the period and of the period before it (for the comparison),
//! the time series, and every breakdown panel (top 10 each). It runs that for
//! the largest site over the dashboard's "Last 30 days" and "Last 12 months"
//! (whole days in the time zone, up to the end of today, taking the last
//! seeded hit as now), for 30 days with a filter (which reads the raw hits,
//! not the rollups), and over rolling windows of the same lengths ending at
//! the last hit, as an API client may ask (their comparison periods have a
//! long partial day at each end, derived from raw hits). Each is timed cold
//! (the reader's cache cleared before every run) and warm. It prints latency
//! percentiles, CPU time per overview, the process's peak RSS and the
//! store's size. First it builds the rollups the store lacks (as the
//! daemon's batcher does in the background) and prints how long that took.
//!
//!     hv-seed --data-dir /tmp/seeded --hits 10000000 --sites 20
//!     hv-query --data-dir /tmp/seeded --runs 20

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use hitvault_bench::{own_cpu, percentile, rss_kib};
use hitvault_store::stats::{Dim, Filter, Interval, Op, PANELS, Stats, Window};
use hitvault_store::{Store, StoreOptions};
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};

#[derive(Parser, Debug)]
struct Args {
    /// Data directory holding `hitvault.duckdb` (written by hv-seed).
    #[arg(long)]
    data_dir: PathBuf,
    /// Timed runs of each overview (after one warm-up run).
    #[arg(long, default_value_t = 10)]
    runs: usize,
    /// IANA time zone of the dashboard.
    #[arg(long, default_value = "Europe/Berlin")]
    tz: String,
    /// Hits per rollup-building turn (the daemon's are far smaller; a turn
    /// derives its days in one go, so this bounds the memory it needs).
    #[arg(long, default_value_t = 2_000_000)]
    rollup_hits: u64,
    /// DuckDB worker threads (the daemon's `store.threads`).
    #[arg(long, default_value_t = StoreOptions::default().threads)]
    threads: u16,
}

fn overview(
    st: &Stats,
    w: &Window,
    prev: &Window,
    filters: &[Filter],
    interval: Interval,
) -> anyhow::Result<usize> {
    let o = st.overview(w, prev, filters, interval, &PANELS, 10)?;
    Ok(o.series.len() + o.breakdowns.len())
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let opts = StoreOptions {
        threads: a.threads,
        ..StoreOptions::default()
    };
    let store = Store::open(&a.data_dir, &opts).context("open the seeded store")?;
    let t = Instant::now();
    let mut built = 0;
    loop {
        let r = store.refresh_rollups(1000, a.rollup_hits)?;
        built += r.days;
        if !r.more {
            break;
        }
    }
    store.checkpoint()?;
    println!(
        "rollups built        {built} site-days in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let count = |table: &str| -> anyhow::Result<String> {
        Ok(store
            .query_text(&format!("SELECT count(*) FROM {table}"))?
            .first()
            .and_then(|r| r.first().cloned().flatten())
            .unwrap_or_default())
    };
    println!(
        "rows                 hits {}, rollup_visitors {}, rollup_slots {}, rollup_values {}",
        count("hits")?,
        count("rollup_visitors")?,
        count("rollup_slots")?,
        count("rollup_values")?
    );
    let site_id: u16 = store
        .query_text("SELECT site_id FROM hits GROUP BY site_id ORDER BY count(*) DESC LIMIT 1")?
        .first()
        .and_then(|r| r.first().cloned().flatten())
        .context("the store has no hits")?
        .parse()?;
    let last: String = store
        .query_text("SELECT epoch_us(max(ts)) FROM hits")?
        .first()
        .and_then(|r| r.first().cloned().flatten())
        .context("no max ts")?;
    let end = Timestamp::from_microsecond(last.parse::<i64>()? + 1)?;
    let tz = TimeZone::get(&a.tz)?;
    let st = store.stats()?;
    println!(
        "store                {:.1} MiB, largest site id {site_id}",
        store.disk_bytes() as f64 / (1 << 20) as f64
    );
    let country = Filter::dim(Dim::Country, Op::Is, "DE");
    // The windows the dashboard asks for on page load (see its `period`
    // parameter): whole local days up to the end of today, with `end` as
    // "now". Then the same lengths ending at `end` itself (rolling windows,
    // as an API client may ask), whose comparison period has a long partial
    // day at each end to derive from raw hits.
    let today = end.to_zoned_datetime(tz.clone()).date();
    let midnight = |d: jiff::civil::Date| -> anyhow::Result<Timestamp> {
        Ok(d.to_zoned_datetime(tz.clone())?.timestamp())
    };
    let tomorrow = midnight(today.tomorrow()?)?;
    let month_start = today.first_of_month();
    let cases: Vec<(&str, Timestamp, Timestamp, Interval, Vec<Filter>)> = vec![
        (
            "30 days",
            midnight(today.checked_sub(29.days())?)?,
            tomorrow,
            Interval::Day,
            vec![],
        ),
        (
            "12 months",
            midnight(month_start.checked_sub(11.months())?)?,
            midnight(month_start.checked_add(1.month())?)?,
            Interval::Month,
            vec![],
        ),
        (
            "30d country=DE",
            midnight(today.checked_sub(29.days())?)?,
            tomorrow,
            Interval::Day,
            vec![country],
        ),
        (
            "rolling 720 h",
            end.checked_sub((30 * 24).hours())?,
            end,
            Interval::Day,
            vec![],
        ),
        (
            "rolling 8760 h",
            end.checked_sub((365 * 24).hours())?,
            end,
            Interval::Month,
            vec![],
        ),
    ];
    for (label, from, to, interval, filters) in cases {
        let w = Window {
            site_id,
            from,
            to,
            tz: tz.clone(),
        };
        let prev = Window {
            from: Timestamp::from_microsecond(2 * from.as_microsecond() - to.as_microsecond())?,
            to: from,
            ..w.clone()
        };
        overview(&st, &w, &prev, &filters, interval)?;
        // Cold: the reader's cache of plans and derived partial days
        // cleared before each run (a first page load, or after history
        // changed). Warm: as kept from the run before (a reload while no
        // hit arrived; under live ingest today's part is derived anew).
        for cold in [true, false] {
            let mut lat: Vec<u32> = Vec::with_capacity(a.runs);
            let mut cpu = Duration::ZERO;
            for _ in 0..a.runs {
                if cold {
                    st.clear_cache();
                }
                let (t, cpu0) = (Instant::now(), own_cpu());
                overview(&st, &w, &prev, &filters, interval)?;
                lat.push(t.elapsed().as_micros().min(u128::from(u32::MAX)) as u32);
                cpu += own_cpu() - cpu0;
            }
            let cpu_ms = cpu.as_secs_f64() * 1000.0 / a.runs.max(1) as f64;
            lat.sort_unstable();
            let ms = |us: u32| Duration::from_micros(u64::from(us)).as_secs_f64() * 1000.0;
            println!(
                "overview {label:<15} {:<4} p50 {:.0} ms  p90 {:.0} ms  max {:.0} ms  CPU {cpu_ms:.0} ms/run  ({} runs, 2 KPI sets + series + {} panels)",
                if cold { "cold" } else { "warm" },
                ms(percentile(&lat, 50.0)),
                ms(percentile(&lat, 90.0)),
                ms(*lat.last().unwrap_or(&0)),
                a.runs,
                PANELS.len()
            );
        }
    }
    if let Some((hwm, _)) = rss_kib(std::process::id()) {
        println!("peak RSS             {:.1} MiB", hwm as f64 / 1024.0);
    }
    Ok(())
}
