//! The fast path of [`super::parse_browser`]: a hand-written reader for the
//! bodies browsers actually send (one flat JSON object; strings without
//! escapes; integers; `null`, `true`, `false`; props as one nested object of
//! such values), which borrows from the body instead of building a
//! `serde_json::Value` with an owned string per key and value.
//!
//! It decides nothing on its own: it returns a hit only when the body is valid
//! JSON and every field is within its limits, and `None` for anything else
//! (escapes, floats, arrays, duplicate keys, props as a JSON string, any
//! refusal). The caller then runs the general parser, which produces the
//! result or the documented refusal. So the fast path can only ever return
//! what the general parser would have returned; the tests compare the two.

use super::{BrowserHit, Limits};

/// A scalar or (one level deep) an object, borrowed from the body.
#[derive(Debug)]
enum Val<'a> {
    Null,
    Bool(bool),
    /// An integer literal as written (`0`, `42`, `-7`): no fraction, no exponent.
    Int(&'a str),
    Str(&'a str),
    Obj(Vec<(&'a str, Val<'a>)>),
}

struct Reader<'a> {
    s: &'a str,
    i: usize,
}

impl<'a> Reader<'a> {
    fn peek(&self) -> Option<u8> {
        self.s.as_bytes().get(self.i).copied()
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }

    fn eat(&mut self, c: u8) -> Option<()> {
        (self.peek()? == c).then(|| self.i += 1)
    }

    /// A string with no escapes and no control characters (JSON forbids raw
    /// ones; an escape sends the body to the general parser).
    fn string(&mut self) -> Option<&'a str> {
        self.eat(b'"')?;
        let start = self.i;
        let b = self.s.as_bytes();
        loop {
            match *b.get(self.i)? {
                b'"' => break,
                b'\\' | 0..=0x1f => return None,
                _ => self.i += 1,
            }
        }
        let out = &self.s[start..self.i];
        self.i += 1;
        Some(out)
    }

    /// After a number or literal: the next byte must end the value.
    fn delimited(&self) -> bool {
        matches!(
            self.peek(),
            None | Some(b' ' | b'\t' | b'\n' | b'\r' | b',' | b'}' | b']')
        )
    }

    fn literal(&mut self, word: &str) -> Option<()> {
        let rest = self.s.as_bytes().get(self.i..)?;
        if !rest.starts_with(word.as_bytes()) {
            return None;
        }
        self.i += word.len();
        self.delimited().then_some(())
    }

    /// `0` or `-?[1-9][0-9]{0,17}`: fits an i64 and prints back as written.
    fn int(&mut self) -> Option<&'a str> {
        let start = self.i;
        let neg = self.peek() == Some(b'-');
        if neg {
            self.i += 1;
        }
        let digits = self.i;
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.i += 1;
        }
        let d = &self.s[digits..self.i];
        let ok = match d.as_bytes() {
            [] => false,
            [b'0'] => !neg,
            [b'0', ..] => false,
            _ => d.len() <= 18,
        };
        (ok && self.delimited()).then(|| &self.s[start..self.i])
    }

    fn value(&mut self, nested: bool) -> Option<Val<'a>> {
        match self.peek()? {
            b'"' => self.string().map(Val::Str),
            b'n' => self.literal("null").map(|()| Val::Null),
            b't' => self.literal("true").map(|()| Val::Bool(true)),
            b'f' => self.literal("false").map(|()| Val::Bool(false)),
            b'{' if !nested => self.object(true).map(Val::Obj),
            b'-' | b'0'..=b'9' => self.int().map(Val::Int),
            _ => None,
        }
    }

    /// An object whose keys are unique (a duplicate goes to the general
    /// parser, whose last-one-wins rule this path does not repeat).
    fn object(&mut self, nested: bool) -> Option<Vec<(&'a str, Val<'a>)>> {
        self.eat(b'{')?;
        let mut out: Vec<(&'a str, Val<'a>)> = Vec::new();
        self.ws();
        if self.eat(b'}').is_some() {
            return Some(out);
        }
        loop {
            self.ws();
            let k = self.string()?;
            if out.iter().any(|(seen, _)| *seen == k) {
                return None;
            }
            self.ws();
            self.eat(b':')?;
            self.ws();
            let v = self.value(nested)?;
            out.push((k, v));
            self.ws();
            match self.peek()? {
                b',' => self.i += 1,
                b'}' => {
                    self.i += 1;
                    return Some(out);
                }
                _ => return None,
            }
        }
    }
}

