//! `alejandra [--check] FILE...`: formats Nix files the way alejandra 3.1.0
//! (the library) does. With `--check` nothing is written: every file that
//! would change is named and the exit status is 1. A file that does not
//! parse is named with the parser's error (exit status 2).

use std::process::ExitCode;

use alejandra::format::{Status, in_memory};

fn main() -> ExitCode {
    let mut check = false;
    let mut files = Vec::new();
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--check" | "-c" => check = true,
            "--version" => {
                println!("alejandra {}", alejandra::version::VERSION);
                return ExitCode::SUCCESS;
            }
            _ if arg.starts_with('-') => {
                eprintln!("usage: alejandra [--check] FILE...");
                return ExitCode::from(2);
            }
            _ => files.push(arg),
        }
    }
    if files.is_empty() {
        eprintln!("usage: alejandra [--check] FILE...");
        return ExitCode::from(2);
    }
    let mut code = 0u8;
    for file in files {
        let before = match std::fs::read_to_string(&file) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("{file}: {e}");
                code = 2;
                continue;
            }
        };
        match in_memory(file.clone(), before) {
            (Status::Error(e), _) => {
                eprintln!("{file}: {e}");
                code = 2;
            }
            (Status::Changed(false), _) => {}
            (Status::Changed(true), _) if check => {
                println!("{file}: not formatted (format it with `alejandra {file}`)");
                code = code.max(1);
            }
            (Status::Changed(true), after) => {
                if let Err(e) = std::fs::write(&file, after) {
                    eprintln!("{file}: {e}");
                    code = 2;
                } else {
                    println!("{file}: formatted");
                }
            }
        }
    }
    ExitCode::from(code)
}
