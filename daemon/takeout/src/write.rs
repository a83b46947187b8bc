//! Writing a Takeout: one [`TableWriter`] per data file, and [`ExportWriter`]
//! for the directory with its `MANIFEST`.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use arrow_array::RecordBatch;
use arrow_array::cast::AsArray;
use arrow_array::types::TimestampMicrosecondType;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use parquet::schema::types::ColumnPath;
use sha2::{Digest, Sha256};

use crate::Format;
use crate::manifest::{FileEntry, Filter, IdRange, MANIFEST, Manifest, TimeRange};
use crate::parallel::{ParallelWriter, TextEncoder};
use crate::schema::{SchemaMismatch, TAKEOUT_VERSION, Table, conform};
use crate::text::{self, Text};

/// Where they were first defined; the names are [`crate::schema`]'s.
pub use crate::schema::{file_name, hex};

/// Writing an export failed.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{0}")]
    Io2(#[from] io::Error),
    #[error("Parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    #[error(transparent)]
    Schema(#[from] SchemaMismatch),
    #[error("{0} is not empty: a Takeout is written into a new or empty directory")]
    NotEmpty(PathBuf),
}

/// Rows per Parquet row group: large enough for column statistics and scans
/// to pay off, small enough that a writer holds one comfortably in memory.
pub const ROW_GROUP_ROWS: usize = 512 * 1024;

/// Parquet settings of a Takeout: zstd, dictionary encoding for every column
/// but the nearly unique ones (`id`, `ts`, `visitor`), where building a
/// dictionary costs the most time and then falls back to plain anyway.
pub fn parquet_properties() -> WriterProperties {
    let mut b = WriterProperties::builder()
        .set_compression(Compression::ZSTD(
            ZstdLevel::try_new(ZSTD_LEVEL).expect("valid level"),
        ))
        .set_dictionary_enabled(true)
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_created_by(format!("hitvault {}", env!("CARGO_PKG_VERSION")));
    for unique in ["id", "ts", "visitor"] {
        b = b.set_column_dictionary_enabled(ColumnPath::from(unique), false);
    }
    b.build()
}

/// zstd level of Parquet pages.
pub const ZSTD_LEVEL: i32 = 1;

enum Inner<W: Write + Send> {
    Parquet(Box<ArrowWriter<W>>),
    ParallelParquet(Box<ParallelWriter<W>>),
    Text {
        kind: Text,
        out: W,
        buf: Vec<u8>,
        /// Encoder threads, if any (else batches are encoded in `buf`).
        enc: Option<TextEncoder>,
    },
}

/// Writes one table in one format into any writer (a file, an HTTP body).
pub struct TableWriter<W: Write + Send> {
    table: Table,
    inner: Inner<W>,
    rows: u64,
    /// Smallest and largest `ts` seen (hits only).
    range: Option<(i64, i64)>,
    /// Smallest and largest `id` seen (hits only).
    ids: crate::manifest::HitIds,
}

impl<W: Write + Send> TableWriter<W> {
    /// A writer that encodes on the calling thread: the daemon's HTTP
    /// streams, whose memory must stay flat.
    pub fn new(format: Format, table: Table, out: W) -> Result<Self, ExportError> {
        Self::with_threads(format, table, out, false)
    }

    /// A writer that encodes on [`crate::parallel::ENCODERS`] threads of its
    /// own when `parallel` (Takeout directories written by the CLI).
    pub fn with_threads(
        format: Format,
        table: Table,
        mut out: W,
        parallel: bool,
    ) -> Result<Self, ExportError> {
        let text = |kind: Text, out: W| Inner::Text {
            kind,
            out,
            buf: Vec::new(),
            enc: parallel.then(|| TextEncoder::new(kind)),
        };
        let inner = match format {
            Format::Parquet if parallel => Inner::ParallelParquet(Box::new(
                ParallelWriter::try_new(out, table.schema(), parquet_properties())?,
            )),
            Format::Parquet => Inner::Parquet(Box::new(ArrowWriter::try_new(
                out,
                table.schema(),
                Some(parquet_properties()),
            )?)),
            Format::Csv => {
                out.write_all(&text::csv_header(&table.schema()))?;
                text(Text::Csv, out)
            }
            Format::Ndjson => text(Text::Ndjson, out),
            Format::Json => {
                out.write_all(b"[\n")?;
                text(Text::JsonArray, out)
            }
        };
        Ok(TableWriter {
            table,
            inner,
            rows: 0,
            range: None,
            ids: Default::default(),
        })
    }

    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Smallest and largest `id` written (hits only).
    pub(crate) fn hit_ids(&self) -> Option<IdRange> {
        self.ids.range()
    }

    /// First and last `ts` written (hits only).
    pub(crate) fn time_range(&self) -> Option<TimeRange> {
        self.range.map(|(a, b)| TimeRange {
            first: crate::format_time(a),
            last: crate::format_time(b),
        })
    }

    /// Appends a batch (conformed to the table's schema first).
    pub fn write(&mut self, batch: &RecordBatch) -> Result<(), ExportError> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let batch = conform(self.table, batch)?;
        if self.table == Table::Hits {
            let ts = batch.column(2).as_primitive::<TimestampMicrosecondType>();
            if let (Some(&lo), Some(&hi)) = (ts.values().iter().min(), ts.values().iter().max()) {
                self.range = Some(match self.range {
                    Some((a, b)) => (a.min(lo), b.max(hi)),
                    None => (lo, hi),
                });
            }
            self.ids.add(&batch);
        }
        let rows = batch.num_rows() as u64;
        match &mut self.inner {
            Inner::Parquet(w) => w.write(&batch)?,
            Inner::ParallelParquet(w) => w.write(&batch)?,
            Inner::Text {
                out,
                enc: Some(enc),
                ..
            } => enc.write(batch, self.rows == 0, out)?,
            Inner::Text {
                kind,
                out,
                buf,
                enc: None,
            } => {
                buf.clear();
                text::encode(*kind, &batch, self.rows == 0, buf)?;
                out.write_all(buf)?;
            }
        }
        self.rows += rows;
        Ok(())
    }

    /// Ends the file (Parquet footer, JSON's closing bracket) and returns the writer.
    pub fn finish(self) -> Result<W, ExportError> {
        match self.inner {
            Inner::Parquet(w) => Ok(w.into_inner()?),
            Inner::ParallelParquet(w) => Ok(w.into_inner()?),
            Inner::Text {
                kind, mut out, enc, ..
            } => {
                if let Some(mut enc) = enc {
                    enc.flush(&mut out)?;
                }
                if kind == Text::JsonArray {
                    out.write_all(if self.rows == 0 { b"]\n" } else { b"\n]\n" })?;
                }
                Ok(out)
            }
        }
    }
}