/// The first of `keys` present and not null (the general parser's rule).
fn get<'o, 'a>(m: &'o [(&'a str, Val<'a>)], keys: &[&str]) -> Option<&'o Val<'a>> {
    keys.iter().find_map(|k| {
        m.iter()
            .find(|(name, v)| name == k && !matches!(v, Val::Null))
            .map(|(_, v)| v)
    })
}

/// An optional string field within `limit` bytes; `Err` for anything else.
fn text<'a>(m: &[(&'a str, Val<'a>)], keys: &[&str], limit: usize) -> Result<Option<&'a str>, ()> {
    match get(m, keys) {
        None => Ok(None),
        Some(Val::Str(s)) if s.len() <= limit => Ok(Some(s)),
        Some(_) => Err(()),
    }
}

fn required<'a>(m: &[(&'a str, Val<'a>)], keys: &[&str], limit: usize) -> Option<String> {
    match text(m, keys, limit) {
        Ok(Some(s)) if !s.trim().is_empty() => Some(s.trim().to_owned()),
        _ => None,
    }
}

fn props(m: &[(&str, Val<'_>)], limits: &Limits) -> Option<Vec<(String, String)>> {
    let obj = match get(m, &["p", "props", "m", "meta"]) {
        None => return Some(vec![]),
        Some(Val::Obj(o)) => o,
        Some(_) => return None,
    };
    if obj.len() > limits.props {
        return None;
    }
    let mut out = Vec::with_capacity(obj.len());
    for (k, v) in obj {
        if k.is_empty() || k.len() > limits.prop_key_bytes {
            return None;
        }
        let v = match v {
            Val::Null => continue,
            Val::Str(s) | Val::Int(s) => *s,
            Val::Bool(true) => "true",
            Val::Bool(false) => "false",
            Val::Obj(_) => return None,
        };
        if v.len() > limits.prop_value_bytes {
            return None;
        }
        out.push((k.to_string(), v.to_owned()));
    }
    // The general parser's map keeps keys sorted; keys here are unique.
    out.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    Some(out)
}

/// The hit, when the body takes the fast path and is acceptable as it is.
pub(super) fn browser(body: &[u8], limits: &Limits) -> Option<BrowserHit> {
    let s = std::str::from_utf8(body).ok()?;
    let mut r = Reader { s, i: 0 };
    r.ws();
    let m = r.object(false)?;
    r.ws();
    if r.i != s.len() {
        return None;
    }
    let name = required(&m, &["n", "name"], limits.name_bytes)?;
    let url = required(&m, &["u", "url"], limits.url_bytes)?;
    let domains = match text(
        &m,
        &["d", "domain", "site"],
        limits.domain_bytes * limits.domains,
    ) {
        Ok(None) => vec![],
        Ok(Some(d)) => {
            let list: Vec<String> = d
                .split(',')
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect();
            if list.len() > limits.domains || list.iter().any(|d| d.len() > limits.domain_bytes) {
                return None;
            }
            list
        }
        Err(()) => return None,
    };
    let referrer = text(&m, &["r", "referrer"], limits.referrer_bytes)
        .ok()?
        .map(str::to_owned);
    let screen_width = match get(&m, &["w", "screen_width"]) {
        None => None,
        Some(Val::Int(d)) => match d.parse::<u64>() {
            Ok(w) if w <= limits.screen_width_max => Some(w as u16),
            _ => return None,
        },
        Some(_) => return None,
    };
    let language = text(&m, &["l", "language"], limits.language_bytes)
        .ok()?
        .map(str::to_owned);
    let props = props(&m, limits)?;
    let engagement = if name == super::ENGAGEMENT {
        // Integers only; anything else is the general parser's to refuse.
        let int = |keys: &[&'static str]| match get(&m, keys) {
            None => Ok(None),
            Some(Val::Int(d)) => d
                .parse::<u64>()
                .map(|n| Some((keys[0], Some(n))))
                .map_err(|_| ()),
            Some(_) => Err(()),
        };
        let (e, sd) = (
            int(&["e", "engagement_time"]).ok()?,
            int(&["sd", "scroll_depth"]).ok()?,
        );
        Some(super::engaged(e, sd, limits).ok()?)
    } else {
        None
    };
    Some(BrowserHit {
        name,
        url,
        domains,
        referrer,
        screen_width,
        language,
        props,
        engagement,
    })
}
