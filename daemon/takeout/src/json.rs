//! The rows of the JSON formats, read without serde when they are plain.
//!
//! A Takeout row is a flat object whose values are `null`, strings or
//! unsigned integers. [`plain_row`] reads such an object byte by byte when
//! it has nothing unusual in it (no escape in a string, no other kind of
//! value, no unknown or repeated key); anything else is left to serde,
//! which reads every valid row and words the errors. Both give the same
//! cells for the rows both read. [`Elements`] takes the objects of a JSON
//! array out of a file one at a time, so that they too are parsed from
//! memory rather than through a reader. [`Cell`] is the value both
//! readers give, which the row builders of `read` take.

use std::borrow::Cow;
use std::io::Read;

use arrow_schema::Schema;
use serde_json::Value;

/// A JSON value of a Takeout column: null, a string or an unsigned integer
/// (anything else is refused, with its JSON type).
pub(crate) enum Cell<'a> {
    Null,
    Str(Cow<'a, str>),
    UInt(u64),
    Other(String),
}

/// Deserializes one [`Cell`].
pub(crate) struct CellVisitor;

impl<'de> serde::de::Visitor<'de> for CellVisitor {
    type Value = Cell<'de>;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_unit<E>(self) -> Result<Cell<'de>, E> {
        Ok(Cell::Null)
    }
    fn visit_none<E>(self) -> Result<Cell<'de>, E> {
        Ok(Cell::Null)
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Cell<'de>, E> {
        Ok(Cell::Str(v.into()))
    }
    fn visit_str<E>(self, v: &str) -> Result<Cell<'de>, E> {
        Ok(Cell::Str(v.to_owned().into()))
    }
    fn visit_string<E>(self, v: String) -> Result<Cell<'de>, E> {
        Ok(Cell::Str(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Cell<'de>, E> {
        Ok(Cell::UInt(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Cell<'de>, E> {
        Ok(Cell::Other(v.to_string()))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Cell<'de>, E> {
        Ok(Cell::Other(Value::from(v).to_string()))
    }
    fn visit_bool<E>(self, v: bool) -> Result<Cell<'de>, E> {
        Ok(Cell::Other(v.to_string()))
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, seq: A) -> Result<Cell<'de>, A::Error> {
        let v: Value =
            serde::Deserialize::deserialize(serde::de::value::SeqAccessDeserializer::new(seq))?;
        Ok(Cell::Other(v.to_string()))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Cell<'de>, A::Error> {
        let v: Value =
            serde::Deserialize::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
        Ok(Cell::Other(v.to_string()))
    }
}

impl<'de> serde::de::DeserializeSeed<'de> for CellVisitor {
    type Value = Cell<'de>;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Cell<'de>, D::Error> {
        d.deserialize_any(self)
    }
}

/// The longest row of a JSON array, in bytes.
pub const MAX_ROW_BYTES: usize = 16 << 20;

/// JSON's whitespace.
pub(crate) fn is_ws(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | b'\r')
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && is_ws(b[i]) {
        i += 1;
    }
    i
}

/// The end of the string that starts after the quote at `i - 1`, if it
/// has no escape and no control character: the offset of its closing quote.
fn plain_str(b: &[u8], i: usize) -> Option<usize> {
    let len = b
        .get(i..)?
        .iter()
        .position(|&c| c == b'"' || c == b'\\' || c < 0x20)?;
    (b[i + len] == b'"').then_some(i + len)
}

/// A value of a plain row: where it is in the row's bytes.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Val {
    Null,
    /// A string without escapes, at these offsets (quotes excluded).
    Str(usize, usize),
    UInt(u64),
}

impl Val {
    /// The value as a cell, `text` being the row given to [`plain_row`]
    /// (its bytes up to the offset returned, at least).
    pub(crate) fn cell(self, text: &str) -> Cell<'_> {
        match self {
            Val::Null => Cell::Null,
            // The offsets are next to quotes: character boundaries.
            Val::Str(from, to) => Cell::Str(Cow::Borrowed(&text[from..to])),
            Val::UInt(n) => Cell::UInt(n),
        }
    }
}

