//! The command line: every command, flag and argument, as clap reads them.
//! `main` dispatches each command to `daemon` (`serve`, `sandbox`) or to a
//! command file beside this one.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "hitvault",
    version,
    about = "Sovereign web analytics: durable ingest into DuckDB, no outbound connections."
)]
pub struct Cli {
    /// Configuration file (TOML, or JSON when it ends in .json). Also HITVAULT_CONFIG.
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Data directory. Also HITVAULT_DATA_DIR. Default ./data, or /var/lib/hitvault as root.
    #[arg(long, global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// HTTP listen address host:port. Also HITVAULT_LISTEN. Default 127.0.0.1:8080.
    #[arg(long, global = true, value_name = "ADDR")]
    pub listen: Option<String>,
    /// Account to switch to when started as root (then required); `auto`: `hitvault`, else `nobody`. Also HITVAULT_USER.
    #[arg(long, global = true, value_name = "NAME")]
    pub user: Option<String>,
    /// seccomp: `enforce` (unlisted calls kill the process) or `audit` (logged). Also HITVAULT_SECCOMP.
    #[arg(long, global = true, value_name = "MODE")]
    pub seccomp: Option<String>,
    /// Landlock: `best-effort` or `required` (refuse to start without file and TCP rules). Also HITVAULT_LANDLOCK.
    #[arg(long, global = true, value_name = "POLICY")]
    pub landlock: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
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
        command: super::site::SiteCommand,
    },
    /// Manage users: list, add (prints a one-time set-up link), remove, or
    /// reset their factors (through the running daemon if there is one).
    User {
        #[command(subcommand)]
        command: super::user::UserCommand,
    },
    /// Manage API tokens: create (printed once), list, revoke (through the
    /// running daemon if there is one).
    Token {
        #[command(subcommand)]
        command: super::token::TokenCommand,
    },
    /// Show the audit log's newest entries, filtered (through the running
    /// daemon if there is one, else from the file).
    Audit(super::audit::AuditArgs),
    /// The cluster's members: status, add a node, remove one (through the
    /// running daemon).
    Cluster {
        #[command(subcommand)]
        command: super::cluster::ClusterCommand,
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
pub struct TakeoutArgs {
    #[command(subcommand)]
    pub command: Option<TakeoutCommand>,
    /// Directory to write (created; must be new or empty).
    #[arg(long, value_name = "DIR")]
    pub to: Option<PathBuf>,
    /// parquet, csv, json or ndjson.
    #[arg(long, default_value = "parquet")]
    pub format: hitvault_takeout::Format,
    /// Only this site's data (hostname; repeatable).
    #[arg(long = "site", value_name = "HOST")]
    pub sites: Vec<String>,
    /// Hits at or after this time (RFC 3339, or a date: midnight UTC);
    /// imported days whose UTC midnight is at or after it.
    #[arg(long, value_name = "TIME")]
    pub from: Option<String>,
    /// Hits before this time (RFC 3339, or a date: midnight UTC); imported
    /// days that end (next UTC midnight) at or before it.
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,
    /// The export goes onto the USB stick with this file system label (the
    /// appliance's stick unit): it is verified and the stick synced, and
    /// the outcome is recorded for the dashboard (/admin/usb-takeouts).
    #[arg(long, value_name = "LABEL", requires = "stick_device")]
    pub stick_label: Option<String>,
    /// The stick's device (sdb1), with --stick-label.
    #[arg(long, value_name = "DEV", requires = "stick_label")]
    pub stick_device: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum TakeoutCommand {
    /// Check a Takeout against its MANIFEST: every file present, its size,
    /// SHA-256 and row count; exit 1 on any mismatch.
    Verify { dir: PathBuf },
}

#[derive(Subcommand, Debug)]
pub enum SandboxCommand {
    /// Print every rule derived from the configuration, in the order applied.
    Show,
    /// Confine child processes exactly as `serve` confines itself, try what
    /// must be refused and what must work, and report each; exit 1 if any
    /// forbidden action succeeds or any needed one fails.
    Check,
}
