//! Privilege drop: the configured user, no supplementary groups, no
//! capabilities at all, and `no_new_privs`.
//!
//! Owns the process credentials. Never raises a privilege, never reads the
//! configuration (the user name is passed in), and never runs once threads
//! exist: capabilities and the bounding set are per thread, so call it while
//! the process is single-threaded.
//!
//! Started as root with a user configured: drop the bounding and ambient
//! sets, `setgroups([])`, `setresgid`, `setresuid`, clear the remaining
//! (inheritable) set, check that root cannot be regained, set
//! `no_new_privs`. Started as root without a user: clear every capability but
//! stay uid 0 (the report says so, and the daemon should warn). Not root:
//! clear whatever capabilities the process holds (ambient ones from systemd,
//! for instance) and set `no_new_privs`; a configured user other than the
//! current one is an error, since only root can switch.

use std::ffi::CString;
use std::fmt;
use std::io;

/// A user from the password database.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    /// The name it was looked up by.
    pub name: String,
    /// Its uid.
    pub uid: u32,
    /// Its primary gid.
    pub gid: u32,
}

/// What [`drop_to`] left the process with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrivilegeReport {
    /// Real, effective and saved uid now.
    pub uid: u32,
    /// Real, effective and saved gid now.
    pub gid: u32,
    /// The user switched to, if the process was root and one was configured.
    pub switched_to: Option<String>,
    /// The process started as uid 0 (real or effective).
    pub was_root: bool,
    /// The capability bounding set is empty. False only for an unprivileged
    /// process whose bounding set was not empty and that lacked CAP_SETPCAP to
    /// empty it (harmless: with `no_new_privs` it can never gain a capability).
    pub bounding_set_cleared: bool,
    /// `no_new_privs` is set.
    pub no_new_privs: bool,
}

impl PrivilegeReport {
    /// Still uid 0 (started as root without a configured user).
    pub fn still_root(&self) -> bool {
        self.uid == 0
    }
}

impl fmt::Display for PrivilegeReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "uid {} gid {}", self.uid, self.gid)?;
        if let Some(u) = &self.switched_to {
            write!(f, " (switched from root to {u:?})")?;
        } else if self.still_root() {
            write!(f, " (still root: configure a user)")?;
        }
        write!(f, ", no capabilities")?;
        if !self.bounding_set_cleared {
            write!(f, " (bounding set kept: no CAP_SETPCAP)")?;
        }
        if self.no_new_privs {
            write!(f, ", no_new_privs")?;
        }
        Ok(())
    }
}

/// Why the privileges could not be dropped. Each names the user concerned.
#[derive(Debug, thiserror::Error)]
pub enum PrivilegeError {
    /// No such user in the password database.
    #[error("sandbox user {user:?} does not exist")]
    UnknownUser {
        /// The configured name.
        user: String,
    },
    /// The name cannot be a user name.
    #[error("sandbox user {user:?} is not a valid user name")]
    InvalidName {
        /// The configured name.
        user: String,
    },
    /// The password database could not be read.
    #[error("cannot look up sandbox user {user:?}: {source}")]
    Lookup {
        /// The configured name.
        user: String,
        /// The error of getpwnam_r.
        source: io::Error,
    },
    /// The configured user is root itself.
    #[error("sandbox user {user:?} has uid 0: configure an unprivileged user")]
    RootUser {
        /// The configured name.
        user: String,
    },
    /// A user is configured but the process is not root and is not that user.
    #[error(
        "cannot switch to sandbox user {user:?} (uid {wanted}): running as uid {uid}, not root"
    )]
    NotRoot {
        /// The configured name.
        user: String,
        /// Its uid.
        wanted: u32,
        /// The current uid.
        uid: u32,
    },
    /// A system call failed.
    #[error("{step} failed{}: {source}", user_suffix(.user))]
    Syscall {
        /// What was being done.
        step: &'static str,
        /// The user being switched to, if any.
        user: Option<String>,
        /// The error.
        source: io::Error,
    },
    /// After the switch, root (or a capability) could be regained.
    #[error("privilege drop to {user:?} did not stick: {what}")]
    NotDropped {
        /// The user switched to ("root" when none was configured).
        user: String,
        /// What was still possible.
        what: String,
    },
}

fn user_suffix(user: &Option<String>) -> String {
    match user {
        Some(u) => format!(" while switching to sandbox user {u:?}"),
        None => String::new(),
    }
}

