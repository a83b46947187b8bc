//! Text encodings of a record batch: CSV (RFC 4180), NDJSON and the objects
//! of a JSON array. Written by hand for speed; every value is one of five
//! Arrow types (UInt64, UInt16, Utf8, Timestamp(µs, UTC), Date32).

use std::io::{self, Write};

use arrow_array::cast::AsArray;
use arrow_array::types::{Date32Type, TimestampMicrosecondType, UInt16Type, UInt64Type};
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::DataType;

/// Writes `micros` as `YYYY-MM-DDTHH:MM:SS.ffffffZ` (27 bytes).
pub(crate) fn fmt_ts(micros: i64, out: &mut [u8; 27]) {
    let secs = micros.div_euclid(1_000_000);
    let frac = micros.rem_euclid(1_000_000) as u32;
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400) as u32;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = (yoe + era * 400 + i64::from(m <= 2)).clamp(0, 9999) as u32;
    let put = |out: &mut [u8; 27], at: usize, v: u32, n: usize| {
        let mut v = v;
        for i in (0..n).rev() {
            out[at + i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(out, 0, y, 4);
    out[4] = b'-';
    put(out, 5, m, 2);
    out[7] = b'-';
    put(out, 8, d, 2);
    out[10] = b'T';
    put(out, 11, sod / 3600, 2);
    out[13] = b':';
    put(out, 14, sod / 60 % 60, 2);
    out[16] = b':';
    put(out, 17, sod % 60, 2);
    out[19] = b'.';
    put(out, 20, frac, 6);
    out[26] = b'Z';
}

/// Writes `days` since 1970-01-01 as `YYYY-MM-DD` (10 bytes).
pub(crate) fn fmt_date(days: i32, out: &mut Vec<u8>) {
    let mut b = [0u8; 27];
    fmt_ts(i64::from(days) * 86_400_000_000, &mut b);
    out.extend_from_slice(&b[..10]);
}

enum Col<'a> {
    U64(&'a arrow_array::UInt64Array),
    U16(&'a arrow_array::UInt16Array),
    Str(&'a arrow_array::StringArray),
    Ts(&'a arrow_array::TimestampMicrosecondArray),
    Date(&'a arrow_array::Date32Array),
}

fn cols(batch: &RecordBatch) -> Vec<Col<'_>> {
    batch
        .columns()
        .iter()
        .map(|c: &ArrayRef| match c.data_type() {
            DataType::UInt64 => Col::U64(c.as_primitive::<UInt64Type>()),
            DataType::UInt16 => Col::U16(c.as_primitive::<UInt16Type>()),
            DataType::Utf8 => Col::Str(c.as_string::<i32>()),
            DataType::Timestamp(..) => Col::Ts(c.as_primitive::<TimestampMicrosecondType>()),
            DataType::Date32 => Col::Date(c.as_primitive::<Date32Type>()),
            other => unreachable!("the Takeout schema has no {other} column"),
        })
        .collect()
}

fn json_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    let bytes = s.as_bytes();
    if !bytes.iter().any(|&b| b < 0x20 || b == b'"' || b == b'\\') {
        // The common case: nothing to escape.
        out.extend_from_slice(bytes);
        out.push(b'"');
        return;
    }
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..=0x1f => {
                out.extend_from_slice(&bytes[start..i]);
                let _ = write!(out, "\\u{b:04x}");
                start = i + 1;
                continue;
            }
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        out.extend_from_slice(esc);
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

fn csv_str(out: &mut Vec<u8>, s: &str) {
    // An empty string is written quoted so that it differs from NULL (nothing).
    if s.is_empty() || s.bytes().any(|b| matches!(b, b',' | b'"' | b'\n' | b'\r')) {
        out.push(b'"');
        for part in s.split('"').enumerate() {
            if part.0 > 0 {
                out.extend_from_slice(b"\"\"");
            }
            out.extend_from_slice(part.1.as_bytes());
        }
        out.push(b'"');
    } else {
        out.extend_from_slice(s.as_bytes());
    }
}

/// Decimal digits of `v`, without going through `fmt`.
fn put_u64(out: &mut Vec<u8>, mut v: u64) {
    let mut b = [0u8; 20];
    let mut at = b.len();
    loop {
        at -= 1;
        b[at] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&b[at..]);
}

/// JSON-encodes row `i` as one object (no trailing newline) into `out`.
/// `keys[k]` is what precedes column `k`'s value: `{"name":` or `,"name":`.
fn json_row(out: &mut Vec<u8>, keys: &[Vec<u8>], cols: &[Col<'_>], i: usize) {
    for (key, c) in keys.iter().zip(cols) {
        out.extend_from_slice(key);
        let null = match c {
            Col::U64(a) => a.is_null(i),
            Col::U16(a) => a.is_null(i),
            Col::Str(a) => a.is_null(i),
            Col::Ts(a) => a.is_null(i),
            Col::Date(a) => a.is_null(i),
        };
        if null {
            out.extend_from_slice(b"null");
            continue;
        }
        match c {
            Col::U64(a) => put_u64(out, a.value(i)),
            Col::U16(a) => put_u64(out, a.value(i).into()),
            Col::Str(a) => json_str(out, a.value(i)),
            Col::Ts(a) => {
                let mut b = [0u8; 27];
                fmt_ts(a.value(i), &mut b);
                out.push(b'"');
                out.extend_from_slice(&b);
                out.push(b'"');
            }
            Col::Date(a) => {
                out.push(b'"');
                fmt_date(a.value(i), out);
                out.push(b'"');
            }
        }
    }
    out.push(b'}');
}

/// Text encodings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Text {
    Csv,
    Ndjson,
    /// Elements of a JSON array; `first` tells whether a comma is due.
    JsonArray,
}

/// Encodes a whole batch into `out`; `first_row` says whether this batch
/// starts the file (JSON arrays need a comma between elements).
pub(crate) fn encode(
    kind: Text,
    batch: &RecordBatch,
    first_row: bool,
    out: &mut Vec<u8>,
) -> io::Result<()> {
    let keys: Vec<Vec<u8>> = batch
        .schema()
        .fields()
        .iter()
        .enumerate()
        .map(|(k, f)| {
            let mut key = Vec::with_capacity(f.name().len() + 4);
            key.push(if k == 0 { b'{' } else { b',' });
            json_str(&mut key, f.name());
            key.push(b':');
            key
        })
        .collect();
    let cols = cols(batch);
    out.reserve(batch.num_rows() * 64);
    for i in 0..batch.num_rows() {
        match kind {
            Text::Ndjson => {
                json_row(out, &keys, &cols, i);
                out.push(b'\n');
            }
            Text::JsonArray => {
                if !(first_row && i == 0) {
                    out.extend_from_slice(b",\n");
                }
                json_row(out, &keys, &cols, i);
            }
            Text::Csv => {
                for (k, c) in cols.iter().enumerate() {
                    if k > 0 {
                        out.push(b',');
                    }
                    match c {
                        Col::U64(a) if !a.is_null(i) => put_u64(out, a.value(i)),
                        Col::U16(a) if !a.is_null(i) => put_u64(out, a.value(i).into()),
                        Col::Str(a) if !a.is_null(i) => csv_str(out, a.value(i)),
                        Col::Ts(a) if !a.is_null(i) => {
                            let mut b = [0u8; 27];
                            fmt_ts(a.value(i), &mut b);
                            out.extend_from_slice(&b);
                        }
                        Col::Date(a) if !a.is_null(i) => fmt_date(a.value(i), out),
                        _ => {}
                    }
                }
                out.extend_from_slice(b"\r\n");
            }
        }
    }
    Ok(())
}

/// The CSV header line of a table.
pub(crate) fn csv_header(schema: &arrow_schema::Schema) -> Vec<u8> {
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    let mut h = names.join(",").into_bytes();
    h.extend_from_slice(b"\r\n");
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_format_as_rfc3339_utc() {
        let mut b = [0u8; 27];
        fmt_ts(0, &mut b);
        assert_eq!(&b, b"1970-01-01T00:00:00.000000Z");
        fmt_ts(1_764_300_000_123_456, &mut b);
        let j = jiff::Timestamp::from_microsecond(1_764_300_000_123_456).unwrap();
        assert_eq!(std::str::from_utf8(&b).unwrap(), format!("{j:.6}"));
        fmt_ts(951_782_400_000_000, &mut b); // 2000-02-29
        assert_eq!(&b, b"2000-02-29T00:00:00.000000Z");
        let mut d = Vec::new();
        fmt_date(11_016, &mut d);
        fmt_date(-1, &mut d);
        assert_eq!(d, b"2000-02-291969-12-31");
    }

    #[test]
    fn json_strings_escape_controls_and_quotes() {
        let mut out = Vec::new();
        json_str(&mut out, "a\"b\\c\n\u{1}é");
        let back: String = serde_json::from_slice(&out).unwrap();
        assert_eq!(back, "a\"b\\c\n\u{1}é");
    }
}
