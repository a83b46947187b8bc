//! Reading a Takeout's data files back into record batches of the Takeout
//! schema, checking every row. Errors name the file, the row (1-based, data
//! rows only) and the reason.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::builder::{
    Date32Builder, StringBuilder, TimestampMicrosecondBuilder, UInt16Builder, UInt64Builder,
};
use arrow_array::cast::AsArray;
use arrow_array::{Array, ArrayRef, RecordBatch, RecordBatchReader};
use arrow_schema::{DataType, SchemaRef};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::Value;

use crate::json::{Cell, CellVisitor};
use crate::schema::{
    DEVICES, GOAL_KINDS, IMPORTED_DIMS, KINDS, MAX_ENGAGED_MS, MAX_SCROLL_DEPTH, Table, conform,
};
use crate::{Format, json};

/// Rows per batch handed to the sink by the text readers.
const BATCH_ROWS: usize = 64 * 1024;

/// A data file that cannot be imported: which file, which row, why.
#[derive(Debug, thiserror::Error)]
#[error("{}{}: {reason}", file.display(), row.map(|r| format!(", row {r}")).unwrap_or_default())]
pub struct ImportError {
    pub file: PathBuf,
    /// 1-based data row, when the problem is in one row.
    pub row: Option<u64>,
    pub reason: String,
}

fn err(file: &Path, row: Option<u64>, reason: impl Into<String>) -> ImportError {
    ImportError {
        file: file.to_owned(),
        row,
        reason: reason.into(),
    }
}

enum B {
    U64(UInt64Builder),
    U16(UInt16Builder),
    Str(StringBuilder),
    Ts(TimestampMicrosecondBuilder),
    Date(Date32Builder),
}

/// Column builders for one table, filled from text values.
struct Builders {
    schema: SchemaRef,
    cols: Vec<B>,
    rows: usize,
}

impl Builders {
    fn new(table: Table) -> Self {
        let schema = table.schema();
        let cols = schema
            .fields()
            .iter()
            .map(|f| match f.data_type() {
                DataType::UInt64 => B::U64(UInt64Builder::new()),
                DataType::UInt16 => B::U16(UInt16Builder::new()),
                DataType::Utf8 => B::Str(StringBuilder::new()),
                DataType::Timestamp(..) => {
                    B::Ts(TimestampMicrosecondBuilder::new().with_timezone("UTC"))
                }
                DataType::Date32 => B::Date(Date32Builder::new()),
                other => unreachable!("the Takeout schema has no {other} column"),
            })
            .collect();
        Builders {
            schema,
            cols,
            rows: 0,
        }
    }

    /// Appends column `i` from text (`None`: NULL).
    fn push(&mut self, i: usize, v: Option<&str>) -> Result<(), String> {
        let field = &self.schema.fields()[i];
        let name = field.name();
        match (&mut self.cols[i], v) {
            (B::Str(b), None) if !field.is_nullable() => b.append_value(""),
            (_, None) if !field.is_nullable() => return Err(format!("{name} must not be empty")),
            (B::U64(b), None) => b.append_null(),
            (B::U16(b), None) => b.append_null(),
            (B::Str(b), None) => b.append_null(),
            (B::Ts(b), None) => b.append_null(),
            (B::Date(b), None) => b.append_null(),
            (B::U64(b), Some(s)) => b.append_value(
                s.parse()
                    .map_err(|_| format!("{name}: {s:?} is not an unsigned 64-bit integer"))?,
            ),
            (B::U16(b), Some(s)) => b.append_value(
                s.parse()
                    .map_err(|_| format!("{name}: {s:?} is not an integer 0..65535"))?,
            ),
            (B::Str(b), Some(s)) => b.append_value(s),
            (B::Ts(b), Some(s)) => b.append_value(match parse_ts_fast(s) {
                Some(us) => us,
                None => s
                    .parse::<jiff::Timestamp>()
                    .map_err(|e| format!("{name}: {s:?} is not an RFC 3339 time: {e}"))?
                    .as_microsecond(),
            }),
            (B::Date(b), Some(s)) => b.append_value(
                parse_date(s).ok_or_else(|| format!("{name}: {s:?} is not a date (YYYY-MM-DD)"))?,
            ),
        }
        Ok(())
    }