/// Reads the object at the start of `b` (after optional whitespace) if it
/// is plain: `cells` gets its (column, value) pairs in key order, and the
/// offset just past its closing brace is returned. None: not plain, or not
/// complete within `b`. The bytes are not checked to be UTF-8: the caller
/// has a `str`, or checks the row's bytes once.
pub(crate) fn plain_row(b: &[u8], schema: &Schema, cells: &mut Vec<(usize, Val)>) -> Option<usize> {
    cells.clear();
    let fields = schema.fields();
    let mut i = skip_ws(b, 0);
    if b.get(i) != Some(&b'{') {
        return None;
    }
    i = skip_ws(b, i + 1);
    if b.get(i) == Some(&b'}') {
        return Some(i + 1);
    }
    let mut seen = 0u64;
    let mut next_col = 0;
    loop {
        if b.get(i) != Some(&b'"') {
            return None;
        }
        let end = plain_str(b, i + 1)?;
        let key = &b[i + 1..end];
        // Keys usually come in the schema's order.
        let col = match fields.get(next_col) {
            Some(f) if f.name().as_bytes() == key => next_col,
            _ => fields.iter().position(|f| f.name().as_bytes() == key)?,
        };
        if col >= 64 || seen & (1 << col) != 0 {
            return None;
        }
        seen |= 1 << col;
        next_col = col + 1;
        i = skip_ws(b, end + 1);
        if b.get(i) != Some(&b':') {
            return None;
        }
        i = skip_ws(b, i + 1);
        let (cell, after) = match *b.get(i)? {
            b'"' => {
                let end = plain_str(b, i + 1)?;
                (Val::Str(i + 1, end), end + 1)
            }
            b'n' if b[i..].starts_with(b"null") => (Val::Null, i + 4),
            b'0'..=b'9' => {
                let len = b[i..].iter().take_while(|c| c.is_ascii_digit()).count();
                // A leading zero, a fraction or an exponent: serde's to read.
                if (len > 1 && b[i] == b'0') || matches!(b.get(i + len), Some(b'.' | b'e' | b'E')) {
                    return None;
                }
                let mut n = 0u64;
                for &d in &b[i..i + len] {
                    n = n.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
                }
                (Val::UInt(n), i + len)
            }
            _ => return None,
        };
        cells.push((col, cell));
        i = skip_ws(b, after);
        match b.get(i)? {
            b',' => i = skip_ws(b, i + 1),
            b'}' => return Some(i + 1),
            _ => return None,
        }
    }
}

/// Where [`Elements`] is in the array.
#[derive(Clone, Copy, PartialEq)]
enum At {
    Start,
    First,
    Next,
    End,
}

/// The elements of a JSON array, read from a file in large blocks.
pub(crate) struct Elements<R> {
    rd: R,
    buf: Vec<u8>,
    /// Consumed up to here.
    pos: usize,
    /// Read up to here.
    end: usize,
    eof: bool,
    at: At,
    /// Elements taken so far.
    rows: u64,
}

/// An element of the array: parsed by the caller's plain reader, or its
/// whole text for serde.
pub(crate) enum Element<'b> {
    Plain,
    Text(&'b [u8]),
}

impl<R: Read> Elements<R> {
    pub(crate) fn new(rd: R) -> Self {
        Elements {
            rd,
            buf: vec![0; 1 << 20],
            pos: 0,
            end: 0,
            eof: false,
            at: At::Start,
            rows: 0,
        }
    }

    /// Reads more, keeping the bytes from `pos` on. False at the end of
    /// the file.
    fn fill(&mut self) -> Result<bool, (Option<u64>, String)> {
        if self.eof {
            return Ok(false);
        }
        if self.pos > 0 {
            self.buf.copy_within(self.pos..self.end, 0);
            self.end -= self.pos;
            self.pos = 0;
        }
        if self.end == self.buf.len() {
            if self.buf.len() >= MAX_ROW_BYTES {
                return Err((
                    Some(self.rows.max(1)),
                    format!("longer than {} MiB", MAX_ROW_BYTES >> 20),
                ));
            }
            self.buf.resize(self.buf.len() * 2, 0);
        }
        let n = loop {
            match self.rd.read(&mut self.buf[self.end..]) {
                Ok(n) => break n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err((None, e.to_string())),
            }
        };
        self.end += n;
        self.eof = n == 0;
        Ok(n > 0)
    }

