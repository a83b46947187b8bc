//! Encoding an export on several threads, so that the encoding keeps pace
//! with DuckDB's scan on a small machine.
//!
//! [`ParallelWriter`] writes Parquet: the file is the one [`ArrowWriter`]
//! writes (same schema, Arrow schema metadata, properties and row groups);
//! only the encoding of the columns (dictionaries, pages, zstd) is spread
//! over worker threads, each owning a fixed set of columns, while the
//! calling thread hands them each batch's columns and assembles the row
//! groups in column order.
//!
//! [`TextEncoder`] encodes whole batches as CSV or JSON text on worker
//! threads, in turn, and writes the results in the order of the batches.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use arrow_array::RecordBatch;
use arrow_schema::{DataType, SchemaRef};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_writer::{
    ArrowColumnChunk, ArrowColumnWriter, ArrowLeafColumn, ArrowRowGroupWriterFactory,
    compute_leaves,
};
use parquet::errors::{ParquetError, Result};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;

use crate::text::{self, Text};

/// Batches queued to each worker (each holds one batch's share of columns).
const QUEUED: usize = 4;

/// Encoding threads per file. Two keep both cores of a small appliance busy
/// beside DuckDB's scan; more would only add threads on such a machine.
pub const ENCODERS: usize = 2;

type Chunks = Result<Vec<ArrowColumnChunk>>;

/// The workers of the row group being written.
struct Group {
    senders: Vec<SyncSender<Vec<ArrowLeafColumn>>>,
    workers: Vec<JoinHandle<Chunks>>,
    rows: usize,
}

/// Writes record batches of one schema as a Parquet file, encoding columns
/// on [`ENCODERS`] threads.
pub struct ParallelWriter<W: Write + Send> {
    file: SerializedFileWriter<W>,
    factory: ArrowRowGroupWriterFactory,
    schema: SchemaRef,
    /// Column indices of each worker.
    assign: Vec<Vec<usize>>,
    max_rows: usize,
    group: Option<Group>,
}

/// A rough cost of encoding a column: wide columns without a dictionary
/// (ids, timestamps) and strings cost more than small integers.
fn weight(t: &DataType) -> u32 {
    match t {
        DataType::UInt64 | DataType::Int64 | DataType::Timestamp(..) => 3,
        DataType::Utf8 | DataType::LargeUtf8 => 2,
        _ => 1,
    }
}

/// Splits the columns over `n` workers, heaviest first, each to the least
/// loaded worker.
fn assign(schema: &SchemaRef, n: usize) -> Vec<Vec<usize>> {
    let mut cols: Vec<(usize, u32)> = schema
        .fields()
        .iter()
        .enumerate()
        .map(|(i, f)| (i, weight(f.data_type())))
        .collect();
    cols.sort_by_key(|&(i, w)| (std::cmp::Reverse(w), i));
    let n = n.clamp(1, cols.len().max(1));
    let mut out = vec![(0u32, Vec::new()); n];
    for (i, w) in cols {
        let least = out
            .iter_mut()
            .min_by_key(|(load, _)| *load)
            .expect("at least one worker");
        least.0 += w;
        least.1.push(i);
    }
    out.into_iter()
        .map(|(_, mut c)| {
            c.sort_unstable();
            c
        })
        .filter(|c| !c.is_empty())
        .collect()
}

fn encode(mut writers: Vec<ArrowColumnWriter>, rx: Receiver<Vec<ArrowLeafColumn>>) -> Chunks {
    for leaves in rx {
        for (w, leaf) in writers.iter_mut().zip(&leaves) {
            w.write(leaf)?;
        }
    }
    writers.into_iter().map(ArrowColumnWriter::close).collect()
}