    fn take(&mut self) -> RecordBatch {
        let cols: Vec<ArrayRef> = self
            .cols
            .iter_mut()
            .map(|b| -> ArrayRef {
                match b {
                    B::U64(b) => Arc::new(b.finish()),
                    B::U16(b) => Arc::new(b.finish()),
                    B::Str(b) => Arc::new(b.finish()),
                    B::Ts(b) => Arc::new(b.finish()),
                    B::Date(b) => Arc::new(b.finish()),
                }
            })
            .collect();
        self.rows = 0;
        RecordBatch::try_new(self.schema.clone(), cols).expect("builders follow the schema")
    }
}

/// Checks the values the schema's types cannot: `kind`, `device`, a funnel's
/// `step`, an imported value's `dim`, an engagement's `engaged_ms` and
/// `scroll_depth`, non-NULL columns (the rules of a
/// goal's or funnel's values, how a funnel's rows fit together, and
/// repeated keys are checked by the store's import). `first_row` is the
/// 1-based number of the batch's first row.
fn check(table: Table, batch: &RecordBatch, first_row: u64) -> Result<(), (u64, String)> {
    for (i, f) in table.schema().fields().iter().enumerate() {
        let c = batch.column(i);
        if !f.is_nullable()
            && c.null_count() > 0
            && let Some(r) = (0..c.len()).find(|&r| c.is_null(r))
        {
            return Err((
                first_row + r as u64,
                format!("{} must not be NULL", f.name()),
            ));
        }
    }
    let allowed = match table {
        Table::Hits => &[
            ("kind", &KINDS[..], ""),
            ("device", &DEVICES[..], " or null"),
        ][..],
        Table::Goals | Table::Funnels => &[("kind", &GOAL_KINDS[..], "")][..],
        Table::ImportedValues => {
            &[("dim", &IMPORTED_DIMS[..], " (the stats API's dimensions)")][..]
        }
        _ => &[][..],
    };
    for &(column, values, or) in allowed {
        let col = batch
            .column_by_name(column)
            .expect("in the schema")
            .as_string::<i32>();
        for (r, v) in col.iter().enumerate() {
            if let Some(v) = v
                && !values.contains(&v)
            {
                return Err((
                    first_row + r as u64,
                    format!("{column} {v:?} is not one of {values:?}{or}"),
                ));
            }
        }
    }
    if table == Table::Funnels {
        let step = batch
            .column_by_name("step")
            .expect("in the schema")
            .as_primitive::<arrow_array::types::UInt16Type>();
        if let Some(r) = step.iter().position(|s| s == Some(0)) {
            return Err((
                first_row + r as u64,
                "step 0: steps are numbered from 1".into(),
            ));
        }
    }
    if table == Table::Engagements {
        use arrow_array::types::{UInt16Type, UInt64Type};
        let ms = batch
            .column_by_name("engaged_ms")
            .expect("in the schema")
            .as_primitive::<UInt64Type>();
        if let Some(r) = ms.iter().position(|v| v > Some(MAX_ENGAGED_MS)) {
            return Err((
                first_row + r as u64,
                format!(
                    "engaged_ms {} is above {MAX_ENGAGED_MS} (one day)",
                    ms.value(r)
                ),
            ));
        }
        let sd = batch
            .column_by_name("scroll_depth")
            .expect("in the schema")
            .as_primitive::<UInt16Type>();
        if let Some(r) = sd.iter().position(|v| v > Some(MAX_SCROLL_DEPTH)) {
            return Err((
                first_row + r as u64,
                format!(
                    "scroll_depth {} is above {MAX_SCROLL_DEPTH} (percent)",
                    sd.value(r)
                ),
            ));
        }
    }
    Ok(())
}

