//! Daily visitor salts: random, rotated at UTC midnight, forgotten after 48 hours.
//!
//! The salt of day D is created at the first hit of D, kept in
//! `<data dir>/salts/<D>.salt` (mode 0600) so that a restart during the day does
//! not split visitors, and deleted once day D+2 begins. Without the salt, a
//! stored visitor hash cannot be linked to an address or to another day.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::RwLock;

use hitvault_core::visitor::{Salt, day_index};

/// Creating or reading a salt file failed.
#[derive(Debug, thiserror::Error)]
#[error("salt file {path}: {source}")]
pub struct SaltError {
    pub path: PathBuf,
    pub source: std::io::Error,
}

/// Owns the salts directory.
#[derive(Debug)]
pub struct SaltKeeper {
    dir: PathBuf,
    /// (UTC day number, its salt); replaced when the day changes.
    current: RwLock<(i64, Salt)>,
}

impl SaltKeeper {
    /// Opens `dir` (created with mode 0700), loads or creates today's salt and
    /// deletes salts older than yesterday.
    pub fn open(dir: &Path, now_ms: i64) -> Result<SaltKeeper, SaltError> {
        let err = |source| SaltError {
            path: dir.to_owned(),
            source,
        };
        fs::create_dir_all(dir).map_err(err)?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(err)?;
        let day = day_index(now_ms);
        let salt = load_or_create(dir, day)?;
        let keeper = SaltKeeper {
            dir: dir.to_owned(),
            current: RwLock::new((day, salt)),
        };
        keeper.forget_old(day);
        Ok(keeper)
    }

    /// The salt for the day of `now_ms`, rotating at midnight UTC.
    pub fn salt_for(&self, now_ms: i64) -> Result<Salt, SaltError> {
        let day = day_index(now_ms);
        {
            let cur = self.current.read().unwrap_or_else(|p| p.into_inner());
            if cur.0 == day {
                return Ok(cur.1.clone());
            }
        }
        let mut cur = self.current.write().unwrap_or_else(|p| p.into_inner());
        if cur.0 != day {
            let salt = load_or_create(&self.dir, day)?;
            *cur = (day, salt);
            self.forget_old(day);
            tracing::info!(day, "rotated visitor salt");
        }
        Ok(cur.1.clone())
    }

    fn forget_old(&self, today: i64) {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return;
        };
        for e in entries.flatten() {
            let name = e.file_name();
            let Some(day) = name
                .to_str()
                .and_then(|n| n.strip_suffix(".salt"))
                .and_then(|d| d.parse::<i64>().ok())
            else {
                continue;
            };
            if day < today - 1
                && let Err(err) = fs::remove_file(e.path())
            {
                tracing::warn!(%err, day, "could not delete an expired salt");
            }
        }
    }
}

fn load_or_create(dir: &Path, day: i64) -> Result<Salt, SaltError> {
    let path = dir.join(format!("{day}.salt"));
    let err = |source| SaltError {
        path: path.clone(),
        source,
    };
    match fs::read(&path) {
        Ok(b) if b.len() == 16 => {
            let mut s = [0u8; 16];
            s.copy_from_slice(&b);
            return Ok(Salt(s));
        }
        Ok(_) => {
            tracing::warn!(path = %path.display(), "salt file has the wrong size; replacing it")
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(err(e)),
    }
    let mut s = [0u8; 16];
    getrandom::fill(&mut s).map_err(|e| err(std::io::Error::other(e.to_string())))?;
    let tmp = dir.join(format!("{day}.salt.tmp"));
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(err)?;
    f.write_all(&s).and_then(|_| f.sync_all()).map_err(err)?;
    fs::rename(&tmp, &path).map_err(err)?;
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(err)?;
    Ok(Salt(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400_000;

    #[test]
    fn same_day_same_salt_across_restarts_new_day_new_salt() {
        let dir = tempfile::tempdir().unwrap();
        let t0 = 20_000 * DAY + 5;
        let a = SaltKeeper::open(dir.path(), t0)
            .unwrap()
            .salt_for(t0)
            .unwrap();
        let k = SaltKeeper::open(dir.path(), t0 + 1000).unwrap();
        assert_eq!(a.0, k.salt_for(t0 + 1000).unwrap().0);
        let b = k.salt_for(t0 + DAY).unwrap();
        assert_ne!(a.0, b.0);
    }

    #[test]
    fn salts_are_forgotten_after_two_days() {
        let dir = tempfile::tempdir().unwrap();
        let t0 = 20_000 * DAY;
        let k = SaltKeeper::open(dir.path(), t0).unwrap();
        k.salt_for(t0 + DAY).unwrap();
        assert!(
            dir.path().join("20000.salt").exists(),
            "yesterday's salt is kept"
        );
        k.salt_for(t0 + 2 * DAY).unwrap();
        assert!(
            !dir.path().join("20000.salt").exists(),
            "the salt of day D is gone once D+2 begins"
        );
        let mode = fs::metadata(dir.path().join("20002.salt"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
