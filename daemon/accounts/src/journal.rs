//! The accounts' journal: one JSON record per line, appended and fsync'd
//! before the change it holds takes effect.
//!
//! Opening reads every line and applies it. A last line without its
//! newline is a write cut short by a crash: its change never took effect
//! (the caller was never answered), so it is cut off. Any other line that
//! does not parse or apply is damage, and opening fails naming the line:
//! accounts are not guessed at.
//!
//! When the journal has grown to [`COMPACT_AT`] bytes and holds four times
//! more records than the state needs, opening rewrites it as the state's
//! own records ([`State::to_records`]) into a temporary file, fsyncs it and
//! renames it over the journal, then fsyncs the directory.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::state::{Record, State};

/// File name of the journal inside the accounts directory.
pub const FILE: &str = "accounts.jsonl";
/// Size above which opening considers compaction.
pub const COMPACT_AT: u64 = 1 << 20;
/// The longest line accepted (a record with a large passkey is a few KiB).
pub const MAX_LINE: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: line {line} is damaged ({reason}); the accounts are not opened")]
    Damaged {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    /// On a cluster node: the cluster did not confirm a change (nothing
    /// changed).
    #[error("{0}")]
    Cluster(String),
}

/// The open journal.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    file: File,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> JournalError + '_ {
    move |source| JournalError::Io {
        path: path.to_owned(),
        source,
    }
}

impl Journal {
    /// Opens (or creates) `dir/accounts.jsonl` and returns it with the state
    /// its records give.
    pub fn open(dir: &Path) -> Result<(Journal, State), JournalError> {
        let path = dir.join(FILE);
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
            .map_err(io(&path))?;
        let (state, records, good_len, total) = replay(&path, &file)?;
        if good_len < total {
            file.set_len(good_len).map_err(io(&path))?;
            file.sync_all().map_err(io(&path))?;
        }
        let mut journal = Journal { path, file };
        if good_len >= COMPACT_AT && records > 4 * state.to_records().len() {
            journal.compact(&state)?;
        }
        Ok((journal, state))
    }

    /// Appends `r` and waits for it to be on disk.
    pub fn append(&mut self, r: &Record) -> Result<(), JournalError> {
        let mut line = serde_json::to_vec(r).expect("records serialize");
        line.push(b'\n');
        self.file.write_all(&line).map_err(io(&self.path))?;
        self.file.sync_data().map_err(io(&self.path))
    }

    /// Rewrites the journal as `state`'s own records (a temporary file,
    /// fsync'd, renamed over it): compaction, and a cluster snapshot's
    /// accounts taking the place of these.
    pub fn compact(&mut self, state: &State) -> Result<(), JournalError> {
        let tmp = self.path.with_extension("jsonl.compacting");
        let mut out = File::create(&tmp).map_err(io(&tmp))?;
        out.write_all(&records_of(state)).map_err(io(&tmp))?;
        out.sync_all().map_err(io(&tmp))?;
        let dir = self.path.parent().unwrap_or(Path::new("."));
        std::fs::rename(&tmp, &self.path).map_err(io(&self.path))?;
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io(dir))?;
        self.file = OpenOptions::new()
            .read(true)
            .append(true)
            .open(&self.path)
            .map_err(io(&self.path))?;
        Ok(())
    }

    /// The journal's path (for backups).
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// The state's own records, one JSON line each.
pub fn records_of(state: &State) -> Vec<u8> {
    let mut out = Vec::new();
    for r in state.to_records() {
        out.extend_from_slice(&serde_json::to_vec(&r).expect("records serialize"));
        out.push(b'\n');
    }
    out
}