    /// The next byte that is not whitespace (not consumed), or None at the
    /// end of the file.
    fn peek(&mut self) -> Result<Option<u8>, (Option<u64>, String)> {
        loop {
            self.pos = skip_ws(&self.buf[..self.end], self.pos);
            if self.pos < self.end {
                return Ok(Some(self.buf[self.pos]));
            }
            if !self.fill()? {
                return Ok(None);
            }
        }
    }

    /// The next element. `plain` is offered the bytes from the element's
    /// start to the end of what is read; it returns how many bytes it
    /// consumed when it read the element itself (see [`plain_row`]), or
    /// None. Errors are about the array's structure: the row they are in
    /// (1-based), and why.
    pub(crate) fn next(
        &mut self,
        plain: &mut dyn FnMut(&[u8]) -> Option<usize>,
    ) -> Result<Option<Element<'_>>, (Option<u64>, String)> {
        let cut = |row: u64| (Some(row), "the file is cut short".to_owned());
        match self.at {
            At::End => return Ok(None),
            At::Start => {
                match self.peek()? {
                    Some(b'[') => self.pos += 1,
                    _ => return Err((None, "not a JSON array: it does not start with [".into())),
                }
                self.at = At::First;
            }
            At::First | At::Next => {}
        }
        let first = self.at == At::First;
        match self.peek()? {
            Some(b']') => {
                self.pos += 1;
                self.at = At::End;
                if self.peek()?.is_some() {
                    return Err((None, "text after the array's end".into()));
                }
                return Ok(None);
            }
            Some(b',') if !first => {
                self.pos += 1;
                if self.peek()?.is_none() {
                    return Err(cut(self.rows + 1));
                }
            }
            Some(_) if !first => {
                return Err((Some(self.rows), "expected , or ] after this row".into()));
            }
            Some(_) => {}
            None if first => {
                return Err((
                    None,
                    "the file is cut short: the array is not closed".into(),
                ));
            }
            None => {
                return Err((
                    Some(self.rows),
                    "the file is cut short after this row".into(),
                ));
            }
        }
        self.at = At::Next;
        self.rows += 1;
        if self.buf[self.pos] != b'{' {
            return Err((Some(self.rows), "not a JSON object".into()));
        }
        if let Some(n) = plain(&self.buf[self.pos..self.end]) {
            self.pos += n;
            return Ok(Some(Element::Plain));
        }
        // Not plain, or not all read yet: find the object's end.
        let (mut depth, mut in_str, mut escaped) = (0u32, false, false);
        let mut i = self.pos;
        loop {
            if i == self.end {
                let from = i - self.pos;
                if !self.fill()? {
                    return Err(cut(self.rows));
                }
                i = self.pos + from;
                continue;
            }
            let c = self.buf[i];
            i += 1;
            if in_str {
                if escaped {
                    escaped = false;
                } else if c == b'\\' {
                    escaped = true;
                } else if c == b'"' {
                    in_str = false;
                }
                continue;
            }
            match c {
                b'"' => in_str = true,
                b'{' | b'[' => depth += 1,
                b'}' | b']' => {
                    depth -= 1;
                    if depth == 0 {
                        let text = &self.buf[self.pos..i];
                        self.pos = i;
                        return Ok(Some(Element::Text(text)));
                    }
                }
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::Table;

    fn cells(text: &str) -> Option<(usize, Vec<(usize, String)>)> {
        let schema = Table::Props.schema();
        let mut out = Vec::new();
        let n = plain_row(text.as_bytes(), &schema, &mut out)?;
        let shown = out
            .into_iter()
            .map(|(i, c)| {
                let v = match c.cell(text) {
                    Cell::Null => "null".to_owned(),
                    Cell::Str(s) => format!("s:{s}"),
                    Cell::UInt(n) => format!("u:{n}"),
                    Cell::Other(o) => format!("o:{o}"),
                };
                (i, v)
            })
            .collect();
        Some((n, shown))
    }

    #[test]
    fn plain_rows_are_read_and_anything_else_is_left_to_serde() {
        let (n, c) = cells(r#" { "value" : "v" , "id":7,"key":null }  "#).unwrap();
        assert_eq!(n, 38);
        assert_eq!(
            c,
            [(2, "s:v".into()), (0, "u:7".into()), (1, "null".into())]
        );
        assert_eq!(cells("{}"), Some((2, vec![])));
        for text in [
            r#"{"id":7,"key":"a\"b"}"#,
            r#"{"id":7,"key":"a	b"}"#,
            r#"{"id":-7}"#,
            r#"{"id":07}"#,
            r#"{"id":7.0}"#,
            r#"{"id":7e1}"#,
            r#"{"id":18446744073709551616}"#,
            r#"{"id":true}"#,
            r#"{"id":[7]}"#,
            r#"{"id":nul}"#,
            r#"{"id":7,"id":8}"#,
            r#"{"x":7}"#,
            r#"{"i\u0064":7}"#,
            r#"{"id":7,}"#,
            r#"{"id":7 "key":"k"}"#,
            r#"{"id":7"#,
            r#"{"key":"k"#,
            r#"[{"id":7}]"#,
        ] {
            assert_eq!(cells(text), None, "{text}");
        }
        assert_eq!(
            cells(r#"{"id":18446744073709551615}"#).unwrap().1,
            [(0, "u:18446744073709551615".into())]
        );
    }

    /// Every element of `text`, each as "plain" or its text.
    fn elements(text: &str, block: usize) -> Result<Vec<String>, (Option<u64>, String)> {
        struct Slow<'a>(&'a [u8], usize);
        impl Read for Slow<'_> {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                let n = self.1.min(buf.len()).min(self.0.len());
                buf[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let schema = Table::Props.schema();
        let mut e = Elements::new(Slow(text.as_bytes(), block));
        let mut out = Vec::new();
        let mut cells = Vec::new();
        while let Some(el) = e.next(&mut |b| plain_row(b, &schema, &mut cells))? {
            out.push(match el {
                Element::Plain => "plain".to_owned(),
                Element::Text(t) => String::from_utf8(t.to_vec()).unwrap(),
            });
        }
        Ok(out)
    }

    #[test]
    fn array_elements_come_out_whole_across_reads() {
        let text = " [ {\"id\":1} ,\n{\"id\":2,\"key\":\"}\\\"{\"},{\"id\":[3]} ] \n";
        for block in [1, 2, 3, 7, 1 << 20] {
            let got = elements(text, block).unwrap();
            assert_eq!(got[1], "{\"id\":2,\"key\":\"}\\\"{\"}", "block {block}");
            assert_eq!(got[2], "{\"id\":[3]}", "block {block}");
            if block == 1 << 20 {
                assert_eq!(got[0], "plain");
            }
        }
        assert_eq!(elements("[]", 1).unwrap(), Vec::<String>::new());
        for (text, row, why) in [
            ("", None, "does not start with ["),
            ("{}", None, "does not start with ["),
            ("[", None, "cut short: the array is not closed"),
            ("[{\"id\":1}", Some(1), "cut short after this row"),
            ("[{\"id\":1},", Some(2), "cut short"),
            ("[{\"id\":1", Some(1), "cut short"),
            (
                "[{\"id\":1} {\"id\":2}]",
                Some(1),
                "expected , or ] after this row",
            ),
            ("[{\"id\":1},7]", Some(2), "not a JSON object"),
            ("[{\"id\":1}] x", None, "text after the array's end"),
        ] {
            let e = elements(text, 3).unwrap_err();
            assert_eq!(e.0, row, "{text}");
            assert!(e.1.contains(why), "{text}: {}", e.1);
        }
    }
}
