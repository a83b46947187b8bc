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
//! (the reader's cache cleared before every run) and warm. Filtered overviews
//! (a country, a custom property) over 30 days and 12 months, and the events
//! explorer's queries (property keys of all custom events, goal
//! conversions) read the raw hits and have no cache: they are timed once
//! per run. The unfiltered overviews are also timed live: one hit appended
//! through the store before each run, as under ingest, so that the part
//! reaching into today is derived anew while the past stays cached (this
//! adds hits to the store it runs on: run it on a copy). `--only TEXT` runs
//! the cases whose label holds TEXT. It prints latency
//! percentiles, CPU time per overview, the process's peak RSS and the
//! store's size. First it builds the rollups the store lacks (as the
//! daemon's writer does in the background) and prints how long that took.
//!
//!     hv-seed --data-dir /tmp/seeded --hits 10000000 --sites 20
//!     hv-query --data-dir /tmp/seeded --runs 20

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use hitvault_bench::{own_cpu, percentile, rss_kib};
use hitvault_core::{Device, Hit, Kind, Utm};
use hitvault_store::goals::{Goal, GoalKind, Step};
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
    /// Run only the cases whose label contains one of these (comma-separated).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// DuckDB worker threads (the daemon's `store.threads`).
    #[arg(long, default_value_t = StoreOptions::default().threads)]
    threads: u16,
    /// DuckDB memory limit (the daemon's `store.memory_limit`).
    #[arg(long, default_value_t = StoreOptions::default().memory_limit)]
    memory_limit: String,
}

/// What a case asks of the store.
#[derive(Clone, Copy, PartialEq)]
enum Ask {
    /// The overview page.
    Overview,
    /// The events explorer: the property keys of the custom events.
    PropKeys,
    /// The goals page: conversions of two goals (an event, a page pattern).
    Goals,
}

