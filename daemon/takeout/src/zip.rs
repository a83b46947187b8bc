//! A whole Takeout (every table and the MANIFEST) as one zip stream,
//! written front to back into any writer (an HTTP body): nothing is held
//! but the current batch, so memory stays flat whatever the size.
//!
//! The zip is written as streaming zippers do: each entry's local header
//! carries no sizes or CRC (general-purpose flag bit 3), a data descriptor
//! follows the data, and the central directory at the end has the real
//! values. Entries are stored (method 0: Parquet is already compressed)
//! and always ZIP64 (8-byte sizes and offsets), so nothing breaks past
//! 4 GiB; every common reader (Info-ZIP `unzip`, Python's `zipfile`,
//! libarchive, Windows Explorer) reads that. Names are UTF-8 (flag bit 11).

use std::io::{self, Write};

use sha2::{Digest, Sha256};

use crate::Format;
use crate::manifest::{FileEntry, Filter, IdRange, MANIFEST, Manifest, TimeRange};
use crate::schema::{TAKEOUT_VERSION, Table, file_name, hex};
use crate::write::{ExportError, TableWriter};

const LOCAL: u32 = 0x0403_4b50;
const DESCRIPTOR: u32 = 0x0807_4b50;
const CENTRAL: u32 = 0x0201_4b50;
const END64: u32 = 0x0606_4b50;
const LOCATOR64: u32 = 0x0706_4b50;
const END: u32 = 0x0605_4b50;
/// ZIP 4.5: ZIP64.
const VERSION: u16 = 45;
/// Data descriptor (bit 3) and UTF-8 names (bit 11).
const FLAGS: u16 = 0x0808;
/// 1980-01-01 00:00, the DOS epoch (the files' real times are in the MANIFEST).
const DOS_DATE: u16 = (1 << 5) | 1;

struct Done {
    name: String,
    crc: u32,
    size: u64,
    offset: u64,
}

/// A zip archive being written front to back.
pub struct ZipStream<W: Write> {
    out: W,
    pos: u64,
    done: Vec<Done>,
    cur: Option<(String, u64, crc32fast::Hasher, u64)>,
}

fn put(out: &mut Vec<u8>, v: u64, bytes: usize) {
    out.extend_from_slice(&v.to_le_bytes()[..bytes]);
}

impl<W: Write> ZipStream<W> {
    pub fn new(out: W) -> Self {
        ZipStream {
            out,
            pos: 0,
            done: vec![],
            cur: None,
        }
    }

    fn emit(&mut self, b: &[u8]) -> io::Result<()> {
        self.out.write_all(b)?;
        self.pos += b.len() as u64;
        Ok(())
    }

    /// Starts an entry; its data is what is written until [`Self::end_entry`].
    pub fn begin_entry(&mut self, name: &str) -> io::Result<()> {
        assert!(self.cur.is_none(), "an entry is open");
        let mut h = Vec::with_capacity(64 + name.len());
        put(&mut h, LOCAL.into(), 4);
        put(&mut h, VERSION.into(), 2);
        put(&mut h, FLAGS.into(), 2);
        put(&mut h, 0, 2); // stored
        put(&mut h, 0, 2); // time
        put(&mut h, DOS_DATE.into(), 2);
        put(&mut h, 0, 4); // crc: in the descriptor
        put(&mut h, 0, 4); // sizes: in the descriptor
        put(&mut h, 0, 4);
        put(&mut h, name.len() as u64, 2);
        put(&mut h, 20, 2); // extra: ZIP64, two zero sizes
        h.extend_from_slice(name.as_bytes());
        put(&mut h, 1, 2);
        put(&mut h, 16, 2);
        put(&mut h, 0, 8);
        put(&mut h, 0, 8);
        let offset = self.pos;
        self.emit(&h)?;
        self.cur = Some((name.to_owned(), offset, crc32fast::Hasher::new(), 0));
        Ok(())
    }