impl<W: Write + Send> ParallelWriter<W> {
    pub fn try_new(out: W, schema: SchemaRef, props: WriterProperties) -> Result<Self> {
        let max_rows = props.max_row_group_row_count().unwrap_or(usize::MAX).max(1);
        // ArrowWriter sets up the file: the Parquet schema from the Arrow
        // one, and the Arrow schema in the footer's metadata.
        let (file, factory) =
            ArrowWriter::try_new(out, schema.clone(), Some(props))?.into_serialized_writer()?;
        for f in schema.fields() {
            if f.data_type().is_nested() {
                return Err(ParquetError::NYI(format!(
                    "column {}: nested columns are not written in parallel",
                    f.name()
                )));
            }
        }
        Ok(ParallelWriter {
            assign: assign(&schema, ENCODERS),
            file,
            factory,
            schema,
            max_rows,
            group: None,
        })
    }

    fn start_group(&mut self) -> Result<Group> {
        let index = self.file.flushed_row_groups().len();
        let mut writers: Vec<Option<ArrowColumnWriter>> = self
            .factory
            .create_column_writers(index)?
            .into_iter()
            .map(Some)
            .collect();
        let mut senders = Vec::with_capacity(self.assign.len());
        let mut workers = Vec::with_capacity(self.assign.len());
        for cols in &self.assign {
            let mine: Vec<ArrowColumnWriter> = cols
                .iter()
                .map(|&i| writers[i].take().expect("each column has one worker"))
                .collect();
            let (tx, rx) = sync_channel(QUEUED);
            let worker = std::thread::Builder::new()
                .name("parquet-encode".into())
                .spawn(move || encode(mine, rx))
                .map_err(|e| ParquetError::External(Box::new(e)))?;
            senders.push(tx);
            workers.push(worker);
        }
        Ok(Group {
            senders,
            workers,
            rows: 0,
        })
    }

    /// Ends the row group: waits for its workers and writes their column
    /// chunks in column order.
    fn end_group(&mut self) -> Result<()> {
        let Some(mut group) = self.group.take() else {
            return Ok(());
        };
        group.senders.clear();
        let mut chunks: Vec<Option<ArrowColumnChunk>> =
            (0..self.schema.fields().len()).map(|_| None).collect();
        let mut failed = None;
        for (cols, worker) in self.assign.iter().zip(group.workers.drain(..)) {
            match worker.join().expect("a Parquet encoder panicked") {
                Ok(done) => {
                    for (&i, c) in cols.iter().zip(done) {
                        chunks[i] = Some(c);
                    }
                }
                Err(e) => failed = failed.or(Some(e)),
            }
        }
        if let Some(e) = failed {
            return Err(e);
        }
        let mut rg = self.file.next_row_group()?;
        for c in chunks {
            c.expect("every column encoded")
                .append_to_row_group(&mut rg)?;
        }
        rg.close()?;
        Ok(())
    }

    /// Hands `leaves` (one per column) to the workers; a worker's own error
    /// if it stopped.
    fn send(&mut self, mut leaves: Vec<Option<ArrowLeafColumn>>) -> Result<()> {
        let group = self.group.as_ref().expect("a group is open");
        let mut stopped = false;
        for (cols, tx) in self.assign.iter().zip(&group.senders) {
            let share = cols
                .iter()
                .map(|&i| leaves[i].take().expect("one leaf per column"))
                .collect();
            if tx.send(share).is_err() {
                stopped = true;
                break;
            }
        }
        if stopped {
            // The worker's error says why; end_group returns it.
            self.end_group()?;
            return Err(ParquetError::General("a Parquet encoder stopped".into()));
        }
        Ok(())
    }

