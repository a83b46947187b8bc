//! Prints what the audit log's plain scan costs: 100,000 entries written
//! (without fsync, straight to the file), then queries over all of them,
//! in entries scanned per second.
//!
//!     cargo run --release -p hitvault-accounts --example audit_query

use std::io::Write;
use std::time::Instant;

use hitvault_accounts::audit::{self, Actor, AuditLog, Entry, Filter, Kind};
use serde_json::{Map, Value};

const N: u64 = 100_000;

fn main() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join(audit::FILE);
    let mut out = std::io::BufWriter::new(std::fs::File::create(&path).expect("create"));
    let kinds = [
        Kind::SignIn,
        Kind::Export,
        Kind::GoalAdded,
        Kind::SignInFailed,
    ];
    for i in 0..N {
        let actor = match i % 4 {
            0 => Actor::Local,
            1 => Actor::Cli,
            _ => Actor::User {
                id: i % 50,
                name: format!("user{}", i % 50),
            },
        };
        let mut detail = Map::new();
        detail.insert("format".into(), Value::String("csv".into()));
        detail.insert("table".into(), Value::String("hits".into()));
        let e = Entry {
            seq: i + 1,
            at: 1_780_000_000_000 + i * 1000,
            actor,
            address: Some(format!("192.0.2.{}", i % 250)),
            kind: kinds[(i % 4) as usize],
            site: Some("stats.example".into()),
            detail,
        };
        serde_json::to_writer(&mut out, &e).expect("write");
        out.write_all(b"\n").expect("write");
    }
    drop(out);
    let bytes = std::fs::metadata(&path).expect("size").len();
    println!(
        "{N} entries, {:.1} MiB ({} bytes per entry)",
        bytes as f64 / (1 << 20) as f64,
        bytes / N
    );
    let t = Instant::now();
    let log = AuditLog::open(dir.path()).expect("open");
    println!(
        "open (scan for the last seq): {:.0} ms",
        t.elapsed().as_secs_f64() * 1000.0
    );
    let cases = [
        ("newest 50, no filter", Filter::default()),
        (
            "newest 50 of one user",
            Filter {
                actor: Some("user7".into()),
                ..Filter::default()
            },
        ),
        (
            "newest 50 of one kind, a time range",
            Filter {
                kinds: vec![Kind::Export],
                since_ms: Some(1_780_000_000_000 + 20_000_000),
                until_ms: Some(1_780_000_000_000 + 80_000_000),
                ..Filter::default()
            },
        ),
        (
            "no match",
            Filter {
                actor: Some("nobody".into()),
                ..Filter::default()
            },
        ),
    ];
    for (what, f) in cases {
        let mut best = f64::MAX;
        let mut got = 0;
        for _ in 0..5 {
            let t = Instant::now();
            got = log.query(&f, 50).expect("query").len();
            best = best.min(t.elapsed().as_secs_f64());
        }
        println!(
            "{what}: {got} entries in {:.0} ms, {:.2} M entries/s scanned",
            best * 1000.0,
            N as f64 / best / 1e6
        );
    }
}
