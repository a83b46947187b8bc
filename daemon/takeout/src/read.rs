//! Reading a Takeout's data files back into record batches of the Takeout
//! schema, checking every row. Errors name the file, the row (1-based, data
//! rows only) and the reason.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::builder::{
    StringBuilder, TimestampMicrosecondBuilder, UInt16Builder, UInt64Builder,
};
use arrow_array::cast::AsArray;
use arrow_array::{Array, ArrayRef, RecordBatch, RecordBatchReader};
use arrow_schema::{DataType, SchemaRef};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::Value;

use crate::Format;
use crate::schema::{DEVICES, GOAL_KINDS, KINDS, Table};
use crate::write::conform;

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
            (B::U64(b), Some(s)) => b.append_value(
                s.parse()
                    .map_err(|_| format!("{name}: {s:?} is not an unsigned 64-bit integer"))?,
            ),
            (B::U16(b), Some(s)) => b.append_value(
                s.parse()
                    .map_err(|_| format!("{name}: {s:?} is not an integer 0..65535"))?,
            ),
            (B::Str(b), Some(s)) => b.append_value(s),
            (B::Ts(b), Some(s)) => b.append_value(
                s.parse::<jiff::Timestamp>()
                    .map_err(|e| format!("{name}: {s:?} is not an RFC 3339 time: {e}"))?
                    .as_microsecond(),
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
                }
            })
            .collect();
        self.rows = 0;
        RecordBatch::try_new(self.schema.clone(), cols).expect("builders follow the schema")
    }
}

/// Checks the values the schema's types cannot: `kind`, `device`, a funnel's
/// `step`, non-NULL columns (the rules of a goal's or funnel's values, and
/// how a funnel's rows fit together, are checked by the store's import). `first_row` is the 1-based number of the batch's first row.
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
    if table == Table::Hits {
        let kind = batch.column(3).as_string::<i32>();
        for (r, k) in kind.iter().enumerate() {
            if let Some(k) = k
                && !KINDS.contains(&k)
            {
                return Err((
                    first_row + r as u64,
                    format!("kind {k:?} is not one of {KINDS:?}"),
                ));
            }
        }
        let device = batch.column(17).as_string::<i32>();
        for (r, d) in device.iter().enumerate() {
            if let Some(d) = d
                && !DEVICES.contains(&d)
            {
                return Err((
                    first_row + r as u64,
                    format!("device {d:?} is not one of {DEVICES:?} or null"),
                ));
            }
        }
    }
    if matches!(table, Table::Goals | Table::Funnels) {
        let kind = batch
            .column_by_name("kind")
            .expect("in the schema")
            .as_string::<i32>();
        for (r, k) in kind.iter().enumerate() {
            if let Some(k) = k
                && !GOAL_KINDS.contains(&k)
            {
                return Err((
                    first_row + r as u64,
                    format!("kind {k:?} is not one of {GOAL_KINDS:?}"),
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
    Ok(())
}

/// The largest `id` in a batch of the hits table (0 when empty), as checked
/// by [`read_table`].
pub fn max_hit_id(batch: &RecordBatch) -> u64 {
    batch
        .column_by_name("id")
        .and_then(|c| c.as_primitive_opt::<arrow_array::types::UInt64Type>())
        .and_then(|a| a.iter().flatten().max())
        .unwrap_or(0)
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
                .from_reader(BufReader::with_capacity(1 << 20, file));
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
            let mut line = String::new();
            let mut rd = BufReader::with_capacity(1 << 20, file);
            loop {
                line.clear();
                let n = rows + b.rows as u64 + 1;
                let got = rd
                    .read_line(&mut line)
                    .map_err(|e| err(path, Some(n), e.to_string()))?;
                if got == 0 {
                    break;
                }
                if !line.ends_with('\n') {
                    return Err(err(
                        path,
                        Some(n),
                        "the last line is cut short (no newline)",
                    ));
                }
                let obj: serde_json::Map<String, Value> = serde_json::from_str(&line)
                    .map_err(|e| err(path, Some(n), format!("not a JSON object: {e}")))?;
                push_object(&mut b, &obj).map_err(|m| err(path, Some(n), m))?;
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
            let mut failure: Option<ImportError> = None;
            {
                let mut on_row = |obj: serde_json::Map<String, Value>| -> Result<(), ()> {
                    let n = rows + b.rows as u64 + 1;
                    let r = push_object(&mut b, &obj)
                        .map_err(|m| err(path, Some(n), m))
                        .and_then(|()| {
                            if b.rows == BATCH_ROWS {
                                emit(b.take(), &mut rows)
                            } else {
                                Ok(())
                            }
                        });
                    r.map_err(|e| failure = Some(e))
                };
                let mut de =
                    serde_json::Deserializer::from_reader(BufReader::with_capacity(1 << 20, file));
                let parsed = serde::Deserializer::deserialize_seq(
                    &mut de,
                    ArrayVisitor {
                        on_row: &mut on_row,
                    },
                )
                .and_then(|()| de.end());
                if let Err(e) = parsed {
                    return Err(failure.take().unwrap_or_else(|| {
                        err(path, None, format!("not a JSON array of objects: {e}"))
                    }));
                }
            }
            if let Some(e) = failure {
                return Err(e);
            }
            if b.rows > 0 {
                emit(b.take(), &mut rows)?;
            }
        }
    }
    Ok(rows)
}

fn push_object(b: &mut Builders, obj: &serde_json::Map<String, Value>) -> Result<(), String> {
    let schema = b.schema.clone();
    if let Some(k) = obj.keys().find(|k| schema.index_of(k).is_err()) {
        return Err(format!("unknown column {k:?}"));
    }
    for (i, f) in schema.fields().iter().enumerate() {
        let num;
        let v = match obj.get(f.name()) {
            None | Some(Value::Null) => None,
            Some(Value::String(s))
                if matches!(f.data_type(), DataType::Utf8 | DataType::Timestamp(..)) =>
            {
                Some(s.as_str())
            }
            Some(Value::Number(n))
                if matches!(f.data_type(), DataType::UInt64 | DataType::UInt16) =>
            {
                num = n.to_string();
                Some(num.as_str())
            }
            Some(other) => return Err(format!("{}: {other} has the wrong JSON type", f.name())),
        };
        if v.is_none() && matches!(f.data_type(), DataType::Utf8) && !f.is_nullable() {
            return Err(format!("{} must not be null", f.name()));
        }
        b.push(i, v)?;
    }
    b.rows += 1;
    Ok(())
}

struct ArrayVisitor<'a> {
    on_row: &'a mut dyn FnMut(serde_json::Map<String, Value>) -> Result<(), ()>,
}

impl<'de> serde::de::Visitor<'de> for ArrayVisitor<'_> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON array of objects")
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(obj) = seq.next_element::<serde_json::Map<String, Value>>()? {
            (self.on_row)(obj).map_err(|()| serde::de::Error::custom("row refused"))?;
        }
        Ok(())
    }
}
