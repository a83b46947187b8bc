//! The audit log: the operator's security record of who did what.
//!
//! One JSON object per line in `<data dir>/accounts/audit.jsonl` (mode
//! 0600), appended and fsync'd before the action it records answers. Each
//! [`Entry`] has a `seq` (1, 2, ..., recovered at open), the time `at`
//! (unix milliseconds, passed in: nothing here reads a clock), the
//! [`Actor`], the client's address when the action came over the network
//! (the one place hitvault keeps an address: it is a security record, not
//! analytics), the [`Kind`] of action, the site it touched if any, and a
//! small `detail` object (an export's format, range and table; an import's
//! rows; the user added).
//!
//! The log is never pruned: hit retention does not touch it, and it is
//! only ever appended to. A last line without its newline is a write cut
//! short by a crash (its action was never answered), and opening cuts it
//! off, as the accounts' journal does. A line that does not parse is kept
//! and skipped by reads (an audit log is not refused for one bad line).
//!
//! Limits: an entry's line is at most [`MAX_LINE`] bytes and its detail at
//! most [`MAX_DETAIL`] bytes of JSON; a longer detail is replaced by
//! `{"truncated": true}` rather than refusing the action. A query returns
//! at most [`MAX_LIMIT`] entries; reads scan the whole file (a plain scan:
//! see the `audit_query` example for its speed).

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// File name of the audit log inside the accounts directory.
pub const FILE: &str = "audit.jsonl";
/// The longest line written or read (an entry with its detail).
pub const MAX_LINE: usize = 8 * 1024;
/// The longest detail object, as JSON.
pub const MAX_DETAIL: usize = 4 * 1024;
/// The longest address, site and name kept in an entry, in characters.
pub const MAX_TEXT: usize = 256;
/// The most entries one query returns.
pub const MAX_LIMIT: usize = 10_000;

/// Who did it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Actor {
    /// The machine's operator: a client on loopback addressing a loopback name.
    Local,
    /// A signed-in user.
    User { id: u64, name: String },
    /// An API token, and the user it belongs to.
    Token { id: String, user: String },
    /// A share link.
    Share { id: String },
    /// The daemon on its own (a scheduled prune).
    System,
    /// The command line: through the control socket, or offline.
    Cli,
    /// Nobody known: a sign-in that failed for a name no user has.
    Anonymous,
}

impl Actor {
    /// The actor's kind, as the filter and the CSV name it.
    pub fn kind(&self) -> &'static str {
        match self {
            Actor::Local => "local",
            Actor::User { .. } => "user",
            Actor::Token { .. } => "token",
            Actor::Share { .. } => "share",
            Actor::System => "system",
            Actor::Cli => "cli",
            Actor::Anonymous => "anonymous",
        }
    }

    /// The user name behind the actor, if any.
    pub fn user_name(&self) -> Option<&str> {
        match self {
            Actor::User { name, .. } => Some(name),
            Actor::Token { user, .. } => Some(user),
            _ => None,
        }
    }

    /// One word for a table: `user:alice`, `token:ID(alice)`, `local`...
    pub fn label(&self) -> String {
        match self {
            Actor::User { name, .. } => format!("user:{name}"),
            Actor::Token { id, user } => format!("token:{id}({user})"),
            Actor::Share { id } => format!("share:{id}"),
            a => a.kind().to_owned(),
        }
    }
}

macro_rules! kinds {
    ($($v:ident => $s:literal),* $(,)?) => {
        /// What was done.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum Kind { $($v),* }

        impl Kind {
            /// Every kind, in the order of the docs.
            pub const ALL: &'static [Kind] = &[$(Kind::$v),*];

            /// The kind's name (snake_case), as stored.
            pub fn as_str(self) -> &'static str {
                match self { $(Kind::$v => $s),* }
            }
        }
    };
}

kinds! {
    SignIn => "sign_in",
    SignInFailed => "sign_in_failed",
    SignOut => "sign_out",
    SessionEnded => "session_ended",
    PasswordSet => "password_set",
    PasswordRemoved => "password_removed",
    TotpSet => "totp_set",
    TotpRemoved => "totp_removed",
    RecoveryCodesSet => "recovery_codes_set",
    PasskeyAdded => "passkey_added",
    PasskeyRemoved => "passkey_removed",
    FactorsReset => "factors_reset",
    UserAdded => "user_added",
    UserRemoved => "user_removed",
    RoleSet => "role_set",
    RoleRemoved => "role_removed",
    TokenCreated => "token_created",
    TokenRevoked => "token_revoked",
    ShareCreated => "share_created",
    ShareRevoked => "share_revoked",
    SiteAdded => "site_added",
    SiteChanged => "site_changed",
    SiteRemoved => "site_removed",
    GoalAdded => "goal_added",
    GoalRemoved => "goal_removed",
    FunnelAdded => "funnel_added",
    FunnelRemoved => "funnel_removed",
    SettingChanged => "setting_changed",
    Export => "export",
    Import => "import",
    Backup => "backup",
    Restore => "restore",
    Prune => "prune",
}