/// Looks `name` up in the password database (getpwnam_r).
pub fn lookup(name: &str) -> Result<User, PrivilegeError> {
    let cname = CString::new(name).map_err(|_| PrivilegeError::InvalidName {
        user: name.to_owned(),
    })?;
    if name.is_empty() {
        return Err(PrivilegeError::InvalidName {
            user: name.to_owned(),
        });
    }
    let mut buf = vec![0u8; 1024];
    loop {
        // SAFETY: passwd is plain old data; getpwnam_r fills it, pointing
        // into `buf`, which outlives every read below.
        let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: valid NUL-terminated name, buffer pointer and length, out pointers.
        let rc = unsafe {
            libc::getpwnam_r(
                cname.as_ptr(),
                &mut pwd,
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut result,
            )
        };
        if rc == libc::ERANGE && buf.len() < (1 << 20) {
            buf.resize(buf.len() * 2, 0);
            continue;
        }
        if rc != 0 {
            return Err(PrivilegeError::Lookup {
                user: name.to_owned(),
                source: io::Error::from_raw_os_error(rc),
            });
        }
        if result.is_null() {
            return Err(PrivilegeError::UnknownUser {
                user: name.to_owned(),
            });
        }
        return Ok(User {
            name: name.to_owned(),
            uid: pwd.pw_uid,
            gid: pwd.pw_gid,
        });
    }
}

/// Drops privileges for good: looks `user` up (when given) and calls
/// [`drop_to_user`]. See the module documentation for what happens when.
pub fn drop_to(user: Option<&str>) -> Result<PrivilegeReport, PrivilegeError> {
    let user = user.map(lookup).transpose()?;
    drop_to_user(user.as_ref())
}

/// [`drop_to`] with the user already looked up (no file access, so it is
/// safe in a freshly forked child).
pub fn drop_to_user(user: Option<&User>) -> Result<PrivilegeReport, PrivilegeError> {
    let (ruid, euid, _) = getresuid().map_err(sys("getresuid", user))?;
    let was_root = ruid == 0 || euid == 0;
    if let Some(u) = user {
        if u.uid == 0 {
            return Err(PrivilegeError::RootUser {
                user: u.name.clone(),
            });
        }
        if !was_root && ruid != u.uid {
            return Err(PrivilegeError::NotRoot {
                user: u.name.clone(),
                wanted: u.uid,
                uid: ruid,
            });
        }
    }

    // The ambient set first (it would survive the uid change), then the
    // bounding set, which needs CAP_SETPCAP and so must go before setuid.
    clear_ambient().map_err(sys("clearing the ambient capability set", user))?;
    let bounding_set_cleared = match clear_bounding_set() {
        Ok(()) => true,
        Err(e) if !was_root && e.raw_os_error() == Some(libc::EPERM) => false,
        Err(e) => return Err(sys("clearing the capability bounding set", user)(e)),
    };

    let mut switched_to = None;
    if let Some(u) = user
        && was_root
    {
        // SAFETY: setgroups with a zero count reads no memory.
        check(unsafe { libc::setgroups(0, std::ptr::null()) })
            .map_err(sys("setgroups([])", user))?;
        // SAFETY: plain system calls; glibc applies them to every thread.
        check(unsafe { libc::setresgid(u.gid, u.gid, u.gid) }).map_err(sys("setresgid", user))?;
        // SAFETY: as above.
        check(unsafe { libc::setresuid(u.uid, u.uid, u.uid) }).map_err(sys("setresuid", user))?;
        switched_to = Some(u.name.clone());
    }
    // The uid change cleared permitted and effective (no keepcaps) but not
    // the inheritable set; clear all three explicitly in every case.
    if let Err(e) = capset_zero() {
        // A service manager's own filter may refuse capset (systemd's
        // `SystemCallFilter=~@privileged`, answered EPERM). That is fine when
        // there is nothing left to clear, which the check below verifies.
        if e.raw_os_error() != Some(libc::EPERM) || user.is_some_and(|_| was_root) {
            return Err(sys("clearing capabilities (capset)", user)(e));
        }
    }
    set_no_new_privs().map_err(sys("setting no_new_privs", user))?;

    // Verify, rather than trust.
    let (ruid, euid, suid) = getresuid().map_err(sys("getresuid", user))?;
    let (rgid, egid, sgid) = getresgid().map_err(sys("getresgid", user))?;
    let who = user
        .map(|u| u.name.clone())
        .unwrap_or_else(|| "the current user".to_owned());
    let fail = |what: String| PrivilegeError::NotDropped {
        user: who.clone(),
        what,
    };
    if let Some(u) = user {
        if (ruid, euid, suid) != (u.uid, u.uid, u.uid)
            || (rgid, egid, sgid) != (u.gid, u.gid, u.gid)
        {
            return Err(fail(format!(
                "uids {ruid}/{euid}/{suid}, gids {rgid}/{egid}/{sgid}"
            )));
        }
        // SAFETY: a plain system call; it must fail now.
        if u.uid != 0 && unsafe { libc::setuid(0) } == 0 {
            return Err(fail("setuid(0) succeeded".to_owned()));
        }
    }
    let caps = capget().map_err(sys("capget", user))?;
    if caps
        .iter()
        .any(|c| c.effective != 0 || c.permitted != 0 || c.inheritable != 0)
    {
        return Err(fail(format!("capabilities remain: {caps:?}")));
    }
    if was_root && user.is_some() && getgroups_count().map_err(sys("getgroups", user))? != 0 {
        return Err(fail("supplementary groups remain".to_owned()));
    }
    Ok(PrivilegeReport {
        uid: ruid,
        gid: rgid,
        switched_to,
        was_root,
        bounding_set_cleared,
        no_new_privs: no_new_privs().unwrap_or(false),
    })
}

