//! How a command or the daemon fails: a typed exit status, the message the
//! operator reads on stderr, and the error that caused it.
//!
//! Exit statuses are the binary's interface to scripts and to systemd:
//! 0 success; 1 a failure at run time ([`Exit::Runtime`]); 2 bad
//! configuration, usage or input ([`Exit::Usage`]); 3 the environment is not
//! as configured: a path, a port, a lock or the database ([`Exit::Startup`]).
//! They are written here and nowhere else.
//!
//! The message is complete on its own (it already names the failing path or
//! setting); the source is kept for the log and for callers that need the
//! typed cause, never re-printed after the message.

use std::fmt;

/// The exit status of a failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// Failed while running: the work could not be done (1).
    Runtime = 1,
    /// Bad configuration, command line or input: the caller's to fix (2).
    Usage = 2,
    /// A path, port, lock or database not as configured (3).
    Startup = 3,
}

impl Exit {
    /// The process exit status.
    pub fn code(self) -> u8 {
        self as u8
    }
}

/// A failure of a command or of the daemon.
#[derive(Debug)]
pub struct Failure {
    pub exit: Exit,
    pub message: String,
    pub source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

impl Failure {
    /// A failure with no underlying error.
    pub fn new(exit: Exit, message: impl Into<String>) -> Failure {
        Failure {
            exit,
            message: message.into(),
            source: None,
        }
    }

    /// A failure with status [`Exit::Usage`].
    pub fn usage(message: impl Into<String>) -> Failure {
        Failure::new(Exit::Usage, message)
    }

    /// A failure with status [`Exit::Runtime`].
    pub fn runtime(message: impl Into<String>) -> Failure {
        Failure::new(Exit::Runtime, message)
    }

    /// A failure with status [`Exit::Startup`].
    pub fn startup(message: impl Into<String>) -> Failure {
        Failure::new(Exit::Startup, message)
    }

    /// The same failure under another status.
    pub fn with_exit(self, exit: Exit) -> Failure {
        Failure { exit, ..self }
    }

    /// The same failure with `prefix` before its message.
    pub fn context(self, prefix: &str) -> Failure {
        Failure {
            message: format!("{prefix}{}", self.message),
            ..self
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// Turns any error into a [`Failure`] with a status.
pub trait OrExit<T> {
    /// The error's own text as the message.
    fn or_exit(self, exit: Exit) -> Result<T, Failure>;
    /// A message made from the error (which stays the source).
    fn or_exit_with<M: Into<String>>(
        self,
        exit: Exit,
        message: impl FnOnce(&dyn fmt::Display) -> M,
    ) -> Result<T, Failure>;
}

impl<T, E> OrExit<T> for Result<T, E>
where
    E: Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
{
    fn or_exit(self, exit: Exit) -> Result<T, Failure> {
        self.map_err(|e| {
            let source = e.into();
            Failure {
                exit,
                message: source.to_string(),
                source: Some(source),
            }
        })
    }

    fn or_exit_with<M: Into<String>>(
        self,
        exit: Exit,
        message: impl FnOnce(&dyn fmt::Display) -> M,
    ) -> Result<T, Failure> {
        self.map_err(|e| {
            let source = e.into();
            Failure {
                exit,
                message: message(&source).into(),
                source: Some(source),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_the_documented_numbers() {
        assert_eq!(
            [Exit::Runtime, Exit::Usage, Exit::Startup].map(Exit::code),
            [1, 2, 3]
        );
    }

    #[test]
    fn a_failure_keeps_its_message_and_its_source() {
        let io: Result<(), std::io::Error> = Err(std::io::Error::other("disk on fire"));
        let f = io
            .or_exit_with(Exit::Startup, |e| format!("opening the store: {e}"))
            .unwrap_err();
        assert_eq!(f.exit, Exit::Startup);
        assert_eq!(f.to_string(), "opening the store: disk on fire");
        let source = std::error::Error::source(&f).expect("the cause is kept");
        assert_eq!(source.to_string(), "disk on fire");
        let plain: Result<(), String> = Err("bad row".into());
        let f = plain.or_exit(Exit::Usage).unwrap_err();
        assert_eq!((f.exit, f.message.as_str()), (Exit::Usage, "bad row"));
    }
}
