//! Reading `strace -f` output of the daemon: which system calls it made
//! after confining itself, and every network call it made at all.
//!
//! Used by the air-gap test (no connection to anything but the service
//! manager's socket) and the policy test (every call made after confinement
//! is on the seccomp allow-list). The format is strace's default one with
//! `-f -o FILE`: `PID name(args) = result`, calls interrupted by another
//! thread split into `name(args <unfinished ...>` and
//! `<... name resumed>rest`, which are joined here.

use std::collections::{BTreeSet, HashMap};

/// One system call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Call {
    /// The thread that made it.
    pub tid: u32,
    /// The syscall name as strace spells it (the kernel's name).
    pub name: String,
    /// Everything after the opening parenthesis, result included.
    pub text: String,
}

/// Parses a whole trace into calls, in the order they started.
pub fn parse(trace: &str) -> Vec<Call> {
    let mut calls: Vec<Call> = Vec::new();
    let mut pending: HashMap<u32, usize> = HashMap::new();
    for line in trace.lines() {
        let Some((tid, rest)) = line.trim_start().split_once(' ') else {
            continue;
        };
        let Ok(tid) = tid.parse::<u32>() else {
            continue;
        };
        let rest = rest.trim_start();
        if rest.starts_with("---") || rest.starts_with("+++") {
            continue;
        }
        if let Some(resumed) = rest.strip_prefix("<... ") {
            let Some((_, tail)) = resumed.split_once(" resumed>") else {
                continue;
            };
            if let Some(i) = pending.remove(&tid) {
                calls[i].text.push_str(tail);
            }
            continue;
        }
        let Some(open) = rest.find('(') else { continue };
        let name = &rest[..open];
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        {
            continue;
        }
        let mut text = rest[open + 1..].to_owned();
        let unfinished = text.ends_with("<unfinished ...>");
        if unfinished {
            text.truncate(text.len() - "<unfinished ...>".len());
        }
        calls.push(Call {
            tid,
            name: name.to_owned(),
            text,
        });
        if unfinished {
            pending.insert(tid, calls.len() - 1);
        }
    }
    calls
}

/// The calls made after the daemon installed its seccomp allow-list (the
/// last `seccomp(SECCOMP_SET_MODE_FILTER, ...)`), or `None` if it never did.
pub fn after_confinement(calls: &[Call]) -> Option<&[Call]> {
    let i = calls
        .iter()
        .rposition(|c| c.name == "seccomp" && c.text.starts_with("SECCOMP_SET_MODE_FILTER"))?;
    Some(&calls[i + 1..])
}

/// The distinct syscall names of `calls`.
pub fn names(calls: &[Call]) -> BTreeSet<String> {
    calls.iter().map(|c| c.name.clone()).collect()
}

/// The address family of the first socket address in `text`, if any.
fn family(text: &str) -> Option<&str> {
    let (_, rest) = text.split_once("sa_family=")?;
    let end = rest
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(rest.len());
    Some(&rest[..end])
}

fn unix_path(text: &str) -> Option<&str> {
    let (_, rest) = text.split_once("sun_path=")?;
    let rest = rest.strip_prefix('@').unwrap_or(rest);
    let rest = rest.strip_prefix('"')?;
    Some(&rest[..rest.find('"')?])
}

/// Every network call in `calls` that reaches, or tries to reach, anything
/// but the local unix sockets in `allowed_unix`: a `connect` to an address
/// that is not one of them (whatever the result: an attempt refused by
/// Landlock counts), a `sendto`/`sendmsg`/`sendmmsg` naming a destination
/// that is not a unix socket, and any socket that is neither a unix socket
/// nor one of `listeners` TCP sockets. One line per finding.
pub fn outbound(calls: &[Call], allowed_unix: &[&str], listeners: usize) -> Vec<String> {
    let mut found = Vec::new();
    let mut inet_sockets = 0;
    for c in calls {
        let show = || format!("thread {}: {}({}", c.tid, c.name, c.text);
        match c.name.as_str() {
            "connect" => match family(&c.text) {
                Some("AF_UNIX") => match unix_path(&c.text) {
                    Some(p) if allowed_unix.contains(&p) => {}
                    _ => found.push(format!("connect to an unexpected unix socket: {}", show())),
                },
                _ => found.push(format!("outbound connect: {}", show())),
            },
            "sendto" | "sendmsg" | "sendmmsg" => {
                if let Some(f) = family(&c.text)
                    && f != "AF_UNIX"
                {
                    found.push(format!("datagram to a network address: {}", show()));
                }
            }
            "socket" | "socketpair" => {
                let domain = c.text.split([',', ')']).next().unwrap_or("").trim();
                match domain {
                    "AF_UNIX" => {}
                    "AF_INET" | "AF_INET6" if c.text.contains("SOCK_STREAM") => {
                        inet_sockets += 1;
                        if inet_sockets > listeners {
                            found.push(format!("a TCP socket beyond the listener: {}", show()));
                        }
                    }
                    _ => found.push(format!("a network socket: {}", show())),
                }
            }
            _ => {}
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"100 execve("/bin/hitvault", ["hitvault"], 0x7ffd /* 3 vars */) = 0
100 socket(AF_INET, SOCK_STREAM|SOCK_CLOEXEC, IPPROTO_IP) = 3
100 connect(4, {sa_family=AF_UNIX, sun_path="/run/systemd/notify"}, 21) = 0
100 seccomp(SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC, {len=3, filter=0x1}) = 0
100 seccomp(SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC, {len=300, filter=0x2}) = 0
101 futex(0x7f, FUTEX_WAIT_PRIVATE, 0, NULL <unfinished ...>
100 connect(9, {sa_family=AF_INET, sin_port=htons(443), sin_addr=inet_addr("192.0.2.1")}, 16 <unfinished ...>
101 <... futex resumed>) = 0
100 <... connect resumed>) = -1 EACCES (Permission denied)
100 sendto(5, "x", 1, 0, {sa_family=AF_INET6, sin6_port=htons(53)}, 28) = 1
100 sendto(4, "WATCHDOG=1\n", 11, MSG_NOSIGNAL, NULL, 0) = 11
100 --- SIGTERM {si_signo=SIGTERM} ---
100 exit_group(0) = ?
100 +++ exited with 0 +++
"#;

    #[test]
    fn joins_split_calls_and_finds_the_confinement() {
        let calls = parse(SAMPLE);
        assert_eq!(calls.len(), 10);
        let after = after_confinement(&calls).unwrap();
        assert_eq!(
            names(after).into_iter().collect::<Vec<_>>(),
            ["connect", "exit_group", "futex", "sendto"]
        );
        let connect = after.iter().find(|c| c.name == "connect").unwrap();
        assert!(connect.text.ends_with("= -1 EACCES (Permission denied)"));
    }

    #[test]
    fn outbound_flags_attempts_but_not_the_notify_socket() {
        let calls = parse(SAMPLE);
        let found = outbound(&calls, &["/run/systemd/notify"], 1);
        assert_eq!(found.len(), 2, "{found:#?}");
        assert!(found[0].starts_with("outbound connect") && found[0].contains("192.0.2.1"));
        assert!(found[1].starts_with("datagram to a network address"));
        let found = outbound(&calls, &[], 0);
        assert_eq!(found.len(), 4, "{found:#?}");
    }
}
