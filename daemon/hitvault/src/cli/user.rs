//! `hitvault user list|add|remove|reset|role|admin`: through the running daemon when
//! there is one, else on the accounts' journal directly, holding the data
//! dir's lock (so no daemon starts meanwhile).
//!
//! `add` and `reset` print a one-time set-up link (valid one hour): the
//! user opens it, chooses a password and adds a passkey. No password ever
//! passes through the command line.

use std::net::SocketAddr;

use hitvault_server::account::control::{Invited, RoleChange, UserInfo, info, set_role};

use super::client;
use crate::config::Config;
use crate::datadir::{self, CONTROL_SOCKET, RUN_FILE};
use crate::exit::{Exit, Failure, OrExit};

/// What `hitvault user` was asked to do.
#[derive(Debug, clap::Subcommand)]
pub enum UserCommand {
    /// List the users and their factors.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Add a user and print their one-time set-up link.
    Add {
        name: String,
        /// Make them an admin.
        #[arg(long)]
        admin: bool,
    },
    /// Remove a user, their factors and sessions (not the last admin).
    Remove { name: String },
    /// End every factor and session of a user and print a new set-up link.
    Reset { name: String },
    /// Give a user a role on a site (viewer, editor, owner), or take it
    /// (none).
    Role {
        name: String,
        /// The site's hostname.
        site: String,
        /// viewer, editor, owner or none.
        role: String,
    },
    /// Make a user an admin (yes) or a user (no); the last admin stays.
    Admin {
        name: String,
        #[arg(value_parser = ["yes", "no"])]
        admin: String,
    },
}

enum Done {
    Users(Vec<UserInfo>),
    Invited(Invited),
    Removed(String),
    Changed(UserInfo),
}

/// `hitvault user ...`.
pub fn run(cfg: &Config, cmd: UserCommand) -> Result<(), Failure> {
    let socket = cfg.data_dir.join(CONTROL_SOCKET);
    let done = match client::connect(&socket) {
        Some(conn) => through_daemon(conn, &cmd)?,
        None => offline(cfg, &cmd)?,
    };
    match done {
        Done::Users(users) if matches!(cmd, UserCommand::List { json: true }) => println!(
            "{}",
            serde_json::to_string_pretty(&users).expect("users serialise")
        ),
        Done::Users(users) => {
            println!(
                "{:<24} {:<6} {:<9} {:<9} {:<5} {:<9} SESSIONS",
                "NAME", "ROLE", "PASSKEYS", "PASSWORD", "TOTP", "RECOVERY"
            );
            for u in users {
                println!(
                    "{:<24} {:<6} {:<9} {:<9} {:<5} {:<9} {}",
                    u.name,
                    if u.admin { "admin" } else { "user" },
                    u.passkeys,
                    if u.password { "yes" } else { "no" },
                    if u.totp { "yes" } else { "no" },
                    u.recovery_codes_left,
                    u.sessions
                );
            }
        }
        Done::Invited(i) => {
            let url = crate::links::setup_url(cfg, listening(cfg), &i.token);
            println!(
                "{} {}: set-up link (one use, valid one hour):\n{url}",
                if matches!(cmd, UserCommand::Reset { .. }) {
                    "reset"
                } else {
                    "added"
                },
                i.user.name
            );
        }
        Done::Removed(name) => println!("removed {name}"),
        Done::Changed(u) => {
            let roles: Vec<String> = u.roles.iter().map(|(s, r)| format!("{r} of {s}")).collect();
            println!(
                "{}: {}{}{}",
                u.name,
                if u.admin { "admin" } else { "user" },
                if roles.is_empty() { "" } else { "; " },
                roles.join(", ")
            );
        }
    }
    Ok(())
}

/// Where the daemon listens (its run file, when it runs), else the setting.
fn listening(cfg: &Config) -> SocketAddr {
    std::fs::read(cfg.data_dir.join(RUN_FILE))
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| v["listen"].as_str().and_then(|s| s.parse().ok()))
        .unwrap_or(cfg.listen)
}

