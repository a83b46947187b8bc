//! The dashboard's static files, embedded in the binary: one stylesheet,
//! two scripts (the dashboard's, and the passkey buttons' of the sign-in
//! and account pages), one icon. Each is served with a version (a CRC-32 of its
//! bytes) so that pages can let browsers cache it for good.

use std::sync::LazyLock;

/// `(name, media type, bytes)` of every asset.
const FILES: [(&str, &str, &[u8]); 4] = [
    (
        "dashboard.css",
        "text/css; charset=utf-8",
        include_bytes!("assets/dashboard.css"),
    ),
    (
        "dashboard.js",
        "application/javascript; charset=utf-8",
        include_bytes!("assets/dashboard.js"),
    ),
    (
        "passkey.js",
        "application/javascript; charset=utf-8",
        include_bytes!("assets/passkey.js"),
    ),
    (
        "favicon.svg",
        "image/svg+xml",
        include_bytes!("assets/favicon.svg"),
    ),
];

static VERSIONS: LazyLock<Vec<String>> = LazyLock::new(|| {
    FILES
        .iter()
        .map(|(_, _, b)| format!("{:08x}", crc32fast::hash(b)))
        .collect()
});

/// An asset's media type and bytes.
pub(crate) fn get(name: &str) -> Option<(&'static str, &'static [u8])> {
    FILES
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, t, b)| (*t, *b))
}

/// The version of an asset's current bytes.
pub(crate) fn version(name: &str) -> Option<&'static str> {
    let i = FILES.iter().position(|(n, _, _)| *n == name)?;
    Some(VERSIONS[i].as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assets_are_embedded_and_versioned() {
        for (name, _, bytes) in FILES {
            assert!(!bytes.is_empty(), "{name}");
            assert_eq!(version(name).unwrap().len(), 8);
        }
        assert!(get("nope.js").is_none());
        // Nothing in them reaches for another host.
        for (name, _, bytes) in FILES {
            let text = String::from_utf8_lossy(bytes);
            for needle in ["https://", "@import", "url(http", "//fonts."] {
                assert!(!text.contains(needle), "{name} contains {needle}");
            }
        }
    }
}