/// A reader that fails once a line (the bytes before a `\n`) grows past
/// [`json::MAX_ROW_BYTES`]: the CSV reader holds a record whole in memory,
/// so a file without line ends is refused instead. Lines within one read
/// are shorter than the read.
struct LineLimit<R> {
    inner: R,
    /// Bytes since the last line end.
    run: usize,
}

impl<R> LineLimit<R> {
    fn new(inner: R) -> Self {
        LineLimit { inner, run: 0 }
    }
}

impl<R: std::io::Read> std::io::Read for LineLimit<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        let block = &buf[..n];
        // The line running in from before ends at the first line end; the
        // lines after it end within this block, or run on.
        let longest = match block.iter().position(|&b| b == b'\n') {
            None => {
                self.run += n;
                self.run
            }
            Some(first) => {
                let last = block.iter().rposition(|&b| b == b'\n').unwrap_or(first);
                let crossing = self.run + first;
                self.run = n - last - 1;
                crossing.max(self.run)
            }
        };
        if longest > json::MAX_ROW_BYTES {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("a line longer than {} MiB", json::MAX_ROW_BYTES >> 20),
            ));
        }
        Ok(n)
    }
}

/// Reads `path` as `table` in `format` and hands every batch to `sink`.
/// Returns the number of rows. The sink's error aborts the read.
pub fn read_table(
    path: &Path,
    format: Format,
    table: Table,
    sink: &mut dyn FnMut(RecordBatch) -> Result<(), String>,
) -> Result<u64, ImportError> {
    let file = File::open(path).map_err(|e| err(path, None, e.to_string()))?;
    let mut rows = 0u64;
    let mut emit = |batch: RecordBatch, rows: &mut u64| -> Result<(), ImportError> {
        check(table, &batch, *rows + 1).map_err(|(r, m)| err(path, Some(r), m))?;
        *rows += batch.num_rows() as u64;
        sink(batch).map_err(|m| err(path, None, m))
    };
    match format {
        Format::Parquet => {
            let reader = ParquetRecordBatchReaderBuilder::try_new(file)
                .map_err(|e| err(path, None, format!("not a readable Parquet file: {e}")))?
                .with_batch_size(BATCH_ROWS)
                .build()
                .map_err(|e| err(path, None, e.to_string()))?;
            let expected = table.schema();
            let got = reader.schema();
            let names: Vec<&String> = got.fields().iter().map(|f| f.name()).collect();
            let want: Vec<&String> = expected.fields().iter().map(|f| f.name()).collect();
            if names != want {
                return Err(err(
                    path,
                    None,
                    format!("columns are {names:?}, expected {want:?}"),
                ));
            }
            for batch in reader {
                let batch = batch.map_err(|e| err(path, Some(rows + 1), e.to_string()))?;
                let batch = conform(table, &batch).map_err(|e| err(path, None, e.to_string()))?;
                emit(batch, &mut rows)?;
            }
        }
        Format::Csv => {
            let mut rdr = csv::ReaderBuilder::new()
                .has_headers(true)
                .from_reader(BufReader::with_capacity(1 << 20, LineLimit::new(file)));
            let header: Vec<String> = rdr
                .headers()
                .map_err(|e| err(path, None, e.to_string()))?
                .iter()
                .map(str::to_owned)
                .collect();
            let want: Vec<String> = table
                .schema()
                .fields()
                .iter()
                .map(|f| f.name().clone())
                .collect();
            if header != want {
                return Err(err(
                    path,
                    None,
                    format!("header is {header:?}, expected {want:?}"),
                ));
            }
            let mut b = Builders::new(table);
            let mut rec = csv::StringRecord::new();
            loop {
                let n = rows + b.rows as u64 + 1;
                match rdr.read_record(&mut rec) {
                    Ok(false) => break,
                    Ok(true) => {}
                    Err(e) => return Err(err(path, Some(n), e.to_string())),
                }
                if rec.len() != want.len() {
                    return Err(err(
                        path,
                        Some(n),
                        format!("{} fields, expected {}", rec.len(), want.len()),
                    ));
                }
                for (i, v) in rec.iter().enumerate() {
                    b.push(i, (!v.is_empty()).then_some(v))
                        .map_err(|m| err(path, Some(n), m))?;
                }
                b.rows += 1;
                if b.rows == BATCH_ROWS {
                    emit(b.take(), &mut rows)?;
                }
            }
            if b.rows > 0 {
                emit(b.take(), &mut rows)?;
            }
        }
        Format::Ndjson => {
            let mut b = Builders::new(table);
            let schema = table.schema();
            let mut cells = Vec::new();
            let mut raw = Vec::new();
            let mut rd = BufReader::with_capacity(1 << 20, file);
            loop {
                raw.clear();
                let n = rows + b.rows as u64 + 1;
                // The longest row and its line end, and one byte more: a
                // file without line ends is refused, not read whole.
                let got = std::io::Read::take(&mut rd, json::MAX_ROW_BYTES as u64 + 2)
                    .read_until(b'\n', &mut raw)
                    .map_err(|e| err(path, Some(n), e.to_string()))?;
                if got == 0 {
                    break;
                }
                let ended = raw.last() == Some(&b'\n');
                if got - usize::from(ended) > json::MAX_ROW_BYTES {
                    return Err(err(
                        path,
                        Some(n),
                        format!("longer than {} MiB", json::MAX_ROW_BYTES >> 20),
                    ));
                }
                if !ended {
                    return Err(err(
                        path,
                        Some(n),
                        "the last line is cut short (no newline)",
                    ));
                }
                let line = std::str::from_utf8(&raw)
                    .map_err(|e| err(path, Some(n), format!("not UTF-8: {e}")))?;
                let bytes = line.as_bytes();
                match json::plain_row(bytes, &schema, &mut cells) {
                    Some(end) if bytes[end..].iter().all(|&c| json::is_ws(c)) => {
                        b.plain_row(line, &cells)
                            .map_err(|m| err(path, Some(n), m))?;
                    }
                    _ => json_row(&mut b, bytes).map_err(|m| err(path, Some(n), m))?,
                }
                if b.rows == BATCH_ROWS {
                    emit(b.take(), &mut rows)?;
                }
            }
            if b.rows > 0 {
                emit(b.take(), &mut rows)?;
            }
        }
        Format::Json => {
            let mut b = Builders::new(table);
            let schema = table.schema();
            let mut cells = Vec::new();
            let mut elements = json::Elements::new(file);
            loop {
                let n = rows + b.rows as u64 + 1;
                let mut bad = None;
                let got = elements
                    .next(&mut |bytes| {
                        let end = json::plain_row(bytes, &schema, &mut cells)?;
                        // Not UTF-8: serde's to read and word.
                        let text = std::str::from_utf8(&bytes[..end]).ok()?;
                        bad = b.plain_row(text, &cells).err();
                        Some(end)
                    })
                    .map_err(|(row, m)| err(path, row, m))?;
                match got {
                    None => break,
                    Some(json::Element::Plain) => {}
                    Some(json::Element::Text(text)) => bad = json_row(&mut b, text).err(),
                }
                if let Some(m) = bad {
                    return Err(err(path, Some(n), m));
                }
                if b.rows == BATCH_ROWS {
                    emit(b.take(), &mut rows)?;
                }
            }
            if b.rows > 0 {
                emit(b.take(), &mut rows)?;
            }
        }
    }
    Ok(rows)
}

