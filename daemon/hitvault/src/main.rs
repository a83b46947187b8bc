//! `hitvault`: the one binary. Parses the command line, loads the
//! configuration, and hands over to the daemon or a CLI command.
//!
//! Exit codes: 0 success; 1 runtime failure; 2 bad configuration or usage;
//! 3 startup failure (a path, port or database not as configured).

mod backup;
mod batcher;
mod client;
mod config;
mod confinement;
mod daemon;
mod plausible;
mod retention;
mod takeout;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{Config, LogFormat, Overrides};

#[derive(Parser, Debug)]
#[command(
    name = "hitvault",
    version,
    about = "Sovereign web analytics: durable ingest into DuckDB, no outbound connections."
)]
struct Cli {
    /// Configuration file (TOML, or JSON when it ends in .json). Also HITVAULT_CONFIG.
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Data directory. Also HITVAULT_DATA_DIR. Default ./data.
    #[arg(long, global = true, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// HTTP listen address host:port. Also HITVAULT_LISTEN. Default 127.0.0.1:8080.
    #[arg(long, global = true, value_name = "ADDR")]
    listen: Option<String>,
    /// Account to switch to when started as root (then required). Also HITVAULT_USER.
    #[arg(long, global = true, value_name = "NAME")]
    user: Option<String>,
    /// seccomp: `enforce` (unlisted calls kill the process) or `audit` (logged). Also HITVAULT_SECCOMP.
    #[arg(long, global = true, value_name = "MODE")]
    seccomp: Option<String>,
    /// Landlock: `best-effort` or `required` (refuse to start without file and TCP rules). Also HITVAULT_LANDLOCK.
    #[arg(long, global = true, value_name = "POLICY")]
    landlock: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the daemon.
    Serve,
    /// Check a configuration file (with the environment applied) and print the result.
    CheckConfig {
        /// The file to check.
        file: PathBuf,
    },
    /// Manage sites (through the running daemon if there is one).
    Site {
        #[command(subcommand)]
        command: SiteCommand,
    },
    /// Export hits, their props, the sites, their goals and funnels and
    /// their imported history into a Takeout directory (through the running
    /// daemon if there is one), or check one.
    Takeout(TakeoutArgs),
    /// Load a Takeout directory into the data dir (through the running daemon
    /// if there is one). Hits already present (same id) are left as they are;
    /// a goal or funnel whose name is taken by another definition is reported;
    /// an imported day of a site replaces this instance's rows of that day.
    Import {
        /// The Takeout directory (with its MANIFEST).
        dir: PathBuf,
    },
    /// Load Plausible's CSV export (a directory of imported_*.csv files, or
    /// the zip) into the imported history of a site (through the running
    /// daemon if there is one). Replaces that site's imported days in the
    /// export's date range.
    ImportPlausible {
        /// The site (hostname) the export belongs to; it must exist.
        #[arg(long, value_name = "HOST")]
        site: String,
        /// The export: a directory of CSV files, or the zip.
        path: PathBuf,
    },
    /// Copy the whole database, consistently, into a new or empty directory
    /// (through the running daemon if there is one), with a BACKUP manifest.
    Backup {
        /// Directory to write.
        dir: PathBuf,
    },
    /// Restore a backup into an empty or new data dir (--data-dir).
    Restore {
        /// The backup directory (with its BACKUP manifest).
        dir: PathBuf,
    },
    /// Archive (Parquet Takeout in retention.archive_dir) and delete hits
    /// older than their site's retention period (through the running daemon
    /// if there is one).
    Prune {
        /// Only show what would go: per site, rows and time range.
        #[arg(long)]
        dry_run: bool,
    },
    /// Show or prove the confinement `serve` applies with this configuration.
    Sandbox {
        #[command(subcommand)]
        command: SandboxCommand,
    },
}

#[derive(clap::Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
struct TakeoutArgs {
    #[command(subcommand)]
    command: Option<TakeoutCommand>,
    /// Directory to write (created; must be new or empty).
    #[arg(long, value_name = "DIR")]
    to: Option<PathBuf>,
    /// parquet, csv, json or ndjson.
    #[arg(long, default_value = "parquet")]
    format: hitvault_takeout::Format,
    /// Only this site's data (hostname; repeatable).
    #[arg(long = "site", value_name = "HOST")]
    sites: Vec<String>,
    /// Hits at or after this time (RFC 3339, or a date: midnight UTC);
    /// imported days whose UTC midnight is at or after it.
    #[arg(long, value_name = "TIME")]
    from: Option<String>,
    /// Hits before this time (RFC 3339, or a date: midnight UTC); imported
    /// days that end (next UTC midnight) at or before it.
    #[arg(long, value_name = "TIME")]
    until: Option<String>,
}