/// Whether `no_new_privs` is set on the calling thread.
pub fn no_new_privs() -> io::Result<bool> {
    // SAFETY: a plain prctl query.
    let rc = unsafe { libc::prctl(libc::PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc == 1)
    }
}

fn sys(step: &'static str, user: Option<&User>) -> impl Fn(io::Error) -> PrivilegeError {
    let user = user.map(|u| u.name.clone());
    move |source| PrivilegeError::Syscall {
        step,
        user: user.clone(),
        source,
    }
}

fn check(rc: libc::c_int) -> io::Result<()> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn getresuid() -> io::Result<(u32, u32, u32)> {
    let (mut r, mut e, mut s) = (0, 0, 0);
    // SAFETY: three valid out pointers.
    check(unsafe { libc::getresuid(&mut r, &mut e, &mut s) })?;
    Ok((r, e, s))
}

fn getresgid() -> io::Result<(u32, u32, u32)> {
    let (mut r, mut e, mut s) = (0, 0, 0);
    // SAFETY: three valid out pointers.
    check(unsafe { libc::getresgid(&mut r, &mut e, &mut s) })?;
    Ok((r, e, s))
}

fn getgroups_count() -> io::Result<usize> {
    // SAFETY: a zero size asks for the count only; nothing is written.
    let n = unsafe { libc::getgroups(0, std::ptr::null_mut()) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

fn set_no_new_privs() -> io::Result<()> {
    // SAFETY: a plain prctl.
    check(unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) })
}

fn clear_ambient() -> io::Result<()> {
    // SAFETY: a plain prctl.
    let rc = unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL,
            0,
            0,
            0,
        )
    };
    match check(rc) {
        // Kernels before 4.3 have no ambient set: nothing to clear.
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Ok(()),
        other => other,
    }
}

fn clear_bounding_set() -> io::Result<()> {
    for cap in 0..64 {
        // SAFETY: a plain prctl query.
        let rc = unsafe { libc::prctl(libc::PR_CAPBSET_READ, cap, 0, 0, 0) };
        if rc < 0 {
            // EINVAL: past the last capability this kernel knows.
            break;
        }
        if rc == 1 {
            // SAFETY: a plain prctl.
            check(unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) })?;
        }
    }
    Ok(())
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

/// One 32-bit half of the three capability sets (`struct __user_cap_data_struct`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

fn capset_zero() -> io::Result<()> {
    let header = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let data = [CapData::default(); 2];
    // SAFETY: header and a two-element data array, as version 3 requires.
    let rc = unsafe { libc::syscall(libc::SYS_capset, &header as *const CapHeader, data.as_ptr()) };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn capget() -> io::Result<[CapData; 2]> {
    let mut header = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let mut data = [CapData::default(); 2];
    // SAFETY: header and a two-element data array the kernel writes into.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_capget,
            &mut header as *mut CapHeader,
            data.as_mut_ptr(),
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn looks_up_root_and_refuses_unknown_users() {
        let root = lookup("root").unwrap();
        assert_eq!((root.uid, root.gid), (0, 0));
        let e = lookup("hitvault-no-such-user").unwrap_err();
        assert!(
            e.to_string()
                .contains("\"hitvault-no-such-user\" does not exist"),
            "{e}"
        );
        assert!(matches!(
            lookup("a\0b"),
            Err(PrivilegeError::InvalidName { .. })
        ));
        assert!(matches!(
            lookup(""),
            Err(PrivilegeError::InvalidName { .. })
        ));
    }

    #[test]
    fn root_as_the_target_user_is_refused() {
        let root = lookup("root").unwrap();
        let e = drop_to_user(Some(&root)).unwrap_err();
        assert!(matches!(e, PrivilegeError::RootUser { .. }), "{e}");
        assert!(e.to_string().contains("\"root\""), "{e}");
    }
}
