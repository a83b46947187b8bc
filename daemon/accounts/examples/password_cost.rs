//! Prints what one password check costs with the argon2id parameters in
//! use: wall time per check (median and slowest of 20), and per check when
//! two run at once (the server's limit).
//!
//!     cargo run --release -p hitvault-accounts --example password_cost

use std::time::Instant;

use hitvault_accounts::password;

fn main() {
    let phc = password::hash("correct horse battery staple");
    let mut times: Vec<f64> = (0..20)
        .map(|_| {
            let t = Instant::now();
            assert!(password::verify("correct horse battery staple", &phc));
            t.elapsed().as_secs_f64() * 1000.0
        })
        .collect();
    times.sort_by(f64::total_cmp);
    let (m, t, p) = password::PARAMS;
    println!("argon2id m={m} KiB t={t} p={p}");
    println!(
        "one at a time: median {:.1} ms, slowest {:.1} ms per check",
        times[times.len() / 2],
        times[times.len() - 1]
    );
    let t = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                for _ in 0..10 {
                    assert!(password::verify("correct horse battery staple", &phc));
                }
            });
        }
    });
    println!(
        "two at once: {:.1} ms per check each ({:.1} checks/s together)",
        t.elapsed().as_secs_f64() * 1000.0 / 10.0,
        20.0 / t.elapsed().as_secs_f64()
    );
}