#[derive(Subcommand, Debug)]
enum TakeoutCommand {
    /// Check a Takeout against its MANIFEST: every file present, its size,
    /// SHA-256 and row count; exit 1 on any mismatch.
    Verify { dir: PathBuf },
}

#[derive(Subcommand, Debug)]
enum SandboxCommand {
    /// Print every rule derived from the configuration, in the order applied.
    Show,
    /// Confine child processes exactly as `serve` confines itself, try what
    /// must be refused and what must work, and report each; exit 1 if any
    /// forbidden action succeeds or any needed one fails.
    Check,
}

#[derive(Subcommand, Debug)]
enum SiteCommand {
    /// Add a site by hostname.
    Add {
        hostname: String,
        /// Another hostname that counts as this site (repeatable).
        #[arg(long = "alias")]
        aliases: Vec<String>,
    },
    /// List the declared and added sites.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

fn init_logging(cfg: &Config) {
    let filter =
        tracing_subscriber::EnvFilter::try_new(&cfg.log_level).unwrap_or_else(|_| "info".into());
    // Colours only on a terminal: under systemd, stderr goes to the journal.
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match cfg.log_format {
        LogFormat::Json => b.json().init(),
        LogFormat::Text => b.init(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let env: BTreeMap<String, String> = std::env::vars().collect();
    let flags = Overrides {
        config: cli.config.clone(),
        data_dir: cli.data_dir.clone(),
        listen: cli.listen.clone(),
        user: cli.user.clone(),
        seccomp: cli.seccomp.clone(),
        landlock: cli.landlock.clone(),
    };
    let code = match cli.command {
        Command::CheckConfig { file } => {
            let flags = Overrides {
                config: Some(file),
                ..flags
            };
            match Config::load(&env, &flags) {
                Ok(c) => {
                    println!(
                        "{}",
                        serde_json::to_string_pretty(&c).expect("config serialises")
                    );
                    0
                }
                Err(e) => {
                    eprintln!("hitvault: {e}");
                    2
                }
            }
        }
        Command::Serve => match Config::load(&env, &flags) {
            Err(e) => {
                eprintln!("hitvault: {e}");
                2
            }
            Ok(cfg) => {
                init_logging(&cfg);
                let owner = match confinement::resolve_user(&cfg) {
                    Ok(o) => o,
                    Err(e) => {
                        eprintln!("hitvault: {e}");
                        return ExitCode::from(2);
                    }
                };
                let notifier =
                    match hitvault_sandbox::notify::Notifier::from_env(|k| env.get(k).cloned()) {
                        Ok(n) => n,
                        Err(e) => {
                            eprintln!("hitvault: NOTIFY_SOCKET: {e}");
                            return ExitCode::from(3);
                        }
                    };
                match daemon::serve(cfg, owner, notifier) {
                    Ok(()) => 0,
                    Err(e) => {
                        tracing::error!(error = %e, "hitvault stopped");
                        eprintln!("hitvault: {e}");
                        e.exit_code()
                    }
                }
            }
        },
        Command::Takeout(TakeoutArgs {
            command: Some(TakeoutCommand::Verify { dir }),
            ..
        }) => report(takeout::verify(&dir)),
        Command::Takeout(args) => match Config::load(&env, &flags) {
            Err(e) => {
                eprintln!("hitvault: {e}");
                2
            }
            Ok(cfg) => match args.to {
                None => {
                    eprintln!("hitvault: takeout needs --to DIR (or the `verify DIR` command)");
                    2
                }
                Some(dir) => {
                    let q = hitvault_server::ExportQuery {
                        sites: args.sites,
                        from: args.from,
                        until: args.until,
                        format: None,
                        table: None,
                        bundle: None,
                    };
                    report(takeout::export(&cfg, &dir, args.format, q))
                }
            },
        },
        Command::Import { dir } => match Config::load(&env, &flags) {
            Err(e) => {
                eprintln!("hitvault: {e}");
                2
            }
            Ok(cfg) => report(takeout::import(&cfg, &dir)),
        },
        Command::ImportPlausible { site, path } => match Config::load(&env, &flags) {
            Err(e) => {
                eprintln!("hitvault: {e}");
                2
            }
            Ok(cfg) => report(plausible::import(&cfg, &site, &path)),
        },
        Command::Backup { dir } => match Config::load(&env, &flags) {
            Err(e) => {
                eprintln!("hitvault: {e}");
                2
            }
            Ok(cfg) => report(backup::backup(&cfg, &dir)),
        },
        Command::Restore { dir } => match Config::load(&env, &flags) {
            Err(e) => {
                eprintln!("hitvault: {e}");
                2
            }
            Ok(cfg) => report(backup::restore(&cfg, &dir)),
        },
        Command::Prune { dry_run } => match Config::load(&env, &flags) {
            Err(e) => {
                eprintln!("hitvault: {e}");
                2
            }
            Ok(cfg) => report(backup::prune(&cfg, dry_run)),
        },
        Command::Sandbox { command } => match Config::load(&env, &flags) {
            Err(e) => {
                eprintln!("hitvault: {e}");
                2
            }
            Ok(cfg) => sandbox(&cfg, command),
        },
        Command::Site { command } => match Config::load(&env, &flags) {
            Err(e) => {
                eprintln!("hitvault: {e}");
                2
            }
            Ok(cfg) => match site(&cfg, command) {
                Ok(()) => 0,
                Err((code, msg)) => {
                    eprintln!("hitvault: {msg}");
                    code
                }
            },
        },
    };
    ExitCode::from(code as u8)
}

fn report(r: Result<(), takeout::CliError>) -> i32 {
    match r {
        Ok(()) => 0,
        Err((code, msg)) => {
            eprintln!("hitvault: {msg}");
            code
        }
    }
}

fn sandbox(cfg: &Config, cmd: SandboxCommand) -> i32 {
    match cmd {
        SandboxCommand::Show => match confinement::show(cfg) {
            Ok(lines) => {
                for l in lines {
                    println!("{l}");
                }
                0
            }
            Err(e) => {
                eprintln!("hitvault: {e}");
                1
            }
        },
        SandboxCommand::Check => {
            let owner = match confinement::resolve_user(cfg) {
                Ok(o) => o,
                Err(e) => {
                    eprintln!("hitvault: {e}");
                    return 2;
                }
            };
            match confinement::check(cfg, owner.as_ref()) {
                Ok(code) => code,
                Err(e) => {
                    eprintln!("hitvault: {e}");
                    e.exit_code()
                }
            }
        }
    }
}

fn site(cfg: &Config, cmd: SiteCommand) -> Result<(), (i32, String)> {
    use hitvault_server::SiteInfo;
    let socket = cfg.data_dir.join(daemon::CONTROL_SOCKET);
    let sites: Vec<SiteInfo> = match (&cmd, client::connect(&socket)) {
        (SiteCommand::Add { hostname, aliases }, Some(conn)) => {
            let body = serde_json::json!({ "hostname": hostname, "aliases": aliases }).to_string();
            let reply = client::request(conn, "POST", "/sites", Some(body.as_bytes()))
                .map_err(|e| (1, e.to_string()))?;
            if reply.status != 201 {
                return Err(client::refusal(
                    reply.status,
                    &reply.body,
                    "the daemon refused the request",
                ));
            }
            vec![serde_json::from_slice(&reply.body).map_err(|e| (1, e.to_string()))?]
        }
        (SiteCommand::List { .. }, Some(conn)) => {
            let reply =
                client::request(conn, "GET", "/sites", None).map_err(|e| (1, e.to_string()))?;
            serde_json::from_slice(&reply.body)
                .map_err(|e| (1, format!("bad reply from the daemon: {e}")))?
        }
        (_, None) => {
            // No daemon: work on the store directly (its file lock keeps a daemon
            // from starting meanwhile).
            daemon::prepare_data_dir(&cfg.data_dir).map_err(|e| (3, e.to_string()))?;
            let opts = hitvault_store::StoreOptions::default();
            let mut store = hitvault_store::Store::open(&cfg.data_dir, &opts)
                .map_err(|e| (3, e.to_string()))?;
            let declared = cfg.declared_sites();
            match &cmd {
                SiteCommand::Add { hostname, aliases } => {
                    let norm = |h: &String| {
                        hitvault_core::sites::normalize_host(h)
                            .map_err(|e| (2, format!("{h:?}: {e}")))
                    };
                    let host = norm(hostname)?;
                    let aliases = aliases.iter().map(norm).collect::<Result<Vec<_>, _>>()?;
                    let mut reg = daemon::registry(&declared, &store).map_err(|e| (1, e))?;
                    reg.add(&host, aliases.clone())
                        .map_err(|e| (2, e.to_string()))?;
                    let row = store
                        .upsert_site(&host, &aliases, "runtime")
                        .map_err(|e| (2, e.to_string()))?;
                    vec![SiteInfo {
                        hostname: row.hostname,
                        aliases: row.aliases,
                        origin: row.origin,
                    }]
                }
                SiteCommand::List { .. } => {
                    daemon::list_sites(&store, &declared).map_err(|e| (1, e))?
                }
            }
        }
    };
    match cmd {
        SiteCommand::Add { .. } => println!("added {}", sites[0].hostname),
        SiteCommand::List { json: true } => {
            println!(
                "{}",
                serde_json::to_string_pretty(&sites).expect("sites serialise")
            );
        }
        SiteCommand::List { json: false } => {
            println!("{:<40} {:<8} ALIASES", "HOSTNAME", "ORIGIN");
            for s in sites {
                println!("{:<40} {:<8} {}", s.hostname, s.origin, s.aliases.join(","));
            }
        }
    }
    Ok(())
}