/// Appends the row in `text`, one JSON object, parsed by serde.
fn json_row(b: &mut Builders, text: &[u8]) -> Result<(), String> {
    let mut failed = None;
    let mut de = serde_json::Deserializer::from_slice(text);
    let parsed = serde::de::DeserializeSeed::deserialize(
        RowSeed {
            b,
            failed: &mut failed,
        },
        &mut de,
    )
    .and_then(|()| de.end());
    if let Some(m) = failed {
        return Err(m);
    }
    parsed.map_err(|e| format!("not a JSON object: {e}"))
}

/// Parses `YYYY-MM-DD` (exactly that form) into days since 1970-01-01.
fn parse_date(s: &str) -> Option<i32> {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let d: jiff::civil::Date = s.parse().ok()?;
    Some((d - jiff::civil::date(1970, 1, 1)).get_days())
}

/// Parses `YYYY-MM-DDTHH:MM:SS.ffffffZ`, the form every Takeout writes, without
/// a general RFC 3339 parser; `None` for anything else (then jiff decides).
fn parse_ts_fast(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != 27
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
        || b[19] != b'.'
        || b[26] != b'Z'
    {
        return None;
    }
    let num = |from: usize, to: usize| -> Option<i64> {
        b[from..to].iter().try_fold(0i64, |acc, &c| {
            c.is_ascii_digit().then(|| acc * 10 + i64::from(c - b'0'))
        })
    };
    let (y, m, d) = (num(0, 4)?, num(5, 7)?, num(8, 10)?);
    // The years jiff (the general parser) takes too, with margin.
    if !(1..=9998).contains(&y) {
        return None;
    }
    let (hh, mm, ss, frac) = (num(11, 13)?, num(14, 16)?, num(17, 19)?, num(20, 26)?);
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let month_days = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if !(1..=12).contains(&m) || d < 1 || d > month_days[(m - 1) as usize] {
        return None;
    }
    if hh > 23 || mm > 59 || ss > 59 {
        return None;
    }
    // Howard Hinnant's days_from_civil.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 86_400 + hh * 3600 + mm * 60 + ss) * 1_000_000) + frac)
}