impl std::str::FromStr for Kind {
    type Err = String;
    fn from_str(s: &str) -> Result<Kind, String> {
        Kind::ALL
            .iter()
            .copied()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown audit kind {s:?} (one of {})",
                    Kind::ALL
                        .iter()
                        .map(|k| k.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An entry to append (its `seq` is given by the log).
#[derive(Debug, Clone, PartialEq)]
pub struct NewEntry {
    /// Unix milliseconds.
    pub at: u64,
    pub actor: Actor,
    /// The client's IP address, when the action came over the network.
    pub address: Option<String>,
    pub kind: Kind,
    pub site: Option<String>,
    pub detail: Map<String, Value>,
}

impl NewEntry {
    pub fn new(at: u64, actor: Actor, kind: Kind) -> NewEntry {
        NewEntry {
            at,
            actor,
            address: None,
            kind,
            site: None,
            detail: Map::new(),
        }
    }
}

/// One line of the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub seq: u64,
    /// Unix milliseconds.
    pub at: u64,
    pub actor: Actor,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    pub kind: Kind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site: Option<String>,
    #[serde(default)]
    pub detail: Map<String, Value>,
}

/// What a query selects; every field narrows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// An actor kind (`local`, `user`, `token`, `share`, `system`, `cli`,
    /// `anonymous`) or a user name (a user's, or a token's owner's).
    pub actor: Option<String>,
    pub kinds: Vec<Kind>,
    /// At or after (unix ms).
    pub since_ms: Option<u64>,
    /// Before (unix ms).
    pub until_ms: Option<u64>,
    /// Only entries with a smaller `seq` (the next page of a newest-first list).
    pub before_seq: Option<u64>,
    pub site: Option<String>,
}

impl Filter {
    pub fn matches(&self, e: &Entry) -> bool {
        if let Some(a) = &self.actor
            && e.actor.kind() != a
            && e.actor.user_name() != Some(a.as_str())
        {
            return false;
        }
        (self.kinds.is_empty() || self.kinds.contains(&e.kind))
            && self.since_ms.is_none_or(|t| e.at >= t)
            && self.until_ms.is_none_or(|t| e.at < t)
            && self.before_seq.is_none_or(|s| e.seq < s)
            && self
                .site
                .as_ref()
                .is_none_or(|s| e.site.as_deref() == Some(s.as_str()))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("audit log {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> AuditError + '_ {
    move |source| AuditError::Io {
        path: path.to_owned(),
        source,
    }
}

#[derive(Debug)]
struct Tail {
    file: File,
    next_seq: u64,
}

/// The open audit log (see the module doc).
#[derive(Debug)]
pub struct AuditLog {
    path: PathBuf,
    tail: Mutex<Tail>,
}

fn cap(s: &str) -> String {
    s.chars().take(MAX_TEXT).collect()
}

impl AuditLog {
    /// Opens (or creates, mode 0600) `dir/audit.jsonl`, cuts a torn last
    /// line and recovers the next `seq`.
    pub fn open(dir: &Path) -> Result<AuditLog, AuditError> {
        use std::os::unix::fs::OpenOptionsExt;
        let path = dir.join(FILE);
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(0o600)
            .open(&path)
            .map_err(io(&path))?;
        let (last_seq, good, total) = {
            let mut last = 0;
            let good = scan(&path, &file, |e| last = last.max(e.seq))?;
            (last, good, file.metadata().map_err(io(&path))?.len())
        };
        if good < total {
            file.set_len(good).map_err(io(&path))?;
            file.sync_all().map_err(io(&path))?;
        }
        Ok(AuditLog {
            path,
            tail: Mutex::new(Tail {
                file,
                next_seq: last_seq + 1,
            }),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `e` and waits until it is on disk; returns it with its `seq`.
    pub fn append(&self, e: NewEntry) -> Result<Entry, AuditError> {
        let mut detail = e.detail;
        if serde_json::to_vec(&detail).map_or(true, |b| b.len() > MAX_DETAIL) {
            detail = Map::from_iter([("truncated".to_owned(), Value::Bool(true))]);
        }
        let mut tail = self.tail.lock().unwrap_or_else(|p| p.into_inner());
        let mut entry = Entry {
            seq: tail.next_seq,
            at: e.at,
            actor: match e.actor {
                Actor::User { id, name } => Actor::User {
                    id,
                    name: cap(&name),
                },
                Actor::Token { id, user } => Actor::Token {
                    id: cap(&id),
                    user: cap(&user),
                },
                Actor::Share { id } => Actor::Share { id: cap(&id) },
                a => a,
            },
            address: e.address.as_deref().map(cap),
            kind: e.kind,
            site: e.site.as_deref().map(cap),
            detail,
        };
        let mut line = serde_json::to_vec(&entry).expect("entries serialize");
        if line.len() >= MAX_LINE {
            entry.detail = Map::from_iter([("truncated".to_owned(), Value::Bool(true))]);
            line = serde_json::to_vec(&entry).expect("entries serialize");
        }
        line.push(b'\n');
        tail.file.write_all(&line).map_err(io(&self.path))?;
        tail.file.sync_data().map_err(io(&self.path))?;
        tail.next_seq += 1;
        Ok(entry)
    }

    /// The newest `limit` entries `f` selects (at most [`MAX_LIMIT`]),
    /// newest first.
    pub fn query(&self, f: &Filter, limit: usize) -> Result<Vec<Entry>, AuditError> {
        query_file(&self.path, f, limit)
    }

    /// Calls `each` with every entry `f` selects, oldest first.
    pub fn each(&self, f: &Filter, each: impl FnMut(&Entry)) -> Result<(), AuditError> {
        each_in_file(&self.path, f, each)
    }
}

/// [`AuditLog::query`] on a file, without opening it for writing (a
/// missing file holds no entries).
pub fn query_file(path: &Path, f: &Filter, limit: usize) -> Result<Vec<Entry>, AuditError> {
    let limit = limit.clamp(1, MAX_LIMIT);
    let mut newest = std::collections::VecDeque::with_capacity(limit.min(1024));
    each_in_file(path, f, |e| {
        if newest.len() == limit {
            newest.pop_front();
        }
        newest.push_back(e.clone());
    })?;
    Ok(newest.into_iter().rev().collect())
}

/// [`AuditLog::each`] on a file (a missing file holds no entries).
pub fn each_in_file(
    path: &Path,
    f: &Filter,
    mut each: impl FnMut(&Entry),
) -> Result<(), AuditError> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io(path)(e)),
    };
    scan(path, &file, |e| {
        if f.matches(e) {
            each(e)
        }
    })?;
    Ok(())
}

/// Reads every whole line of `file`, calls `each` with the entries that
/// parse, and returns the length of the whole lines.
fn scan(path: &Path, file: &File, mut each: impl FnMut(&Entry)) -> Result<u64, AuditError> {
    let mut reader = BufReader::with_capacity(1 << 16, file);
    reader.seek(SeekFrom::Start(0)).map_err(io(path))?;
    let mut good = 0u64;
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let n = (&mut reader)
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut buf)
            .map_err(io(path))?;
        if n == 0 {
            break;
        }
        if buf.last() != Some(&b'\n') {
            if n > MAX_LINE {
                // Not written by this log: skip to the end of the line.
                let mut rest = Vec::new();
                let m = reader.read_until(b'\n', &mut rest).map_err(io(path))?;
                if rest.last() == Some(&b'\n') {
                    good += (n + m) as u64;
                    continue;
                }
            }
            // The tail of a write cut short: never acknowledged.
            break;
        }
        good += n as u64;
        if let Ok(e) = serde_json::from_slice::<Entry>(&buf[..n - 1]) {
            each(&e);
        }
    }
    Ok(good)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str) -> Actor {
        Actor::User {
            id: 1,
            name: name.into(),
        }
    }

