//! CSV downloads of the dashboard's panels and chart (RFC 4180: comma
//! separated, CRLF line ends, fields quoted when they hold a comma, a quote
//! or a line break, quotes doubled).
//!
//! Values a visitor controls (paths, referrers, UTM fields, ...) that begin
//! with `=`, `+`, `-`, `@`, a tab or a carriage return get a leading `'`, so
//! that a spreadsheet opening the file never runs them as a formula.

/// One field, quoted when needed.
pub(crate) fn field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

/// A text field whose content came from outside (see the module doc).
pub(crate) fn text_field(s: &str) -> String {
    if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        field(&format!("'{s}"))
    } else {
        field(s)
    }
}

/// A whole file from a header and rows of already-made fields.
pub(crate) fn file(header: &[&str], rows: impl IntoIterator<Item = Vec<String>>) -> String {
    let mut out = header
        .iter()
        .map(|h| field(h))
        .collect::<Vec<_>>()
        .join(",");
    out.push_str("\r\n");
    for r in rows {
        out.push_str(&r.join(","));
        out.push_str("\r\n");
    }
    out
}

/// A share 0..=1 with four decimals.
pub(crate) fn share(x: f64) -> String {
    format!("{x:.4}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_quoted_only_when_needed() {
        assert_eq!(field("/pricing"), "/pricing");
        assert_eq!(field("a,b"), "\"a,b\"");
        assert_eq!(field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(field("two\nlines"), "\"two\nlines\"");
    }

    #[test]
    fn formulas_are_defused() {
        assert_eq!(
            text_field("=HYPERLINK(\"x\")"),
            "\"'=HYPERLINK(\"\"x\"\")\""
        );
        assert_eq!(text_field("-1"), "'-1");
        assert_eq!(text_field("/a"), "/a");
    }

    #[test]
    fn files_end_lines_with_crlf() {
        let f = file(&["a", "b"], [vec!["1".into(), field("x,y")]]);
        assert_eq!(f, "a,b\r\n1,\"x,y\"\r\n");
    }
}