fn through_daemon(
    conn: std::os::unix::net::UnixStream,
    cmd: &UserCommand,
) -> Result<Done, Failure> {
    let (method, path, body, ok) = match cmd {
        UserCommand::List { .. } => ("GET", "/users".to_owned(), None, 200),
        UserCommand::Add { name, admin } => (
            "POST",
            "/users".to_owned(),
            Some(serde_json::json!({ "name": name, "admin": admin }).to_string()),
            201,
        ),
        UserCommand::Remove { name } => ("DELETE", format!("/users/{}", encode(name)), None, 204),
        UserCommand::Reset { name } => {
            ("POST", format!("/users/{}/reset", encode(name)), None, 200)
        }
        UserCommand::Role { name, site, role } => (
            "POST",
            format!("/users/{}/role", encode(name)),
            Some(serde_json::json!({ "site": site, "role": role }).to_string()),
            200,
        ),
        UserCommand::Admin { name, admin } => (
            "POST",
            format!("/users/{}/admin", encode(name)),
            Some(serde_json::json!({ "admin": admin == "yes" }).to_string()),
            200,
        ),
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
    Ok(match cmd {
        UserCommand::List { .. } => Done::Users(
            serde_json::from_slice(&reply.body)
                .or_exit_with(Exit::Runtime, |e| format!("bad reply from the daemon: {e}"))?,
        ),
        UserCommand::Add { .. } | UserCommand::Reset { .. } => Done::Invited(
            serde_json::from_slice(&reply.body)
                .or_exit_with(Exit::Runtime, |e| format!("bad reply from the daemon: {e}"))?,
        ),
        UserCommand::Remove { name } => Done::Removed(name.clone()),
        UserCommand::Role { .. } | UserCommand::Admin { .. } => Done::Changed(
            serde_json::from_slice(&reply.body)
                .or_exit_with(Exit::Runtime, |e| format!("bad reply from the daemon: {e}"))?,
        ),
    })
}

/// A user name in a URL path: every byte but letters and digits escaped.
pub(crate) fn encode(name: &str) -> String {
    name.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn offline(cfg: &Config, cmd: &UserCommand) -> Result<Done, Failure> {
    datadir::prepare(&cfg.data_dir)?;
    let _lock = datadir::lock(&cfg.data_dir)?;
    let a = crate::links::open_accounts(cfg)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let usage = |e: hitvault_accounts::AccountError| match e {
        hitvault_accounts::AccountError::Journal(j) => Failure::runtime(j.to_string()),
        e => Failure::usage(e.to_string()),
    };
    let named = |name: &str| {
        a.user_named(name)
            .ok_or_else(|| Failure::usage(format!("no user named {name:?}")))
    };
    Ok(match cmd {
        UserCommand::List { .. } => Done::Users(a.users().iter().map(|u| info(&a, u)).collect()),
        UserCommand::Add { name, admin } => {
            let id = a.add_user(name, *admin, now).map_err(usage)?;
            let token = a.invite(Some(id), *admin, now).map_err(usage)?;
            let u = a.user(id).expect("just added");
            Done::Invited(Invited {
                user: info(&a, &u),
                token,
            })
        }
        UserCommand::Remove { name } => {
            a.remove_user(named(name)?.id).map_err(usage)?;
            Done::Removed(name.clone())
        }
        UserCommand::Reset { name } => {
            let u = named(name)?;
            let token = a.reset_factors(u.id, now).map_err(usage)?;
            Done::Invited(Invited {
                user: info(&a, &u),
                token,
            })
        }
        UserCommand::Role { name, site, role } => {
            let sites = super::site::offline_hostnames(cfg)?;
            let change = RoleChange {
                site: site.clone(),
                role: role.clone(),
            };
            Done::Changed(set_role(&a, &sites, name, &change).map_err(usage)?)
        }
        UserCommand::Admin { name, admin } => {
            let u = named(name)?;
            a.set_admin(u.id, admin == "yes").map_err(usage)?;
            Done::Changed(info(&a, &a.user(u.id).expect("still there")))
        }
    })
}