    fn entry(at: u64, actor: Actor, kind: Kind) -> NewEntry {
        NewEntry::new(at, actor, kind)
    }

    #[test]
    fn entries_are_numbered_and_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::open(dir.path()).unwrap();
        let mut e = entry(1000, user("alice"), Kind::SignIn);
        e.address = Some("192.0.2.7".into());
        assert_eq!(log.append(e).unwrap().seq, 1);
        assert_eq!(
            log.append(entry(2000, Actor::Cli, Kind::Backup))
                .unwrap()
                .seq,
            2
        );
        drop(log);
        let log = AuditLog::open(dir.path()).unwrap();
        assert_eq!(
            log.append(entry(3000, Actor::Local, Kind::Export))
                .unwrap()
                .seq,
            3,
            "seq continues after a reopen"
        );
        let all = log.query(&Filter::default(), 100).unwrap();
        assert_eq!(all.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![3, 2, 1]);
        assert_eq!(all[2].address.as_deref(), Some("192.0.2.7"));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join(FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn a_torn_last_line_is_cut_and_seq_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::open(dir.path()).unwrap();
        log.append(entry(1, Actor::Cli, Kind::Backup)).unwrap();
        log.append(entry(2, Actor::Cli, Kind::Prune)).unwrap();
        drop(log);
        let path = dir.path().join(FILE);
        let whole = std::fs::read(&path).unwrap();
        let mut torn = whole.clone();
        torn.extend_from_slice(b"{\"seq\":3,\"at\":3,\"actor\":{\"kind\":\"cli\"},\"ki");
        std::fs::write(&path, &torn).unwrap();
        let log = AuditLog::open(dir.path()).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), whole, "the torn tail is cut");
        let e = log.append(entry(4, Actor::Cli, Kind::Restore)).unwrap();
        assert_eq!(e.seq, 3, "the torn entry's number is given again");
        let kinds: Vec<Kind> = log
            .query(&Filter::default(), 10)
            .unwrap()
            .iter()
            .map(|e| e.kind)
            .collect();
        assert_eq!(kinds, vec![Kind::Restore, Kind::Prune, Kind::Backup]);
    }

    #[test]
    fn a_damaged_line_is_skipped_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::open(dir.path()).unwrap();
        log.append(entry(1, Actor::Cli, Kind::Backup)).unwrap();
        drop(log);
        let path = dir.path().join(FILE);
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"not json\n").unwrap();
        let long = vec![b'x'; MAX_LINE * 2];
        f.write_all(&long).unwrap();
        f.write_all(b"\n").unwrap();
        drop(f);
        let log = AuditLog::open(dir.path()).unwrap();
        assert_eq!(
            log.append(entry(2, Actor::Cli, Kind::Prune)).unwrap().seq,
            2
        );
        assert_eq!(log.query(&Filter::default(), 10).unwrap().len(), 2);
    }

    #[test]
    fn filters_select_by_actor_kind_time_and_page() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::open(dir.path()).unwrap();
        for i in 0..10u64 {
            let actor = match i % 3 {
                0 => user("alice"),
                1 => Actor::Token {
                    id: "t1".into(),
                    user: "bob".into(),
                },
                _ => Actor::Cli,
            };
            let kind = if i % 2 == 0 {
                Kind::Export
            } else {
                Kind::SignIn
            };
            log.append(entry(i * 1000, actor, kind)).unwrap();
        }
        let seqs = |f: Filter, limit| -> Vec<u64> {
            log.query(&f, limit)
                .unwrap()
                .iter()
                .map(|e| e.seq)
                .collect()
        };
        let by = |a: &str| Filter {
            actor: Some(a.into()),
            ..Filter::default()
        };
        assert_eq!(seqs(by("alice"), 100), vec![10, 7, 4, 1]);
        assert_eq!(seqs(by("bob"), 100), vec![8, 5, 2], "a token's owner");
        assert_eq!(seqs(by("token"), 100), vec![8, 5, 2]);
        assert_eq!(seqs(by("cli"), 100), vec![9, 6, 3]);
        assert_eq!(seqs(by("carol"), 100), Vec::<u64>::new());
        let exports = Filter {
            kinds: vec![Kind::Export],
            ..Filter::default()
        };
        assert_eq!(seqs(exports.clone(), 2), vec![9, 7], "newest first");
        assert_eq!(
            seqs(
                Filter {
                    before_seq: Some(7),
                    ..exports
                },
                2
            ),
            vec![5, 3],
            "the next page"
        );
        let window = Filter {
            since_ms: Some(2000),
            until_ms: Some(5000),
            ..Filter::default()
        };
        assert_eq!(seqs(window, 100), vec![5, 4, 3]);
    }

    #[test]
    fn an_oversized_detail_is_replaced_and_texts_are_capped() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::open(dir.path()).unwrap();
        let mut e = entry(1, user(&"n".repeat(1000)), Kind::Import);
        e.detail
            .insert("x".into(), Value::String("y".repeat(MAX_DETAIL)));
        e.site = Some("s".repeat(1000));
        let got = log.append(e).unwrap();
        assert_eq!(got.detail["truncated"], Value::Bool(true));
        assert_eq!(got.site.unwrap().len(), MAX_TEXT);
        assert_eq!(got.actor.user_name().unwrap().len(), MAX_TEXT);
        let line = std::fs::read(dir.path().join(FILE)).unwrap();
        assert!(line.len() < MAX_LINE);
    }

    #[test]
    fn kinds_round_trip_by_name() {
        for k in Kind::ALL {
            assert_eq!(k.as_str().parse::<Kind>().unwrap(), *k);
            assert_eq!(
                serde_json::to_value(k).unwrap(),
                Value::String(k.as_str().into())
            );
        }
        assert!("sign-in".parse::<Kind>().is_err());
    }
}
