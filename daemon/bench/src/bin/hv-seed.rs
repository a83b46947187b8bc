//! `hv-seed`: writes N realistic hits through the store, for query benchmarks.
//!
//! Sites `site01.test` .. `siteNN.test` (Zipf: the first is the largest), a
//! year of traffic ending now, one day at a time in time order, through the
//! same `Store::append` the writer uses. Prints rows/s, bytes on disk and
//! bytes per hit after a checkpoint.
//!
//!     hv-seed --data-dir /tmp/seeded --hits 10000000 --sites 20 --days 365
//!
//! With `--shuffle visits` the same year is sent in random order, in
//! batches of `--batch` hits: whole visits in random order, each visit's
//! hits in time order (clients replaying their backlogs, history imported
//! from elsewhere); a visit may straddle two batches. `--shuffle hits`
//! shuffles the hits themselves, the worst case: nearly every visit of more
//! than one hit is split over batches. Either prints how the store numbered
//! the sessions: visitor-days decided in memory, in SQL, hits rewritten.
//!
//!     hv-seed --data-dir /tmp/shuffled --hits 1000000 --sites 1 --shuffle visits --batch 1000

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use clap::Parser;
use hitvault_bench::Rng;
use hitvault_bench::traffic::{Visit, site};
use hitvault_store::{Store, StoreOptions};

#[derive(Parser, Debug)]
struct Args {
    /// Data directory (the store is created in it).
    #[arg(long)]
    data_dir: PathBuf,
    /// Hits to write.
    #[arg(long, default_value_t = 1_000_000)]
    hits: u64,
    /// Number of sites.
    #[arg(long, default_value_t = 20)]
    sites: usize,
    /// Days of history, ending now.
    #[arg(long, default_value_t = 365)]
    days: u32,
    /// Random seed (same seed, same data).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Send the whole year in random order (`visits` or `hits`) instead of
    /// day by day.
    #[arg(long, value_parser = ["visits", "hits"])]
    shuffle: Option<String>,
    /// Hits per append.
    #[arg(long, default_value_t = 100_000)]
    batch: usize,
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    std::fs::create_dir_all(&a.data_dir)?;
    let mut store = Store::open(&a.data_dir, &StoreOptions::default()).context("open store")?;
    for i in 0..a.sites {
        if store.sites()?.iter().all(|s| s.hostname != site(i)) {
            store.upsert_site(&site(i), &[], "runtime")?;
        }
    }
    let mut seq = store.committed_seq()?.max(store.max_hit_id()?);
    let mut rng = Rng::new(a.seed);
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis() as i64;
    let day_ms = 86_400_000i64;
    let start_day = now_ms / day_ms - i64::from(a.days) + 1;
    // Traffic grows over the year and dips on weekends.
    let weights: Vec<f64> = (0..a.days)
        .map(|d| {
            let weekday = (start_day + i64::from(d) + 3).rem_euclid(7); // 0 = Monday
            let w = if weekday >= 5 { 0.7 } else { 1.0 };
            w * (0.7 + 0.6 * f64::from(d) / f64::from(a.days.max(1)))
        })
        .collect();
    let total_w: f64 = weights.iter().sum();
    let t0 = Instant::now();
    let mut written = 0u64;
    let mut all = Vec::new();
    let mut send = |hits: &[hitvault_core::Hit], store: &mut Store| -> anyhow::Result<()> {
        for chunk in hits.chunks(a.batch.max(1)) {
            let batch: Vec<(u64, hitvault_core::Hit)> = chunk
                .iter()
                .map(|h| {
                    seq += 1;
                    (seq, h.clone())
                })
                .collect();
            store.append(&batch, seq)?;
        }
        Ok(())
    };
    for (d, w) in weights.iter().enumerate() {
        let target = if d + 1 == weights.len() {
            a.hits.saturating_sub(written)
        } else {
            ((a.hits as f64) * w / total_w) as u64
        };
        let day_start = (start_day + d as i64) * day_ms;
        let mut hits = Vec::with_capacity(target as usize + 8);
        let mut visits: Vec<std::ops::Range<usize>> = Vec::new();
        while (hits.len() as u64) < target {
            let first = hits.len();
            let v = Visit::random(&mut rng, a.sites);
            // Daily rhythm: more traffic in the afternoon (UTC).
            let hour = (8.0 + 12.0 * rng.unit() + 4.0 * (rng.unit() - 0.5)).clamp(0.0, 23.99);
            let mut ts = day_start + (hour * 3_600_000.0) as i64;
            for i in 0..Visit::length(&mut rng) {
                if hits.len() as u64 >= target {
                    break;
                }
                hits.push(v.hit(&mut rng, i, ts.min(day_start + day_ms - 1)));
                ts += 5_000 + rng.below(240_000) as i64;
            }
            visits.push(first..hits.len());
        }
        written += hits.len() as u64;
        if a.shuffle.is_some() {
            all.extend(visits.into_iter().map(|r| hits[r].to_vec()));
            continue;
        }
        hits.sort_by_key(|h| h.ts_ms);
        send(&hits, &mut store)?;
    }
    let mut t0 = t0;
    if let Some(how) = &a.shuffle {
        if how == "hits" {
            all = all.into_iter().flatten().map(|h| vec![h]).collect();
        }
        // Fisher-Yates; the time to generate the year is not counted.
        for i in (1..all.len()).rev() {
            let j = rng.below(i as u64 + 1) as usize;
            all.swap(i, j);
        }
        let all: Vec<hitvault_core::Hit> = all.into_iter().flatten().collect();
        t0 = Instant::now();
        let step = (all.len() / 10).max(a.batch.max(1));
        for (i, part) in all.chunks(step).enumerate() {
            send(part, &mut store)?;
            let sent = (i * step + part.len()) as f64;
            eprintln!(
                "sent {sent:>10.0} hits  {:>8.0} hits/s so far",
                sent / t0.elapsed().as_secs_f64()
            );
        }
    }
    let append_s = t0.elapsed().as_secs_f64();
    store.checkpoint()?;
    let total_s = t0.elapsed().as_secs_f64();
    let rows = store.hit_count()?;
    let bytes = store.disk_bytes();
    println!("seeded hits          {written}");
    println!("rows in hits         {rows}");
    println!(
        "append rate          {:.0} hits/s ({append_s:.1} s)",
        written as f64 / append_s
    );
    println!("with checkpoint      {total_s:.1} s");
    if let Some(how) = &a.shuffle {
        println!(
            "batch                {} hits, {how} in random order",
            a.batch
        );
    }
    let w = store.session_work();
    println!("history days in RAM  {}", w.history_in_memory);
    println!("visitor-days in SQL  {}", w.keys_in_sql);
    println!("hits rewritten (SQL) {}", w.hits_rewritten);
    println!("database bytes       {bytes}");
    println!(
        "bytes per hit        {:.1}",
        bytes as f64 / rows.max(1) as f64
    );
    Ok(())
}