    /// Ends the open entry with its data descriptor.
    pub fn end_entry(&mut self) -> io::Result<()> {
        let (name, offset, crc, size) = self.cur.take().expect("an entry is open");
        let crc = crc.finalize();
        let mut d = Vec::with_capacity(24);
        put(&mut d, DESCRIPTOR.into(), 4);
        put(&mut d, crc.into(), 4);
        put(&mut d, size, 8);
        put(&mut d, size, 8);
        self.emit(&d)?;
        self.done.push(Done {
            name,
            crc,
            size,
            offset,
        });
        Ok(())
    }

    /// Writes the central directory and returns the writer.
    pub fn finish(mut self) -> io::Result<W> {
        assert!(self.cur.is_none(), "an entry is open");
        let start = self.pos;
        let mut c = Vec::new();
        for e in &self.done {
            put(&mut c, CENTRAL.into(), 4);
            put(&mut c, (3 << 8) | u64::from(VERSION), 2); // made by: Unix
            put(&mut c, VERSION.into(), 2);
            put(&mut c, FLAGS.into(), 2);
            put(&mut c, 0, 2);
            put(&mut c, 0, 2);
            put(&mut c, DOS_DATE.into(), 2);
            put(&mut c, e.crc.into(), 4);
            put(&mut c, 0xFFFF_FFFF, 4); // sizes and offset: in the ZIP64 extra
            put(&mut c, 0xFFFF_FFFF, 4);
            put(&mut c, e.name.len() as u64, 2);
            put(&mut c, 28, 2);
            put(&mut c, 0, 2); // comment
            put(&mut c, 0, 2); // disk
            put(&mut c, 0, 2); // internal attributes
            put(&mut c, 0o100_644 << 16, 4); // a regular file, rw-r--r--
            put(&mut c, 0xFFFF_FFFF, 4);
            c.extend_from_slice(e.name.as_bytes());
            put(&mut c, 1, 2);
            put(&mut c, 24, 2);
            put(&mut c, e.size, 8);
            put(&mut c, e.size, 8);
            put(&mut c, e.offset, 8);
        }
        let n = self.done.len() as u64;
        let size = c.len() as u64;
        let end64 = start + size;
        put(&mut c, END64.into(), 4);
        put(&mut c, 44, 8);
        put(&mut c, (3 << 8) | u64::from(VERSION), 2);
        put(&mut c, VERSION.into(), 2);
        put(&mut c, 0, 4);
        put(&mut c, 0, 4);
        put(&mut c, n, 8);
        put(&mut c, n, 8);
        put(&mut c, size, 8);
        put(&mut c, start, 8);
        put(&mut c, LOCATOR64.into(), 4);
        put(&mut c, 0, 4);
        put(&mut c, end64, 8);
        put(&mut c, 1, 4);
        put(&mut c, END.into(), 4);
        put(&mut c, 0, 2);
        put(&mut c, 0, 2);
        put(&mut c, 0xFFFF, 2);
        put(&mut c, 0xFFFF, 2);
        put(&mut c, 0xFFFF_FFFF, 4);
        put(&mut c, 0xFFFF_FFFF, 4);
        put(&mut c, 0, 2);
        self.emit(&c)?;
        self.out.flush()?;
        Ok(self.out)
    }
}

impl<W: Write> Write for ZipStream<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.out.write(buf)?;
        self.pos += n as u64;
        let (_, _, crc, size) = self.cur.as_mut().expect("an entry is open");
        crc.update(&buf[..n]);
        *size += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// The data of one entry, with its SHA-256 for the MANIFEST.
struct Hashed<W: Write> {
    zip: ZipStream<W>,
    hash: Sha256,
}

impl<W: Write> Write for Hashed<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.zip.write(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.zip.flush()
    }
}

