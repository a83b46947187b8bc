//! CPU time of parsing tracker bodies (`wire::parse_browser`), on the same
//! mix of bodies `hv-load` sends. Prints nanoseconds of this thread's CPU per
//! body, which varies less than wall time on a shared machine.
//!
//! Run: `$CARGO_TARGET_DIR/release/examples/wire_bench [ROUNDS]`

use std::hint::black_box;

use hitvault_bench::Rng;
use hitvault_bench::traffic::Visit;
use hitvault_server::wire::{Limits, parse_browser};

fn thread_cpu_ns() -> u128 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we pass.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    t.tv_sec as u128 * 1_000_000_000 + t.tv_nsec as u128
}

fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(20);
    let mut rng = Rng::new(7);
    let mut bodies = Vec::new();
    while bodies.len() < 10_000 {
        let v = Visit::random(&mut rng, 20);
        for i in 0..Visit::length(&mut rng) {
            bodies.push(v.beacon(&mut rng, i).into_bytes());
        }
    }
    let limits = Limits::default();
    let t = thread_cpu_ns();
    let mut ok = 0usize;
    for _ in 0..rounds {
        for b in &bodies {
            ok += usize::from(parse_browser(black_box(b), &limits).is_ok());
        }
    }
    let n = rounds * bodies.len();
    assert_eq!(ok, n, "every generated body parses");
    println!(
        "parse_browser: {} bodies, {:.0} ns CPU per body",
        n,
        (thread_cpu_ns() - t) as f64 / n as f64
    );
}
