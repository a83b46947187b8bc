//! `hitvault token create|list|revoke`: API tokens, through the running
//! daemon when there is one, else on the accounts' journal directly,
//! holding the data dir's lock.
//!
//! A token is printed once, at creation; only its SHA-256 is kept. It acts
//! for its user, narrowed to its scopes and sites (see the guide's "Users,
//! roles and tokens").

use hitvault_server::account::control::{
    CreatedToken, NewToken, TokenInfo, create_token, named, token_info,
};

use super::client;
use crate::config::Config;
use crate::datadir::{self, CONTROL_SOCKET};
use crate::exit::{Exit, Failure, OrExit};

/// What `hitvault token` was asked to do.
#[derive(Debug, clap::Subcommand)]
pub enum TokenCommand {
    /// Make a token for a user and print it (once).
    Create {
        /// The user it acts for.
        #[arg(long)]
        user: String,
        /// A name to recognise it by.
        #[arg(long)]
        name: String,
        /// stats:read, ingest, export or admin; repeat for more.
        #[arg(long = "scope", required = true)]
        scopes: Vec<String>,
        /// A site (hostname) it is limited to; repeat for more; none: every
        /// site its user may reach.
        #[arg(long = "site")]
        sites: Vec<String>,
        /// When it stops working: a duration (`90d`, `12h`, `30m`, `45s`), a
        /// date (`2027-06-30`, midnight UTC), or `never`.
        #[arg(long)]
        expires: String,
    },
    /// List tokens (never their secrets).
    List {
        /// Only this user's.
        #[arg(long)]
        user: Option<String>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a token: the next request that sends it is refused.
    Revoke { id: u64 },
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// `--expires` as unix seconds (`None`: never).
pub fn parse_expires(s: &str, now: u64) -> Result<Option<u64>, String> {
    if s == "never" {
        return Ok(None);
    }
    let unit = |c: char| match c {
        'd' => Some(86_400),
        'h' => Some(3_600),
        'm' => Some(60),
        's' => Some(1),
        _ => None,
    };
    if let Some(last) = s.chars().last()
        && let Some(mult) = unit(last)
        && let Ok(n) = s[..s.len() - 1].parse::<u64>()
    {
        return Ok(Some(now + n * mult));
    }
    match s.parse::<jiff::civil::Date>() {
        Ok(d) => jiff::tz::TimeZone::UTC
            .to_timestamp(d.to_datetime(jiff::civil::Time::midnight()))
            .map(|t| Some(t.as_second().max(0) as u64))
            .map_err(|e| format!("--expires {s:?}: {e}")),
        Err(_) => Err(format!(
            "--expires {s:?} is none of: a duration (90d, 12h, 30m, 45s), a date (2027-06-30), never"
        )),
    }
}

enum Done {
    Created(CreatedToken),
    Listed(Vec<TokenInfo>),
    Revoked(TokenInfo),
}

/// `hitvault token ...`.
pub fn run(cfg: &Config, cmd: TokenCommand) -> Result<(), Failure> {
    let socket = cfg.data_dir.join(CONTROL_SOCKET);
    let done = match client::connect(&socket) {
        Some(conn) => through_daemon(conn, &cmd)?,
        None => offline(cfg, &cmd)?,
    };
    let when = |t: Option<u64>| match t {
        None => "-".to_owned(),
        Some(t) => jiff::Timestamp::from_second(t as i64)
            .map(|t| t.strftime("%Y-%m-%d %H:%M").to_string())
            .unwrap_or_default(),
    };
    match done {
        Done::Created(c) => {
            println!(
                "token {} for {} ({}), expires {}:\n{}\nIt is shown this once; keep it like a password.",
                c.token.id,
                c.token.user,
                c.token.scopes.join(" "),
                c.token
                    .expires
                    .map_or("never".to_owned(), |e| when(Some(e))),
                c.secret
            );
        }
        Done::Listed(list) if matches!(cmd, TokenCommand::List { json: true, .. }) => println!(
            "{}",
            serde_json::to_string_pretty(&list).expect("tokens serialise")
        ),
        Done::Listed(list) => {
            println!(
                "{:<5} {:<16} {:<20} {:<28} {:<24} {:<16} LAST USED",
                "ID", "USER", "NAME", "SCOPES", "SITES", "EXPIRES"
            );
            for t in list {
                println!(
                    "{:<5} {:<16} {:<20} {:<28} {:<24} {:<16} {}",
                    t.id,
                    t.user,
                    t.name,
                    t.scopes.join(","),
                    if t.sites.is_empty() {
                        "(all of the user's)".to_owned()
                    } else {
                        t.sites.join(",")
                    },
                    t.expires.map_or("never".to_owned(), |e| when(Some(e))),
                    when(t.last_used)
                );
            }
        }
        Done::Revoked(t) => println!("revoked token {} ({}) of {}", t.id, t.name, t.user),
    }
    Ok(())
}

fn new_token(cmd: &TokenCommand) -> Result<Option<NewToken>, Failure> {
    let TokenCommand::Create {
        user,
        name,
        scopes,
        sites,
        expires,
    } = cmd
    else {
        return Ok(None);
    };
    Ok(Some(NewToken {
        user: user.clone(),
        name: name.clone(),
        scopes: scopes.clone(),
        sites: sites.clone(),
        expires: parse_expires(expires, unix_now()).map_err(Failure::usage)?,
    }))
}

fn through_daemon(
    conn: std::os::unix::net::UnixStream,
    cmd: &TokenCommand,
) -> Result<Done, Failure> {
    let (method, path, body, ok) = match cmd {
        TokenCommand::Create { .. } => (
            "POST",
            "/tokens".to_owned(),
            Some(serde_json::to_string(&new_token(cmd)?).expect("serialises")),
            201,
        ),
        TokenCommand::List { user, .. } => (
            "GET",
            match user {
                Some(u) => format!("/tokens?user={}", super::user::encode(u)),
                None => "/tokens".to_owned(),
            },
            None,
            200,
        ),
        TokenCommand::Revoke { id } => ("DELETE", format!("/tokens/{id}"), None, 200),
    };
    let reply = client::request(conn, method, &path, body.as_deref().map(str::as_bytes))
        .or_exit(Exit::Runtime)?;
    if reply.status != ok {
        return Err(client::refusal(
            reply.status,
            &reply.body,
            "the daemon refused the request",
        ));
    }
    let bad = |e: &dyn std::fmt::Display| format!("bad reply from the daemon: {e}");
    Ok(match cmd {
        TokenCommand::Create { .. } => {
            Done::Created(serde_json::from_slice(&reply.body).or_exit_with(Exit::Runtime, bad)?)
        }
        TokenCommand::List { .. } => {
            Done::Listed(serde_json::from_slice(&reply.body).or_exit_with(Exit::Runtime, bad)?)
        }
        TokenCommand::Revoke { .. } => {
            Done::Revoked(serde_json::from_slice(&reply.body).or_exit_with(Exit::Runtime, bad)?)
        }
    })
}

fn offline(cfg: &Config, cmd: &TokenCommand) -> Result<Done, Failure> {
    datadir::prepare(&cfg.data_dir)?;
    let _lock = datadir::lock(&cfg.data_dir)?;
    let a = crate::links::open_accounts(cfg)?;
    let usage = |e: hitvault_accounts::AccountError| match e {
        hitvault_accounts::AccountError::Journal(j) => Failure::runtime(j.to_string()),
        e => Failure::usage(e.to_string()),
    };
    Ok(match cmd {
        TokenCommand::Create { .. } => {
            let new = new_token(cmd)?.expect("a create command");
            let sites = super::site::offline_hostnames(cfg)?;
            Done::Created(create_token(&a, &sites, &new, unix_now()).map_err(usage)?)
        }
        TokenCommand::List { user, .. } => {
            let id = match user {
                Some(u) => Some(named(&a, u).map_err(usage)?.id),
                None => None,
            };
            Done::Listed(a.tokens(id).iter().map(|t| token_info(&a, t)).collect())
        }
        TokenCommand::Revoke { id } => {
            let t = a.revoke_token(*id, None).map_err(usage)?;
            Done::Revoked(token_info(&a, &t))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiries_parse_as_durations_dates_or_never() {
        let now = 1_000_000;
        assert_eq!(parse_expires("never", now), Ok(None));
        assert_eq!(parse_expires("90d", now), Ok(Some(now + 90 * 86_400)));
        assert_eq!(parse_expires("12h", now), Ok(Some(now + 12 * 3_600)));
        assert_eq!(parse_expires("30m", now), Ok(Some(now + 1_800)));
        assert_eq!(parse_expires("5s", now), Ok(Some(now + 5)));
        assert_eq!(parse_expires("2027-06-30", now), Ok(Some(1_814_313_600)));
        for bad in ["", "d", "10x", "tomorrow", "2027-13-01"] {
            assert!(parse_expires(bad, now).is_err(), "{bad}");
        }
    }
}