    /// Appends a batch (of the writer's schema), starting a new row group
    /// whenever one is full.
    pub fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        let mut rest = batch.clone();
        while rest.num_rows() > 0 {
            if self.group.is_none() {
                self.group = Some(self.start_group()?);
            }
            let room = self.max_rows - self.group.as_ref().map_or(0, |g| g.rows);
            let now = rest.slice(0, room.min(rest.num_rows()));
            rest = rest.slice(now.num_rows(), rest.num_rows() - now.num_rows());
            let mut leaves = Vec::with_capacity(now.num_columns());
            for (field, col) in self.schema.fields().iter().zip(now.columns()) {
                let mut l = compute_leaves(field, col)?;
                if l.len() != 1 {
                    return Err(ParquetError::General(format!(
                        "column {}: {} leaves, expected 1",
                        field.name(),
                        l.len()
                    )));
                }
                leaves.push(l.pop());
            }
            self.send(leaves)?;
            let group = self.group.as_mut().expect("a group is open");
            group.rows += now.num_rows();
            if group.rows >= self.max_rows {
                self.end_group()?;
            }
        }
        Ok(())
    }

    /// Writes the last row group and the footer; returns the writer.
    pub fn into_inner(mut self) -> Result<W> {
        self.end_group()?;
        self.file.into_inner()
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        // A row group abandoned with its file: stop the workers.
        self.senders.clear();
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

type Job = (RecordBatch, bool, Vec<u8>);

struct TextWorker {
    jobs: SyncSender<Job>,
    done: Receiver<io::Result<Vec<u8>>>,
    thread: JoinHandle<()>,
}

/// Encodes batches as text on [`ENCODERS`] threads (started with the first
/// batch) and writes them in order. At most two batches per thread are in
/// flight.
pub(crate) struct TextEncoder {
    kind: Text,
    workers: Vec<TextWorker>,
    /// The worker of each batch not written yet, oldest first.
    pending: VecDeque<usize>,
    next: usize,
    spare: Vec<Vec<u8>>,
}

impl TextEncoder {
    pub(crate) fn new(kind: Text) -> Self {
        TextEncoder {
            kind,
            workers: Vec::new(),
            pending: VecDeque::new(),
            next: 0,
            spare: Vec::new(),
        }
    }

    fn start(&mut self) -> io::Result<()> {
        for _ in 0..ENCODERS {
            let (jobs, rx) = sync_channel::<Job>(1);
            let (tx, done) = std::sync::mpsc::channel();
            let kind = self.kind;
            let thread = std::thread::Builder::new()
                .name("text-encode".into())
                .spawn(move || {
                    for (batch, first, mut buf) in rx {
                        buf.clear();
                        let r = text::encode(kind, &batch, first, &mut buf).map(|()| buf);
                        if tx.send(r).is_err() {
                            break;
                        }
                    }
                })?;
            self.workers.push(TextWorker { jobs, done, thread });
        }
        Ok(())
    }

    /// Writes the oldest encoded batch to `out`.
    fn write_oldest(&mut self, out: &mut impl Write) -> io::Result<()> {
        let Some(w) = self.pending.pop_front() else {
            return Ok(());
        };
        let buf = self.workers[w]
            .done
            .recv()
            .map_err(|_| io::Error::other("a text encoder stopped"))??;
        out.write_all(&buf)?;
        self.spare.push(buf);
        Ok(())
    }

    /// Queues `batch` (`first`: it starts the file) and writes to `out`
    /// whatever is due.
    pub(crate) fn write(
        &mut self,
        batch: RecordBatch,
        first: bool,
        out: &mut impl Write,
    ) -> io::Result<()> {
        if self.workers.is_empty() {
            self.start()?;
        }
        let w = self.next;
        self.next = (w + 1) % self.workers.len();
        let buf = self.spare.pop().unwrap_or_default();
        self.workers[w]
            .jobs
            .send((batch, first, buf))
            .map_err(|_| io::Error::other("a text encoder stopped"))?;
        self.pending.push_back(w);
        while self.pending.len() > 2 * self.workers.len() {
            self.write_oldest(out)?;
        }
        Ok(())
    }

    /// Writes every batch still in flight.
    pub(crate) fn flush(&mut self, out: &mut impl Write) -> io::Result<()> {
        while !self.pending.is_empty() {
            self.write_oldest(out)?;
        }
        Ok(())
    }
}

impl Drop for TextEncoder {
    fn drop(&mut self) {
        for w in self.workers.drain(..) {
            drop(w.jobs);
            drop(w.done);
            let _ = w.thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::Table;
    use crate::write::parquet_properties;
    use arrow_array::{ArrayRef, StringArray, TimestampMicrosecondArray, UInt16Array};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use std::sync::Arc;

    fn batch(from: u64, n: usize) -> RecordBatch {
        let schema = Table::Funnels.schema();
        let text = |p: &str| -> ArrayRef {
            Arc::new(StringArray::from_iter_values(
                (0..n).map(|i| format!("{p}{}", (from as usize + i) % 7)),
            ))
        };
        let cols: Vec<ArrayRef> = vec![
            text("site"),
            text("name"),
            Arc::new(UInt16Array::from_iter_values(
                (0..n).map(|i| (from as usize + i) as u16),
            )),
            text("kind"),
            text("value"),
            Arc::new(
                TimestampMicrosecondArray::from_iter_values(
                    (0..n).map(|i| (from as i64 + i as i64) * 1_000_000),
                )
                .with_timezone("UTC"),
            ),
        ];
        RecordBatch::try_new(schema, cols).unwrap()
    }

    #[test]
    fn splits_columns_by_weight_over_the_workers() {
        let a = assign(&Table::Hits.schema(), 2);
        assert_eq!(a.len(), 2);
        let mut all: Vec<usize> = a.concat();
        all.sort_unstable();
        assert_eq!(all, (0..22).collect::<Vec<_>>());
        let load = |c: &Vec<usize>| -> u32 {
            c.iter()
                .map(|&i| weight(Table::Hits.schema().field(i).data_type()))
                .sum()
        };
        assert!(load(&a[0]).abs_diff(load(&a[1])) <= 1, "{a:?}");
        // One column, one worker.
        let one = Arc::new(arrow_schema::Schema::new(vec![arrow_schema::Field::new(
            "x",
            DataType::UInt64,
            false,
        )]));
        assert_eq!(assign(&one, 2), vec![vec![0]]);
    }

    #[test]
    fn reads_back_the_rows_in_order_across_row_groups() {
        let props = WriterProperties::builder()
            .set_max_row_group_row_count(Some(1000))
            .build();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.parquet");
        let file = std::fs::File::create(&path).unwrap();
        let mut w = ParallelWriter::try_new(file, Table::Funnels.schema(), props).unwrap();
        let mut from = 0;
        for n in [700, 700, 1, 1599, 3] {
            w.write(&batch(from, n)).unwrap();
            from += n as u64;
        }
        w.into_inner().unwrap().sync_all().unwrap();
        let r = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(&path).unwrap())
            .unwrap()
            .with_batch_size(10_000);
        let groups: Vec<i64> = r
            .metadata()
            .row_groups()
            .iter()
            .map(|g| g.num_rows())
            .collect();
        assert_eq!(groups, vec![1000, 1000, 1000, 3]);
        assert_eq!(r.schema().as_ref(), Table::Funnels.schema().as_ref());
        let got: Vec<RecordBatch> = r.build().unwrap().map(|b| b.unwrap()).collect();
        assert_eq!(got, vec![batch(0, from as usize)]);
    }

    #[test]
    fn an_empty_file_has_the_schema_and_no_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("e.parquet");
        let file = std::fs::File::create(&path).unwrap();
        let w = ParallelWriter::try_new(file, Table::Hits.schema(), parquet_properties()).unwrap();
        w.into_inner().unwrap().sync_all().unwrap();
        let r =
            ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(&path).unwrap()).unwrap();
        assert_eq!(r.metadata().file_metadata().num_rows(), 0);
        assert_eq!(r.schema().as_ref(), Table::Hits.schema().as_ref());
    }

    #[test]
    fn text_batches_come_out_in_order() {
        let mut enc = TextEncoder::new(Text::Ndjson);
        let mut out = Vec::new();
        let mut from = 0;
        for n in [5, 300, 1, 77, 2, 2, 900, 13] {
            enc.write(batch(from, n), from == 0, &mut out).unwrap();
            from += n as u64;
        }
        enc.flush(&mut out).unwrap();
        let mut want = Vec::new();
        text::encode(Text::Ndjson, &batch(0, from as usize), true, &mut want).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            String::from_utf8(want).unwrap()
        );
    }
}