fn run(
    st: &Stats,
    ask: Ask,
    w: &Window,
    prev: &Window,
    filters: &[Filter],
    interval: Interval,
) -> anyhow::Result<usize> {
    Ok(match ask {
        Ask::Overview => {
            let o = st.overview(w, prev, filters, interval, &PANELS, 10)?;
            o.series.len() + o.breakdowns.len()
        }
        Ask::PropKeys => st.props(w, filters, None, None, 10)?.len(),
        Ask::Goals => {
            let goal = |kind, value: &str| Goal {
                id: 0,
                site_id: w.site_id,
                step: Step {
                    kind,
                    value: value.to_owned(),
                },
                display_name: value.to_owned(),
            };
            let goals = [
                goal(GoalKind::Event, "Signup"),
                goal(GoalKind::Page, "/docs*"),
            ];
            st.goal_stats(w, filters, &goals)?.len()
        }
    })
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let opts = StoreOptions {
        threads: a.threads,
        memory_limit: a.memory_limit.clone(),
    };
    let mut store = Store::open(&a.data_dir, &opts).context("open the seeded store")?;
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
    let hostname = store
        .sites()?
        .into_iter()
        .find(|s| s.id == site_id)
        .context("the largest site is not in sites")?
        .hostname;
    // A pageview just before the last hit, as the writer appends it.
    let mut live_hit = {
        let mut seq = store.committed_seq()?.max(store.max_hit_id()?);
        let mut rng = hitvault_bench::Rng::new(11);
        move |store: &mut Store| -> anyhow::Result<()> {
            seq += 1;
            let hit = Hit {
                ts_ms: end.as_millisecond() - 1,
                site: hostname.clone(),
                kind: Kind::Pageview,
                name: "pageview".into(),
                path: "/".into(),
                referrer: String::new(),
                source: String::new(),
                utm: Utm::default(),
                browser: "Firefox".into(),
                browser_version: "140".into(),
                os: "Linux".into(),
                os_version: String::new(),
                device: Device::Desktop,
                country: "DE".into(),
                language: "de-DE".into(),
                screen_width: 1280,
                visitor: rng.next_u64(),
                props: Vec::new(),
            };
            store.append(&[(seq, hit)], seq)?;
            Ok(())
        }
    };
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
    let plan = Filter::prop("plan", Op::Is, "pro");
    let (d30, m12) = (
        (midnight(today.checked_sub(29.days())?)?, tomorrow),
        (
            midnight(month_start.checked_sub(11.months())?)?,
            midnight(month_start.checked_add(1.month())?)?,
        ),
    );
    let (day, month) = (Interval::Day, Interval::Month);
    let ov = Ask::Overview;
    #[allow(clippy::type_complexity)]
    let cases: Vec<(&str, Ask, (Timestamp, Timestamp), Interval, Vec<Filter>)> = vec![
        ("30 days", ov, d30, day, vec![]),
        ("12 months", ov, m12, month, vec![]),
        ("30d country=DE", ov, d30, day, vec![country.clone()]),
        ("12mo country=DE", ov, m12, month, vec![country.clone()]),
        ("30d prop plan=pro", ov, d30, day, vec![plan.clone()]),
        ("12mo prop plan=pro", ov, m12, month, vec![plan.clone()]),
        (
            "rolling 720 h",
            ov,
            (end.checked_sub((30 * 24).hours())?, end),
            day,
            vec![],
        ),
        (
            "rolling 8760 h",
            ov,
            (end.checked_sub((365 * 24).hours())?, end),
            month,
            vec![],
        ),
        ("explorer keys 30d", Ask::PropKeys, d30, day, vec![]),
        ("explorer keys 12mo", Ask::PropKeys, m12, month, vec![]),
        ("goals 30d", Ask::Goals, d30, day, vec![]),
        ("goals 12mo", Ask::Goals, m12, month, vec![]),
        (
            "goals 12mo country=DE",
            Ask::Goals,
            m12,
            month,
            vec![country],
        ),
    ];
    for (label, ask, (from, to), interval, filters) in cases {
        if !a.only.is_empty() && !a.only.iter().any(|o| label.contains(o.as_str())) {
            continue;
        }
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
        run(&st, ask, &w, &prev, &filters, interval)?;
        // Cold: the reader's cache of plans and derived partial days
        // cleared before each run (a first page load, or after history
        // changed). Warm: as kept from the run before (a reload while no
        // hit arrived). Live: a hit committed before each run, so the part
        // reaching into today is derived anew. Only the unfiltered
        // overview has a cache.
        let cached = ask == Ask::Overview && filters.is_empty();
        let modes: &[&str] = if cached {
            &["cold", "warm", "live"]
        } else {
            &["cold"]
        };
        for &mode in modes {
            let mut lat: Vec<u32> = Vec::with_capacity(a.runs);
            let mut cpu = Duration::ZERO;
            for _ in 0..a.runs {
                match mode {
                    "cold" => st.clear_cache(),
                    "live" => live_hit(&mut store)?,
                    _ => {}
                }
                let (t, cpu0) = (Instant::now(), own_cpu());
                run(&st, ask, &w, &prev, &filters, interval)?;
                lat.push(t.elapsed().as_micros().min(u128::from(u32::MAX)) as u32);
                cpu += own_cpu() - cpu0;
            }
            let cpu_ms = cpu.as_secs_f64() * 1000.0 / a.runs.max(1) as f64;
            lat.sort_unstable();
            let ms = |us: u32| Duration::from_micros(u64::from(us)).as_secs_f64() * 1000.0;
            let what = match ask {
                Ask::Overview => format!("2 KPI sets + series + {} panels", PANELS.len()),
                Ask::PropKeys => "top 10 property keys".to_owned(),
                Ask::Goals => "2 goals".to_owned(),
            };
            println!(
                "{label:<22} {:<4} p50 {:.0} ms  p90 {:.0} ms  max {:.0} ms  CPU {cpu_ms:.0} ms/run  ({} runs, {what})",
                if cached { mode } else { "" },
                ms(percentile(&lat, 50.0)),
                ms(percentile(&lat, 90.0)),
                ms(*lat.last().unwrap_or(&0)),
                a.runs,
            );
        }
    }
    if let Some((hwm, _)) = rss_kib(std::process::id()) {
        println!("peak RSS             {:.1} MiB", hwm as f64 / 1024.0);
    }
    Ok(())
}