/// A Takeout as a zip: the tables in [`Table::ALL`] order (each table's
/// batches together and in that order, as the store exports them; a table
/// with no batch is an empty file in its place), then the MANIFEST.
pub struct ZipExport<W: Write + Send> {
    format: Format,
    idle: Option<ZipStream<W>>,
    cur: Option<(Table, TableWriter<Hashed<W>>)>,
    files: Vec<FileEntry>,
    range: Option<TimeRange>,
    hit_ids: Option<IdRange>,
}

impl<W: Write + Send> ZipExport<W> {
    pub fn new(out: W, format: Format) -> Self {
        ZipExport {
            format,
            idle: Some(ZipStream::new(out)),
            cur: None,
            files: vec![],
            range: None,
            hit_ids: None,
        }
    }

    fn close_table(&mut self) -> Result<(), ExportError> {
        if let Some((table, w)) = self.cur.take() {
            let rows = w.rows();
            if table == Table::Hits {
                self.range = w.time_range();
                self.hit_ids = w.hit_ids();
            }
            let Hashed { mut zip, hash } = w.finish()?;
            zip.end_entry()?;
            let bytes = zip.done.last().map_or(0, |d| d.size);
            self.files.push(FileEntry {
                name: file_name(table, self.format),
                table: table.name().into(),
                rows,
                bytes,
                sha256: hex(&hash.finalize()),
            });
            self.idle = Some(zip);
        }
        Ok(())
    }

    fn open_table(&mut self, table: Table) -> Result<(), ExportError> {
        self.close_table()?;
        if self.files.iter().any(|f| f.table == table.name()) {
            return Err(ExportError::Io {
                path: file_name(table, self.format).into(),
                source: io::Error::other("the table's batches must arrive together"),
            });
        }
        let mut zip = self.idle.take().expect("no entry is open");
        zip.begin_entry(&file_name(table, self.format))?;
        let w = TableWriter::new(
            self.format,
            table,
            Hashed {
                zip,
                hash: Sha256::new(),
            },
        )?;
        self.cur = Some((table, w));
        Ok(())
    }

    /// Appends a batch of `table`.
    pub fn write(
        &mut self,
        table: Table,
        batch: &arrow_array::RecordBatch,
    ) -> Result<(), ExportError> {
        if self.cur.as_ref().map(|c| c.0) != Some(table) {
            // The tables before it that had no batch, then it.
            for t in Table::ALL.into_iter().take_while(|t| *t != table) {
                if !self.files.iter().any(|f| f.table == t.name())
                    && self.cur.as_ref().map(|c| c.0) != Some(t)
                {
                    self.open_table(t)?;
                }
            }
            self.open_table(table)?;
        }
        self.cur.as_mut().expect("opened").1.write(batch)
    }

    /// Writes any table that had no rows, then the MANIFEST, then the
    /// central directory; returns the manifest and the writer.
    pub fn finish(mut self, filter: Filter) -> Result<(Manifest, W), ExportError> {
        for table in Table::ALL {
            if self.cur.as_ref().map(|c| c.0) != Some(table)
                && !self.files.iter().any(|f| f.table == table.name())
            {
                self.open_table(table)?;
            }
        }
        self.close_table()?;
        let mut files = self.files;
        files.sort_by_key(|f| {
            Table::ALL
                .iter()
                .position(|t| t.name() == f.table)
                .unwrap_or(usize::MAX)
        });
        let manifest = Manifest {
            takeout_version: TAKEOUT_VERSION,
            format: self.format,
            hitvault_version: env!("CARGO_PKG_VERSION").into(),
            created_at: crate::format_time(jiff::Timestamp::now().as_microsecond()),
            filter,
            time_range: self.range,
            hit_ids: self.hit_ids,
            files,
        };
        let mut zip = self.idle.take().expect("no entry is open");
        zip.begin_entry(MANIFEST)?;
        zip.write_all(&serde_json::to_vec_pretty(&manifest).expect("manifest serialises"))?;
        zip.write_all(b"\n")?;
        zip.end_entry()?;
        Ok((manifest, zip.finish()?))
    }
}
