//! Hits handed to DuckDB as ready data chunks, converted on a thread of
//! their own.
//!
//! The Appender converts each Arrow batch to DuckDB vectors on the calling
//! thread (a copy and a UTF-8 check of every string), then copies the rows
//! once more into its own buffer before they reach the table. On an import
//! that thread is the one that also compresses the table's row groups, and
//! it was the slowest stage of the pipeline. Here a [`Converter`] thread
//! turns Arrow batches into DuckDB data chunks, and a table function
//! ([`FEED`]) lends those chunks' vectors to
//! `INSERT INTO hits SELECT * FROM hv_feed()`, in the importing
//! connection's transaction, without copying them (DuckDB may call the
//! function on one of its worker threads: the queue is behind a lock).
//! The function is in the database's catalog, so every connection sees
//! it; its queue holds chunks only while the importer's statement runs,
//! and no connection runs SQL from outside.

use std::collections::VecDeque;
use std::error::Error;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};

use duckdb::Connection;
use duckdb::arrow::datatypes::SchemaRef;
use duckdb::arrow::record_batch::RecordBatch;
use duckdb::core::{DataChunkHandle, LogicalTypeHandle};
use duckdb::ffi;
use duckdb::vtab::{
    BindInfo, InitInfo, TableFunctionInfo, VTab, record_batch_to_duckdb_data_chunk,
    to_duckdb_logical_type_for_field,
};

/// The table function's name.
pub(crate) const FEED: &str = "hv_feed";

/// Rows per DuckDB data chunk: DuckDB's vector size.
fn chunk_rows() -> usize {
    // SAFETY: no preconditions; a constant of the library.
    unsafe { ffi::duckdb_vector_size() as usize }
}

/// Batches converted ahead of the connection.
const AHEAD: usize = 2;

/// A filled DuckDB data chunk.
pub(crate) struct Chunk(DataChunkHandle);

// SAFETY: a data chunk is plain memory owned by this handle; it is used by
// one thread at a time (the converter fills it, then hands it over).
unsafe impl Send for Chunk {}

/// The chunks of one Arrow batch, in order.
type Chunks = Vec<Chunk>;

/// What the table function reads: the columns it returns and the chunks
/// queued for the next statement.
#[derive(Clone)]
pub(crate) struct Feed {
    schema: SchemaRef,
    queue: Arc<Mutex<VecDeque<Chunk>>>,
}

impl Feed {
    /// A feed of batches in `schema`, registered on `conn` as [`FEED`].
    pub(crate) fn register(conn: &Connection, schema: SchemaRef) -> duckdb::Result<Feed> {
        let feed = Feed {
            schema,
            queue: Arc::default(),
        };
        conn.register_table_function_with_extra_info::<FeedScan, Feed>(FEED, &feed)?;
        Ok(feed)
    }

    /// Inserts `chunks` into `table` (same columns as the feed, in order).
    /// Fails unless every row of the chunks was inserted.
    pub(crate) fn insert(
        &self,
        conn: &Connection,
        table: &str,
        chunks: Chunks,
    ) -> Result<(), String> {
        let rows: usize = chunks.iter().map(|c| c.0.len()).sum();
        {
            let mut q = self
                .queue
                .lock()
                .expect("the feed's lock is never poisoned");
            q.clear();
            q.extend(chunks);
        }
        let n = conn
            .prepare_cached(&format!("INSERT INTO {table} SELECT * FROM {FEED}()"))
            .and_then(|mut s| s.execute([]));
        // A failed statement may have left chunks behind.
        self.queue
            .lock()
            .expect("the feed's lock is never poisoned")
            .clear();
        match n {
            Ok(n) if n == rows => Ok(()),
            Ok(n) => Err(format!("{n} of {rows} rows reached {table}")),
            Err(e) => Err(format!("DuckDB: {e}")),
        }
    }
}

struct FeedScan;

impl VTab for FeedScan {
    type InitData = ();
    type BindData = ();

    fn bind(bind: &BindInfo) -> Result<(), Box<dyn Error>> {
        // SAFETY: registered with a `Feed` as extra info, which DuckDB keeps
        // for the function's lifetime.
        let feed = unsafe { &*bind.get_extra_info::<Feed>() };
        for f in feed.schema.fields() {
            bind.add_result_column(f.name(), to_duckdb_logical_type_for_field(f)?);
        }
        Ok(())
    }

    fn init(init: &InitInfo) -> Result<(), Box<dyn Error>> {
        // One scan thread: the chunks are taken in order.
        init.set_max_threads(1);
        Ok(())
    }

