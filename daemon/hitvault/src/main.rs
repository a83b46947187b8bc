//! `hitvault`: the one binary. Parses the command line, loads the
//! configuration once, and hands over to the daemon (`serve`, `sandbox`) or
//! a command of [`cli`]. A failure prints `hitvault: <message>` on stderr and
//! exits with its [`exit::Exit`] status.
//!
//! The rooms: [`daemon`] (the running daemon) and [`cli`] (the other
//! commands) never import each other; they share the leaves [`config`],
//! [`datadir`], [`exit`], [`control`], [`sites`], [`retention`] and
//! [`replay`].

mod cli;
mod config;
mod control;
mod daemon;
mod datadir;
mod exit;
mod links;
mod replay;
mod retention;
mod sites;

use std::collections::BTreeMap;
use std::process::ExitCode;

use clap::Parser;

use crate::cli::args::{Cli, Command, SandboxCommand, TakeoutArgs, TakeoutCommand};
use crate::config::{Config, LogFormat, Overrides};
use crate::exit::{Exit, Failure, OrExit};

fn init_logging(cfg: &Config) {
    // openraft logs every heartbeat's vote at info (0.9.14 on), and every
    // failed heartbeat to an absent node as an error: none of it unless the
    // filter names it (the cluster logs its role changes and a stop itself).
    let level = if cfg.log_level.contains("openraft") {
        cfg.log_level.clone()
    } else {
        format!("{},openraft=off", cfg.log_level)
    };
    let filter = tracing_subscriber::EnvFilter::try_new(&level).unwrap_or_else(|_| "info".into());
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
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(f) => {
            eprintln!("hitvault: {f}");
            ExitCode::from(f.exit.code())
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode, Failure> {
    let env: BTreeMap<String, String> = std::env::vars().collect();
    let mut flags = Overrides {
        config: cli.config,
        data_dir: cli.data_dir,
        listen: cli.listen,
        user: cli.user,
        seccomp: cli.seccomp,
        landlock: cli.landlock,
    };
    match cli.command {
        // Needs no configuration: a Takeout is checked against itself.
        Command::Takeout(TakeoutArgs {
            command: Some(TakeoutCommand::Verify { dir }),
            ..
        }) => return done(cli::takeout::verify(&dir)),
        // The file to check is the configuration file.
        Command::CheckConfig { ref file } => flags.config = Some(file.clone()),
        _ => {}
    }
    let mut cfg = Config::load(&env, &flags).or_exit(Exit::Usage)?;
    let chose = cfg
        .started_as(euid(), |name| {
            hitvault_sandbox::privileges::lookup(name).is_ok()
        })
        .or_exit(Exit::Usage)?;
    match cli.command {
        Command::CheckConfig { .. } => {
            println!(
                "{}",
                serde_json::to_string_pretty(&cfg).expect("config serialises")
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve => serve(cfg, &chose, &env),
        Command::Takeout(args) => {
            let dir = args.to.ok_or_else(|| {
                Failure::usage("takeout needs --to DIR (or the `verify DIR` command)")
            })?;
            let q = hitvault_server::ExportQuery {
                sites: args.sites,
                from: args.from,
                until: args.until,
                format: None,
                table: None,
                bundle: None,
            };
            match (args.stick_label, args.stick_device) {
                (Some(label), Some(device)) => done(cli::takeout::stick(
                    &cfg,
                    &dir,
                    args.format,
                    q,
                    cli::takeout::Stick { label, device },
                )),
                _ => done(cli::takeout::export(&cfg, &dir, args.format, q)),
            }
        }
        Command::Import { dir } => done(cli::import::import(&cfg, &dir)),
        Command::ImportPlausible { site, path } => {
            done(cli::import_plausible::import(&cfg, &site, &path))
        }
        Command::Backup { dir } => done(cli::backup::backup(&cfg, &dir)),
        Command::Restore { dir } => done(cli::backup::restore(&cfg, &dir)),
        Command::Prune { dry_run } => done(cli::prune::prune(&cfg, dry_run)),
        Command::Site { command } => done(cli::site::run(&cfg, command)),
        Command::User { command } => done(cli::user::run(&cfg, command)),
        Command::Token { command } => done(cli::token::run(&cfg, command)),
        Command::Audit(args) => done(cli::audit::run(&cfg, &args)),
        Command::Cluster { command } => done(cli::cluster::run(&cfg, &command)),
        Command::Sandbox {
            command: SandboxCommand::Show,
        } => {
            for l in daemon::confine::show(&cfg).or_exit(Exit::Runtime)? {
                println!("{l}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Sandbox {
            command: SandboxCommand::Check,
        } => {
            let owner = daemon::confine::resolve_user(&cfg).or_exit(Exit::Usage)?;
            let code = daemon::confine::check(&cfg, owner.as_ref())?;
            Ok(ExitCode::from(code))
        }
    }
}

fn euid() -> u32 {
    // SAFETY: a plain query.
    unsafe { libc::geteuid() }
}

fn done(r: Result<(), Failure>) -> Result<ExitCode, Failure> {
    r.map(|()| ExitCode::SUCCESS)
}

/// `hitvault serve`: logging (first what [`Config::started_as`] chose), the
/// account to become, systemd's notify socket, then the daemon until it
/// stops.
fn serve(
    cfg: Config,
    chose: &[String],
    env: &BTreeMap<String, String>,
) -> Result<ExitCode, Failure> {
    init_logging(&cfg);
    for line in chose {
        tracing::info!("{line}");
    }
    let earlier = std::path::Path::new(config::DEFAULT_DATA_DIR).join(hitvault_store::DB_FILE);
    if cfg.data_dir_is_default() && earlier.exists() && euid() == 0 {
        tracing::warn!(
            "{} holds a database from an earlier run, but started as root the data dir is {}: \
             pass `--data-dir {}` to keep using it",
            earlier.display(),
            config::ROOT_DATA_DIR,
            config::DEFAULT_DATA_DIR
        );
    }
    let owner = daemon::confine::resolve_user(&cfg).or_exit(Exit::Usage)?;
    let notifier = hitvault_sandbox::notify::Notifier::from_env(|k| env.get(k).cloned())
        .or_exit_with(Exit::Startup, |e| format!("NOTIFY_SOCKET: {e}"))?;
    daemon::serve(cfg, owner, notifier).inspect_err(|e| {
        tracing::error!(error = %e, "hitvault stopped");
    })?;
    Ok(ExitCode::SUCCESS)
}