/// Bytes gathered before a block goes to the thread that hashes and writes.
const BLOCK: usize = 1 << 20;
/// Blocks in flight to that thread (memory: about `BLOCKS` MiB per file).
const BLOCKS: usize = 4;

/// A file being written, with its running SHA-256 and size. Hashing and the
/// `write` calls run on a thread of their own, a block at a time, so they
/// overlap with the encoding that produces the next block.
pub struct HashingFile {
    buf: Vec<u8>,
    tx: Option<std::sync::mpsc::SyncSender<Vec<u8>>>,
    worker: Option<std::thread::JoinHandle<io::Result<(File, u64, String)>>>,
}

impl HashingFile {
    fn create(path: &Path) -> Result<Self, ExportError> {
        let mut file = File::options()
            .write(true)
            .create_new(true)
            .open(path)
            .map_err(|source| ExportError::Io {
                path: path.to_owned(),
                source,
            })?;
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(BLOCKS);
        let worker = std::thread::Builder::new()
            .name("takeout-hash".into())
            .spawn(move || {
                let mut hash = Sha256::new();
                let mut bytes = 0u64;
                for block in rx {
                    hash.update(&block);
                    file.write_all(&block)?;
                    bytes += block.len() as u64;
                }
                Ok((file, bytes, hex(&hash.finalize())))
            })?;
        Ok(HashingFile {
            buf: Vec::with_capacity(BLOCK),
            tx: Some(tx),
            worker: Some(worker),
        })
    }

    /// Hands the buffered block to the worker; its error if it stopped.
    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let block = std::mem::replace(&mut self.buf, Vec::with_capacity(BLOCK));
        let tx = self.tx.as_ref().expect("open until closed");
        if tx.send(block).is_err() {
            return Err(self
                .join()
                .err()
                .unwrap_or_else(|| io::Error::other("the file writer stopped")));
        }
        Ok(())
    }

    fn join(&mut self) -> io::Result<(File, u64, String)> {
        self.tx = None;
        match self.worker.take() {
            Some(w) => w.join().expect("the file writer panicked"),
            None => Err(io::Error::other("the file writer stopped")),
        }
    }

    /// Writes the rest and fsyncs; returns (bytes, SHA-256 hex).
    fn close(mut self) -> io::Result<(u64, String)> {
        self.send()?;
        let (f, bytes, sha) = self.join()?;
        f.sync_all()?;
        Ok((bytes, sha))
    }
}

