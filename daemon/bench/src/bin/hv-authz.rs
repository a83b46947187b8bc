//! `hv-authz`: what the authorization check costs a request, in CPU.
//!
//! It builds the accounts of a busy appliance in a temporary directory
//! (`--users` users with a role on each of `--sites` sites, one session
//! each, and two API tokens each), then times, per request, what the gates
//! do: find the session of a cookie (SHA-256 of the token and a lookup) or
//! the token of a `Bearer` header, and decide the route's rule for the
//! site the request names ([`hitvault_server::rules::check`]). It prints
//! nanoseconds per check (the mean of `--rounds` rounds of `--per-round`
//! checks, and their 50th and 99th percentiles). The goal is under 5 µs.
//!
//!     hv-authz --users 200 --sites 20

use std::sync::Arc;
use std::time::Instant;

use clap::Parser;
use hitvault_accounts::{Accounts, Limits, Policy, Right, Scope, SiteRole, TokenSpec};
use hitvault_server::account::Caller;
use hitvault_server::rules::{Need, SiteIn, check};

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 200)]
    users: u64,
    #[arg(long, default_value_t = 20)]
    sites: u64,
    #[arg(long, default_value_t = 200)]
    rounds: usize,
    #[arg(long, default_value_t = 2000)]
    per_round: usize,
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let dir = tempfile::tempdir()?;
    let now = 1_900_000_000;
    let accounts = Arc::new(Accounts::open(
        dir.path(),
        Policy::default(),
        Limits::default(),
        now,
    )?);
    let sites: Vec<String> = (0..a.sites).map(|i| format!("site{i}.test")).collect();
    let (mut cookies, mut tokens) = (Vec::new(), Vec::new());
    for u in 0..a.users {
        let id = accounts.add_user(&format!("user{u}"), u == 0, now)?;
        for (i, s) in sites.iter().enumerate() {
            let role = SiteRole::ALL[(u as usize + i) % 3];
            accounts.set_role(id, s, Some(role))?;
        }
        cookies.push(accounts.start_session(id, "password", "bench", now)?.token);
        for scope in [Scope::StatsRead, Scope::Export] {
            let spec = TokenSpec {
                name: format!("{scope:?}"),
                sites: vec![sites[u as usize % sites.len()].clone()],
                scopes: vec![scope],
                expires: Some(now + 86_400),
            };
            tokens.push(accounts.create_token(id, spec, false, now)?.secret);
        }
    }
    let need = Need::site(Right::View, SiteIn::Query);
    let query = |i: usize| vec![sites[i % sites.len()].clone()];
    let session_check = |i: usize| {
        let view = accounts.session(&cookies[i % cookies.len()], now + 1);
        let caller = view.map(|v| Caller::Session(Arc::new(v)));
        check(need, caller.as_ref(), None, &query(i)).is_ok()
    };
    let token_check = |i: usize| {
        let view = accounts.token(&tokens[i % tokens.len()], now + 1);
        let caller = view.map(|v| Caller::Token(Arc::new(v)));
        check(need, caller.as_ref(), None, &query(i)).is_ok()
    };
    println!(
        "hv-authz: {} users, {} sites, {} sessions, {} tokens",
        a.users,
        a.sites,
        cookies.len(),
        tokens.len()
    );
    for (label, f) in [
        ("session + rule", &session_check as &dyn Fn(usize) -> bool),
        ("token + rule", &token_check),
    ] {
        let mut per = Vec::with_capacity(a.rounds);
        let mut admitted = 0usize;
        for r in 0..a.rounds {
            let t = Instant::now();
            for i in 0..a.per_round {
                admitted += usize::from(f(r * a.per_round + i));
            }
            per.push(t.elapsed().as_nanos() as f64 / a.per_round as f64);
        }
        let mean = per.iter().sum::<f64>() / per.len() as f64;
        per.sort_by(f64::total_cmp);
        let pct = |p: f64| per[((per.len() - 1) as f64 * p) as usize];
        println!(
            "{label:<16} mean {mean:>7.0} ns/check  p50 {:>7.0}  p99 {:>7.0}  ({admitted} of {} admitted)",
            pct(0.5),
            pct(0.99),
            a.rounds * a.per_round
        );
    }
    Ok(())
}