/// One JSON object of a row, deserialized straight into the builders: each
/// value is appended to its column as its key comes, no map in between.
/// A problem with the row is left in `failed` (the serde error then only
/// stops the parse).
struct RowSeed<'a> {
    b: &'a mut Builders,
    failed: &'a mut Option<String>,
}

impl<'de> serde::de::DeserializeSeed<'de> for RowSeed<'_> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

/// A key of a row object: the column's index, or the unknown name.
struct KeySeed<'a>(&'a SchemaRef);

impl<'de> serde::de::DeserializeSeed<'de> for KeySeed<'_> {
    type Value = Result<usize, String>;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> serde::de::Visitor<'de> for KeySeed<'_> {
    type Value = Result<usize, String>;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a column name")
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(self
            .0
            .fields()
            .iter()
            .position(|f| f.name() == v)
            .ok_or_else(|| v.to_owned()))
    }
}

impl Builders {
    /// Appends a JSON value to column `i`: a string to a text, time or date
    /// column, an unsigned integer to an integer column, null anywhere.
    fn cell(&mut self, i: usize, v: Cell<'_>) -> Result<(), String> {
        let name = |b: &Builders| b.schema.field(i).name().clone();
        match v {
            Cell::Null => {
                if matches!(self.cols[i], B::Str(_)) && !self.schema.field(i).is_nullable() {
                    return Err(format!("{} must not be null", name(self)));
                }
                self.push(i, None)
            }
            Cell::Str(s) if matches!(self.cols[i], B::Str(_) | B::Ts(_) | B::Date(_)) => {
                self.push(i, Some(&s))
            }
            Cell::UInt(n) => match &mut self.cols[i] {
                B::U64(b) => {
                    b.append_value(n);
                    Ok(())
                }
                B::U16(b) if n <= u64::from(u16::MAX) => {
                    b.append_value(n as u16);
                    Ok(())
                }
                // Out of range: the text path words the error.
                B::U16(_) => self.push(i, Some(&n.to_string())),
                _ => Err(format!("{}: {n} has the wrong JSON type", name(self))),
            },
            Cell::Str(s) => Err(format!(
                "{}: {} has the wrong JSON type",
                name(self),
                Value::from(s.as_ref())
            )),
            Cell::Other(o) => Err(format!("{}: {o} has the wrong JSON type", name(self))),
        }
    }

    /// Appends a row read by [`json::plain_row`] from `text`.
    fn plain_row(&mut self, text: &str, cells: &[(usize, json::Val)]) -> Result<(), String> {
        let mut seen = 0u64;
        for &(i, v) in cells {
            seen |= 1 << i;
            self.cell(i, v.cell(text))?;
        }
        for i in (0..self.cols.len()).filter(|&i| seen & (1 << i) == 0) {
            self.cell(i, Cell::Null)?;
        }
        self.rows += 1;
        Ok(())
    }
}

