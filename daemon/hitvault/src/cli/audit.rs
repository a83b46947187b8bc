//! `hitvault audit`: the newest entries of the audit log, filtered, as a
//! table or NDJSON; through the running daemon when there is one
//! (`GET /audit` on the control socket), else straight from
//! `<data dir>/accounts/audit.jsonl` (read only: no lock is needed).

use hitvault_accounts::audit::{self, Entry};
use hitvault_server::audit::{AuditQuery, CONTROL_DEFAULT_LIMIT, detail_text, time_text};

use super::client;
use crate::config::Config;
use crate::datadir::{ACCOUNTS_DIR, CONTROL_SOCKET};
use crate::exit::{Exit, Failure, OrExit};

/// How `hitvault audit` prints.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum AuditFormat {
    Table,
    Ndjson,
}

/// `hitvault audit [--kind K] [--actor A] [--since T] [--until T] [--limit N] [--format F]`.
#[derive(Debug, clap::Args)]
pub struct AuditArgs {
    /// Only entries of this kind (repeatable): sign_in, export, user_added...
    #[arg(long, value_name = "KIND")]
    pub kind: Vec<String>,
    /// Only this actor: a user name, or local, cli, system, token, share, anonymous.
    #[arg(long, value_name = "ACTOR")]
    pub actor: Option<String>,
    /// Entries at or after this time (RFC 3339, or a date: midnight UTC).
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Entries before this time (RFC 3339, or a date: midnight UTC).
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,
    /// The newest N entries (1 to 10000).
    #[arg(long, value_name = "N", default_value_t = CONTROL_DEFAULT_LIMIT)]
    pub limit: usize,
    /// table (newest first) or ndjson (one entry per line, newest first).
    #[arg(long, value_enum, default_value = "table")]
    pub format: AuditFormat,
}

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b':' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The query string of `a`, as `GET /audit` reads it.
fn query_string(a: &AuditArgs) -> String {
    let mut parts: Vec<String> = a.kind.iter().map(|k| format!("kind={}", enc(k))).collect();
    for (k, v) in [
        ("actor", &a.actor),
        ("since", &a.since),
        ("until", &a.until),
    ] {
        if let Some(v) = v {
            parts.push(format!("{k}={}", enc(v)));
        }
    }
    parts.push(format!("limit={}", a.limit));
    parts.join("&")
}

/// `hitvault audit`.
pub fn run(cfg: &Config, a: &AuditArgs) -> Result<(), Failure> {
    let qs = query_string(a);
    // Checked here first, so that a bad flag names itself either way.
    let q = AuditQuery::parse(Some(&qs)).map_err(|(p, m)| {
        let flag = if p == "from" { "since" } else { p.as_str() };
        Failure::usage(format!("--{flag}: {m}"))
    })?;
    let socket = cfg.data_dir.join(CONTROL_SOCKET);
    let entries: Vec<Entry> = match client::connect(&socket) {
        Some(conn) => {
            let reply = client::request(conn, "GET", &format!("/audit?{qs}"), None)
                .or_exit(Exit::Runtime)?;
            if reply.status != 200 {
                return Err(client::refusal(
                    reply.status,
                    &reply.body,
                    "the daemon refused to read the audit log",
                ));
            }
            serde_json::from_slice(&reply.body)
                .or_exit_with(Exit::Runtime, |e| format!("bad reply from the daemon: {e}"))?
        }
        None => audit::query_file(
            &cfg.data_dir.join(ACCOUNTS_DIR).join(audit::FILE),
            &q.filter,
            q.limit.unwrap_or(CONTROL_DEFAULT_LIMIT),
        )
        .or_exit(Exit::Runtime)?,
    };
    match a.format {
        AuditFormat::Ndjson => {
            for e in &entries {
                println!("{}", serde_json::to_string(e).expect("entries serialise"));
            }
        }
        AuditFormat::Table => {
            println!(
                "{:>6}  {:<23}  {:<20}  {:<15}  {:<18}  {:<20}  DETAIL",
                "SEQ", "TIME", "ACTOR", "ADDRESS", "KIND", "SITE"
            );
            for e in &entries {
                println!(
                    "{:>6}  {:<23}  {:<20}  {:<15}  {:<18}  {:<20}  {}",
                    e.seq,
                    time_text(e.at),
                    e.actor.label(),
                    e.address.as_deref().unwrap_or("-"),
                    e.kind.as_str(),
                    e.site.as_deref().unwrap_or("-"),
                    detail_text(e)
                );
            }
        }
    }
    Ok(())
}
