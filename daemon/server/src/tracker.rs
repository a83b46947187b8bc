//! The tracker script served at `/hv.js`.
//!
//! The source in `assets/hv.js` is hand-written and readable; at first use the
//! server drops whole-line `//` comments and leading indentation (nothing
//! else, so the result is exactly the written code) and keeps a gzip copy for
//! clients that accept it. No npm, no bundler.

use std::io::Write;
use std::sync::LazyLock;

use flate2::Compression;
use flate2::write::GzEncoder;

/// The script as written in the repository.
pub const SOURCE: &str = include_str!("../assets/hv.js");

/// The script as served: comment lines and indentation removed.
pub static SCRIPT: LazyLock<String> = LazyLock::new(|| minify(SOURCE));

/// [`SCRIPT`] compressed with gzip at the best level.
pub static SCRIPT_GZ: LazyLock<Vec<u8>> = LazyLock::new(|| {
    let mut gz = GzEncoder::new(Vec::new(), Compression::best());
    gz.write_all(SCRIPT.as_bytes()).expect("gzip into memory");
    gz.finish().expect("gzip into memory")
});

/// A strong validator for caches, from the script's bytes.
pub static ETAG: LazyLock<String> =
    LazyLock::new(|| format!("\"hv-{:08x}\"", crc32fast::hash(SCRIPT.as_bytes())));

/// Drops lines that are only a `//` comment, blank lines and leading whitespace.
pub fn minify(src: &str) -> String {
    src.lines()
        .map(str::trim_start)
        .filter(|l| !l.is_empty() && !l.starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minify_keeps_code_and_strings_with_slashes() {
        let src = "// header\n  var a = 'https://x';\n\n    // note\n  a();\n";
        assert_eq!(minify(src), "var a = 'https://x';\na();");
    }

    #[test]
    fn served_script_is_under_one_kilobyte_gzipped() {
        assert!(!SCRIPT.contains("\n//"));
        assert!(
            SCRIPT_GZ.len() < 1024,
            "hv.js is {} bytes gzipped",
            SCRIPT_GZ.len()
        );
    }
}