impl<'de> serde::de::Visitor<'de> for RowSeed<'_> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let schema = self.b.schema.clone();
        let n = schema.fields().len();
        // Columns seen in this row (the schema has fewer than 64).
        let mut seen = 0u64;
        let stop = |failed: &mut Option<String>, m: String| -> A::Error {
            *failed = Some(m);
            serde::de::Error::custom("row refused")
        };
        while let Some(key) = map.next_key_seed(KeySeed(&schema))? {
            let i = match key {
                Ok(i) => i,
                Err(name) => return Err(stop(self.failed, format!("unknown column {name:?}"))),
            };
            let v = map.next_value_seed(CellVisitor)?;
            if seen & (1 << i) != 0 {
                let name = schema.field(i).name();
                return Err(stop(self.failed, format!("column {name:?} appears twice")));
            }
            seen |= 1 << i;
            if let Err(m) = self.b.cell(i, v) {
                return Err(stop(self.failed, m));
            }
        }
        for i in (0..n).filter(|&i| seen & (1 << i) == 0) {
            if let Err(m) = self.b.cell(i, Cell::Null) {
                return Err(stop(self.failed, m));
            }
        }
        self.b.rows += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_timestamps_agree_with_jiff() {
        for s in [
            "1970-01-01T00:00:00.000000Z",
            "2000-02-29T23:59:59.999999Z",
            "2026-11-28T08:30:00.123456Z",
            "1969-12-31T23:59:59.000001Z",
            "9998-12-31T23:59:59.999999Z",
        ] {
            let j = s.parse::<jiff::Timestamp>().unwrap().as_microsecond();
            assert_eq!(parse_ts_fast(s), Some(j), "{s}");
        }
        for s in [
            "2026-02-29T00:00:00.000000Z",
            "2026-13-01T00:00:00.000000Z",
            "2026-01-01T24:00:00.000000Z",
            "2026-01-01T00:00:00.000000+01:00",
            "2026-01-01T00:00:00Z",
            "2026-01-0aT00:00:00.000000Z",
        ] {
            assert_eq!(parse_ts_fast(s), None, "{s}");
        }
    }

    fn ndjson(line: &str) -> Result<RecordBatch, ImportError> {
        read_one(Table::Props, Format::Ndjson, &format!("{line}\n"))
    }

    fn read_one(table: Table, format: Format, text: &str) -> Result<RecordBatch, ImportError> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(format!("{}.{format}", table.name()));
        std::fs::write(&p, text).unwrap();
        let mut got = None;
        read_table(&p, format, table, &mut |b| {
            got = Some(b);
            Ok(())
        })?;
        Ok(got.expect("one batch"))
    }

    #[test]
    fn rows_longer_than_16_mib_are_refused_without_being_read_whole() {
        let row = |len: usize| format!(r#"{{"id":1,"key":"k","value":"{}"}}"#, "x".repeat(len));
        let fits = json::MAX_ROW_BYTES - 64;
        assert_eq!(ndjson(&row(fits)).unwrap().num_rows(), 1);
        let array = |r: String| read_one(Table::Props, Format::Json, &format!("[{r}]"));
        assert_eq!(array(row(fits)).unwrap().num_rows(), 1);
        let long = row(json::MAX_ROW_BYTES);
        let csv = |v: &str| {
            read_one(
                Table::Props,
                Format::Csv,
                &format!("id,key,value\r\n1,k,{v}\r\n"),
            )
        };
        assert_eq!(csv(&"x".repeat(fits)).unwrap().num_rows(), 1);
        let e = csv(&"x".repeat(json::MAX_ROW_BYTES + 1)).unwrap_err();
        assert!(e.reason.contains("a line longer than 16 MiB"), "{e}");
        for e in [ndjson(&long).unwrap_err(), array(long).unwrap_err()] {
            assert_eq!(e.row, Some(1), "{e}");
            assert!(e.reason.contains("longer than 16 MiB"), "{e}");
        }
    }

    #[test]
    fn json_rows_are_checked_as_they_are_parsed() {
        let b = ndjson(r#"{"value":"v\"1","id":7,"key":"k"}"#).unwrap();
        assert_eq!(
            b.column(0)
                .as_primitive::<arrow_array::types::UInt64Type>()
                .value(0),
            7
        );
        assert_eq!(b.column(2).as_string::<i32>().value(0), "v\"1");
        for (line, why) in [
            (
                r#"{"id":7,"key":"k","value":"v","x":1}"#,
                "unknown column \"x\"",
            ),
            (r#"{"id":7,"id":8,"key":"k","value":"v"}"#, "appears twice"),
            (r#"{"id":"7","key":"k","value":"v"}"#, "wrong JSON type"),
            (r#"{"id":-7,"key":"k","value":"v"}"#, "wrong JSON type"),
            (r#"{"id":7,"key":null,"value":"v"}"#, "key must not be null"),
            (r#"{"key":"k","value":"v"}"#, "id must not be empty"),
            (r#"[1]"#, "not a JSON object"),
        ] {
            let e = ndjson(line).unwrap_err();
            assert_eq!(e.row, Some(1), "{line}");
            assert!(e.reason.contains(why), "{line}: {}", e.reason);
        }
    }

    #[test]
    fn imported_days_are_dates_and_dimensions_are_the_stats_apis() {
        let head = "site,day,dim,value,visitors,count\r\n";
        let b = read_one(
            Table::ImportedValues,
            Format::Csv,
            &format!("{head}a.test,2024-03-01,page,,1,2\r\na.test,1969-12-31,event,Signup,3,4\r\n"),
        )
        .unwrap();
        let day = b.column(1).as_primitive::<arrow_array::types::Date32Type>();
        assert_eq!((day.value(0), day.value(1)), (19_783, -1));
        assert!(b.column(3).is_null(0) && b.column(3).is_valid(1));
        for (row, why) in [
            (
                "a.test,2024-02-30,page,,1,2",
                "day: \"2024-02-30\" is not a date",
            ),
            (
                "a.test,2024-03-01T00:00,page,,1,2",
                "is not a date (YYYY-MM-DD)",
            ),
            (
                "a.test,2024-03-01,pages,,1,2",
                "dim \"pages\" is not one of",
            ),
            ("a.test,,page,,1,2", "day must not be empty"),
        ] {
            let e = read_one(
                Table::ImportedValues,
                Format::Csv,
                &format!("{head}{row}\r\n"),
            )
            .unwrap_err();
            assert_eq!(e.row, Some(1), "{row}");
            assert!(e.reason.contains(why), "{row}: {}", e.reason);
        }
        let b = read_one(
            Table::ImportedDays,
            Format::Ndjson,
            "{\"site\":\"a.test\",\"day\":\"2024-03-01\",\"visitors\":1,\"pageviews\":2,\"events\":0,\"visits\":1,\"bounces\":0,\"visit_duration_s\":9}\n",
        )
        .unwrap();
        assert_eq!(b.num_rows(), 1);
        let e = read_one(
            Table::ImportedDays,
            Format::Ndjson,
            "{\"site\":\"a.test\",\"day\":19783,\"visitors\":1,\"pageviews\":2,\"events\":0,\"visits\":1,\"bounces\":0,\"visit_duration_s\":9}\n",
        )
        .unwrap_err();
        assert!(
            e.reason.contains("day: 19783 has the wrong JSON type"),
            "{}",
            e.reason
        );
    }

    #[test]
    fn engagements_are_held_to_a_day_and_a_hundred_percent() {
        let head = "id,hit_id,engaged_ms,scroll_depth\r\n";
        let b = read_one(
            Table::Engagements,
            Format::Csv,
            &format!("{head}9,7,86400000,100\r\n10,7,0,\r\n"),
        )
        .unwrap();
        assert_eq!(b.num_rows(), 2);
        assert!(b.column(3).is_valid(0) && b.column(3).is_null(1));
        for (row, why) in [
            ("9,7,86400001,50", "engaged_ms 86400001 is above 86400000"),
            ("9,7,1000,101", "scroll_depth 101 is above 100"),
            ("9,,1000,50", "hit_id must not be empty"),
        ] {
            let e =
                read_one(Table::Engagements, Format::Csv, &format!("{head}{row}\r\n")).unwrap_err();
            assert_eq!(e.row, Some(1), "{row}");
            assert!(e.reason.contains(why), "{row}: {}", e.reason);
        }
        let e = read_one(
            Table::Engagements,
            Format::Ndjson,
            "{\"id\":9,\"hit_id\":7,\"engaged_ms\":5,\"scroll_depth\":100}\n{\"id\":10,\"hit_id\":7,\"engaged_ms\":5,\"scroll_depth\":250}\n",
        )
        .unwrap_err();
        assert_eq!(e.row, Some(2), "{e}");
        assert!(e.reason.contains("scroll_depth 250"), "{e}");
    }

    #[test]
    fn plain_rows_give_what_serde_gives() {
        let hit = r#"{"id":1,"site":"a.test","ts":"2025-12-07T06:08:01.146000Z","kind":"pageview","name":"pageview","path":"/","referrer":null,"source":null,"utm_source":null,"utm_medium":null,"utm_campaign":null,"utm_term":null,"utm_content":null,"browser":"Chrome","browser_version":"126","os":"Windows","os_version":"10","device":"desktop","country":"DE","language":"en-US","screen_width":1280,"visitor":12650979969455661075}"#;
        for (table, lines) in [
            (
                Table::Props,
                &[
                    r#"{"id":1,"key":"k","value":"v"}"#,
                    r#"{"value":"é ✓ 😀","key":"","id":18446744073709551615}"#,
                    r#"{"id":0,"key":"k","value":""}"#,
                    " { \"id\" : 2 ,\t\"key\" : \"a b\", \"value\":\"\"}\r\n",
                ][..],
            ),
            (Table::Hits, &[hit][..]),
        ] {
            let schema = table.schema();
            let (mut plain, mut serde) = (Builders::new(table), Builders::new(table));
            let mut cells = Vec::new();
            for l in lines {
                let end = json::plain_row(l.as_bytes(), &schema, &mut cells).expect(l);
                assert_eq!(l[end..].trim(), "", "{l}");
                plain.plain_row(l, &cells).unwrap();
                json_row(&mut serde, l.as_bytes()).unwrap();
            }
            assert_eq!(plain.take(), serde.take());
        }
    }

    #[test]
    fn json_arrays_are_read_whatever_their_layout() {
        let text = "[\n  {\"id\": 1, \"key\": \"k\", \"value\": \"a\\\"b\"},\n  {\"id\":2,\"key\":\"k\",\"value\":\"\\u00e9\"},{\"id\":3,\"key\":\"k\",\"value\":\"\"}\n]\n";
        let b = read_one(Table::Props, Format::Json, text).unwrap();
        let values: Vec<Option<&str>> = b.column(2).as_string::<i32>().iter().collect();
        assert_eq!(values, [Some("a\"b"), Some("é"), Some("")]);
        for (text, row, why) in [
            (
                r#"[{"id":1,"key":"k","value":""},{"id":"2","key":"k"}]"#,
                Some(2),
                "wrong JSON type",
            ),
            (
                r#"[{"id":1,"key":"k","value":""},{"id":2,"key":"k\u0000","x":1}]"#,
                Some(2),
                "unknown column \"x\"",
            ),
            (
                r#"[{"id":1,"key":"k","value":""},{"id":2,"key":"k"]"#,
                Some(2),
                "not a JSON object",
            ),
            (r#"[{"id":1,"key":"k","value":""}"#, Some(1), "cut short"),
            (r#"{"id":1,"key":"k"}"#, None, "not a JSON array"),
        ] {
            let e = read_one(Table::Props, Format::Json, text).unwrap_err();
            assert_eq!(e.row, row, "{text}: {e}");
            assert!(e.reason.contains(why), "{text}: {e}");
        }
    }
}