    fn func(
        func: &TableFunctionInfo<Self>,
        output: &mut DataChunkHandle,
    ) -> Result<(), Box<dyn Error>> {
        // SAFETY: as in `bind`.
        let feed = unsafe { &*func.get_extra_info::<Feed>() };
        let next = feed
            .queue
            .lock()
            .expect("the feed's lock is never poisoned")
            .pop_front();
        let Some(Chunk(chunk)) = next else {
            output.set_len(0);
            return Ok(());
        };
        if chunk.num_columns() != output.num_columns() {
            return Err("a chunk does not have the feed's columns".into());
        }
        for i in 0..output.num_columns() {
            // SAFETY: both chunks are valid and have the same column types
            // (the feed's schema); referencing shares the vectors' buffers,
            // which stay alive after `chunk` is destroyed.
            unsafe {
                ffi::duckdb_vector_reference_vector(
                    ffi::duckdb_data_chunk_get_vector(output.get_ptr(), i as u64),
                    ffi::duckdb_data_chunk_get_vector(chunk.get_ptr(), i as u64),
                );
            }
        }
        output.set_len(chunk.len());
        Ok(())
    }
}

/// A thread that converts Arrow batches into DuckDB data chunks, up to
/// [`AHEAD`] batches ahead of the one taking them.
pub(crate) struct Converter {
    schema: SchemaRef,
    to: Option<SyncSender<RecordBatch>>,
    from: Option<Receiver<Result<Chunks, String>>>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// Batches sent and not taken yet.
    pending: usize,
}

impl Converter {
    /// Starts the thread for batches of `feed`'s columns.
    pub(crate) fn start(feed: &Feed) -> std::io::Result<Converter> {
        let schema = feed.schema.clone();
        let (to, batches) = sync_channel::<RecordBatch>(AHEAD);
        let (done, from) = sync_channel(AHEAD);
        let fields = schema.clone();
        let thread = std::thread::Builder::new()
            .name("hv-convert".into())
            .spawn(move || {
                let types: Result<Vec<LogicalTypeHandle>, String> = fields
                    .fields()
                    .iter()
                    .map(|f| to_duckdb_logical_type_for_field(f).map_err(|e| e.to_string()))
                    .collect();
                for batch in batches {
                    let chunks = match &types {
                        Ok(types) => to_chunks(&batch, types),
                        Err(e) => Err(e.clone()),
                    };
                    if done.send(chunks).is_err() {
                        return;
                    }
                }
            })?;
        Ok(Converter {
            schema,
            to: Some(to),
            from: Some(from),
            thread: Some(thread),
            pending: 0,
        })
    }

    /// Queues `batch` for conversion. Its columns must be the feed's: the
    /// table function lends the chunks' vectors as they are.
    pub(crate) fn send(&mut self, batch: RecordBatch) -> Result<(), String> {
        let types = |s: &SchemaRef| -> Vec<_> {
            s.fields().iter().map(|f| f.data_type().clone()).collect()
        };
        if types(&batch.schema()) != types(&self.schema) {
            return Err(format!(
                "a batch's columns are {:?}, not the feed's {:?}",
                batch.schema().fields(),
                self.schema.fields()
            ));
        }
        self.to
            .as_ref()
            .expect("open until dropped")
            .send(batch)
            .map_err(|_| "the chunk converter stopped".to_owned())?;
        self.pending += 1;
        Ok(())
    }

    /// Batches sent and not yet taken.
    pub(crate) fn pending(&self) -> usize {
        self.pending
    }

    /// The chunks of the oldest batch not taken yet (waits for them).
    pub(crate) fn take(&mut self) -> Result<Chunks, String> {
        assert!(self.pending > 0, "take without a batch sent");
        self.pending -= 1;
        self.from
            .as_ref()
            .expect("open until dropped")
            .recv()
            .map_err(|_| "the chunk converter stopped".to_owned())?
    }
}

impl Drop for Converter {
    fn drop(&mut self) {
        // Closing both channels ends the thread: it finds no more batches,
        // or nobody to hand its chunks to.
        self.to = None;
        self.from = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Converts `batch` into chunks of at most [`chunk_rows`] rows.
fn to_chunks(batch: &RecordBatch, types: &[LogicalTypeHandle]) -> Result<Chunks, String> {
    let size = chunk_rows();
    let mut out = Vec::with_capacity(batch.num_rows().div_ceil(size));
    let mut at = 0;
    while at < batch.num_rows() {
        let len = size.min(batch.num_rows() - at);
        let mut chunk = DataChunkHandle::new(types);
        record_batch_to_duckdb_data_chunk(&batch.slice(at, len), &mut chunk)
            .map_err(|e| format!("cannot convert a batch for DuckDB: {e}"))?;
        out.push(Chunk(chunk));
        at += len;
    }
    Ok(out)
}