impl Write for HashingFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(buf);
        if self.buf.len() >= BLOCK {
            self.send()?;
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        self.send()
    }
}

impl Drop for HashingFile {
    fn drop(&mut self) {
        // An export that failed: stop the worker (the file stays partial,
        // and without a MANIFEST the directory is no Takeout).
        self.tx = None;
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
    }
}

/// Fsyncs a directory, so that the names of the files in it are durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Writes a Takeout directory: all tables in one format, then the MANIFEST.
pub struct ExportWriter {
    dir: PathBuf,
    format: Format,
    writers: BTreeMap<Table, TableWriter<HashingFile>>,
}

impl ExportWriter {
    /// Creates `dir` (or takes it if it exists and is empty) and opens one
    /// file per table, encoded on the calling thread (the daemon's archives).
    pub fn create(dir: &Path, format: Format) -> Result<Self, ExportError> {
        Self::create_with_threads(dir, format, false)
    }

    /// Like [`ExportWriter::create`], encoding on threads of its own when
    /// `parallel` (see [`TableWriter::with_threads`]).
    pub fn create_with_threads(
        dir: &Path,
        format: Format,
        parallel: bool,
    ) -> Result<Self, ExportError> {
        let io = |source| ExportError::Io {
            path: dir.to_owned(),
            source,
        };
        match std::fs::read_dir(dir) {
            Ok(mut entries) => {
                if entries.next().is_some() {
                    return Err(ExportError::NotEmpty(dir.to_owned()));
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                std::fs::create_dir_all(dir).map_err(io)?;
                if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                    sync_dir(parent).map_err(io)?;
                }
            }
            Err(e) => return Err(io(e)),
        }
        let mut writers = BTreeMap::new();
        for table in Table::ALL {
            let path = dir.join(file_name(table, format));
            writers.insert(
                table,
                TableWriter::with_threads(format, table, HashingFile::create(&path)?, parallel)?,
            );
        }
        Ok(ExportWriter {
            dir: dir.to_owned(),
            format,
            writers,
        })
    }

    /// Appends a batch to `table`'s file.
    pub fn write(&mut self, table: Table, batch: &RecordBatch) -> Result<(), ExportError> {
        self.writers
            .get_mut(&table)
            .expect("every table is open")
            .write(batch)
    }

    /// Rows written so far, all tables.
    pub fn rows(&self) -> u64 {
        self.writers.values().map(|w| w.rows()).sum()
    }

    /// Closes and fsyncs every file, then writes the MANIFEST under a
    /// temporary name, fsyncs it, renames it into place and fsyncs the
    /// directory. Until that rename the directory is not a Takeout.
    pub fn finish(self, filter: Filter) -> Result<Manifest, ExportError> {
        let mut files = Vec::new();
        let mut range = None;
        let mut hit_ids = None;
        for (table, w) in self.writers {
            let rows = w.rows();
            if table == Table::Hits {
                range = w.time_range();
                hit_ids = w.hit_ids();
            }
            let (bytes, sha256) = w.finish()?.close()?;
            files.push(FileEntry {
                name: file_name(table, self.format),
                table: table.name().into(),
                rows,
                bytes,
                sha256,
            });
        }
        let manifest = Manifest {
            takeout_version: TAKEOUT_VERSION,
            format: self.format,
            hitvault_version: env!("CARGO_PKG_VERSION").into(),
            created_at: crate::format_time(jiff::Timestamp::now().as_microsecond()),
            filter,
            time_range: range,
            hit_ids,
            files,
        };
        let tmp = self.dir.join(format!("{MANIFEST}.tmp"));
        let io = |source| ExportError::Io {
            path: tmp.clone(),
            source,
        };
        {
            let mut f = File::options()
                .write(true)
                .create_new(true)
                .open(&tmp)
                .map_err(io)?;
            f.write_all(&serde_json::to_vec_pretty(&manifest).expect("manifest serialises"))
                .map_err(io)?;
            f.write_all(b"\n").map_err(io)?;
            f.sync_all().map_err(io)?;
        }
        std::fs::rename(&tmp, self.dir.join(MANIFEST)).map_err(io)?;
        sync_dir(&self.dir).map_err(io)?;
        Ok(manifest)
    }
}