/// (state, records read, bytes of whole records, file size).
fn replay(path: &Path, file: &File) -> Result<(State, usize, u64, u64), JournalError> {
    let mut reader = BufReader::new(file);
    reader.seek(SeekFrom::Start(0)).map_err(io(path))?;
    let mut state = State::default();
    let (mut good, mut records, mut line_no) = (0u64, 0usize, 0usize);
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
        line_no += 1;
        if buf.last() != Some(&b'\n') {
            if n > MAX_LINE {
                return Err(JournalError::Damaged {
                    path: path.to_owned(),
                    line: line_no,
                    reason: format!("longer than {MAX_LINE} bytes"),
                });
            }
            // The tail of a write cut short: never acknowledged.
            break;
        }
        let damaged = |reason: String| JournalError::Damaged {
            path: path.to_owned(),
            line: line_no,
            reason,
        };
        let record: Record =
            serde_json::from_slice(&buf[..n - 1]).map_err(|e| damaged(e.to_string()))?;
        state.apply(&record).map_err(|e| damaged(e.to_string()))?;
        good += n as u64;
        records += 1;
    }
    let total = file.metadata().map_err(io(path))?.len();
    Ok((state, records, good, total))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(id: u64, name: &str) -> Record {
        Record::UserAdded {
            id,
            name: name.into(),
            admin: id == 0,
            at: 1,
        }
    }

    #[test]
    fn records_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let (mut j, s) = Journal::open(dir.path()).unwrap();
        assert!(s.users.is_empty());
        j.append(&user(0, "root-admin")).unwrap();
        j.append(&Record::PasswordSet {
            id: 0,
            phc: "$argon2id$x".into(),
            at: 2,
        })
        .unwrap();
        drop(j);
        let (_, s) = Journal::open(dir.path()).unwrap();
        assert_eq!(s.users[&0].name, "root-admin");
        assert!(s.users[&0].password.is_some());
        assert_eq!(s.next_id, 1);
    }

    #[test]
    fn a_torn_last_line_is_cut_and_damage_elsewhere_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (mut j, _) = Journal::open(dir.path()).unwrap();
        j.append(&user(0, "a")).unwrap();
        drop(j);
        let path = dir.path().join(FILE);
        let whole = std::fs::read(&path).unwrap();
        let mut torn = whole.clone();
        torn.extend_from_slice(b"{\"kind\":\"user_added\",\"id\":1,\"na");
        std::fs::write(&path, &torn).unwrap();
        let (_, s) = Journal::open(dir.path()).unwrap();
        assert_eq!(s.users.len(), 1);
        assert_eq!(std::fs::read(&path).unwrap(), whole, "the torn tail is cut");

        let mut bad = whole.clone();
        bad.extend_from_slice(b"not json\n");
        bad.extend_from_slice(&whole);
        std::fs::write(&path, &bad).unwrap();
        let e = Journal::open(dir.path()).unwrap_err().to_string();
        assert!(e.contains("line 2 is damaged"), "{e}");
        // A record that does not apply (the same id twice) is damage too.
        let mut twice = whole.clone();
        twice.extend_from_slice(&whole);
        std::fs::write(&path, &twice).unwrap();
        let e = Journal::open(dir.path()).unwrap_err().to_string();
        assert!(e.contains("line 2") && e.contains("reused"), "{e}");
    }

    #[test]
    fn compaction_keeps_the_state_and_the_ids_given() {
        let dir = tempfile::tempdir().unwrap();
        let (mut j, _) = Journal::open(dir.path()).unwrap();
        j.append(&user(0, "admin")).unwrap();
        j.append(&user(1, "gone")).unwrap();
        j.append(&Record::UserRemoved { id: 1 }).unwrap();
        // Enough sessions started and ended to pass the compaction size.
        let mut n = 0;
        while std::fs::metadata(dir.path().join(FILE)).unwrap().len() < COMPACT_AT {
            let digest = format!("{n:064}");
            j.append(&Record::SessionStarted {
                digest: digest.clone(),
                id: 0,
                csrf: "c".into(),
                method: "password".into(),
                at: n,
                agent: "test".into(),
            })
            .unwrap();
            j.append(&Record::SessionEnded { digest }).unwrap();
            n += 1;
        }
        drop(j);
        let (_, before) = {
            // Replay without compaction to compare.
            let f = File::open(dir.path().join(FILE)).unwrap();
            let (s, _, _, _) = replay(&dir.path().join(FILE), &f).unwrap();
            ((), s)
        };
        let (_, after) = Journal::open(dir.path()).unwrap();
        assert_eq!(after, before);
        assert_eq!(after.next_id, 2, "id 1 is never given again");
        assert!(std::fs::metadata(dir.path().join(FILE)).unwrap().len() < 4096);
        let (_, again) = Journal::open(dir.path()).unwrap();
        assert_eq!(again, before);
    }
}
