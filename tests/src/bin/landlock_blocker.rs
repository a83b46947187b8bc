//! `hv-landlock-blocker -- COMMAND [ARGS...]`: installs a seccomp filter that
//! answers EPERM to the three Landlock calls (as systemd-nspawn's default
//! filter does), then executes COMMAND. The confinement tests run the daemon
//! under it to see how a blocked Landlock is handled.

use std::os::unix::process::CommandExt;
use std::process::{Command, ExitCode};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let Some(at) = args
        .iter()
        .position(|a| a == "--")
        .filter(|at| at + 1 < args.len())
    else {
        eprintln!("usage: hv-landlock-blocker -- COMMAND [ARGS...]");
        return ExitCode::from(2);
    };
    let rules = [
        libc::SYS_landlock_create_ruleset,
        libc::SYS_landlock_add_rule,
        libc::SYS_landlock_restrict_self,
    ]
    .into_iter()
    .map(|nr| (nr, vec![]))
    .collect();
    let filter: seccompiler::BpfProgram = seccompiler::SeccompFilter::new(
        rules,
        seccompiler::SeccompAction::Allow,
        seccompiler::SeccompAction::Errno(libc::EPERM as u32),
        std::env::consts::ARCH.try_into().unwrap(),
    )
    .unwrap()
    .try_into()
    .unwrap();
    // SAFETY: a plain prctl; needed to install a filter without CAP_SYS_ADMIN.
    unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
    seccompiler::apply_filter(&filter).unwrap();
    let e = Command::new(&args[at + 1]).args(&args[at + 2..]).exec();
    eprintln!("exec {}: {e}", args[at + 1]);
    ExitCode::from(127)
}
