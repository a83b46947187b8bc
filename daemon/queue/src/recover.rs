//! Opening an existing queue directory: scan and validate every segment,
//! cut a torn tail off the last one, delete what is committed or empty.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::OpenError;
use crate::frame::{Next, RecordReader};
use crate::segment::{LOCK_NAME, TMP_SUFFIX, parse_segment_name, sync_dir};
use crate::shared::SegMeta;

/// Chunk for checking and zeroing the unused rest of the current segment.
const ZERO_CHECK_CHUNK: usize = 1 << 20;

pub(crate) struct Recovered {
    /// In seq order; the last one (if any) is where writing continues.
    pub(crate) segments: VecDeque<SegMeta>,
    /// Ranges of seqs found, above `committed`.
    pub(crate) runs: Vec<(u64, u64)>,
    /// Highest seq on disk, 0 if none.
    pub(crate) last_seq: u64,
    pub(crate) fsyncs: u64,
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> OpenError + '_ {
    move |source| OpenError::Io {
        path: path.to_path_buf(),
        source,
    }
}

struct Scanned {
    meta: SegMeta,
    runs: Vec<(u64, u64)>,
    /// First bad frame, if the scan stopped at one.
    bad: Option<(u64, String)>,
}

/// Reads every frame of one segment from the start, checking CRCs and that
/// seqs start at the name's seq and strictly increase.
fn scan(path: PathBuf, first_seq: u64, index_stride: u64) -> Result<Scanned, OpenError> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .map_err(io_err(&path))?;
    let len = file.metadata().map_err(io_err(&path))?.len();
    let mut runs: Vec<(u64, u64)> = Vec::new();
    let mut index = Vec::new();
    let mut last_seq = 0u64;
    let mut last_index_off: Option<u64> = None;
    let mut bad = None;
    let end;
    {
        let mut r = RecordReader::new(&file, 0, len);
        loop {
            match r.next().map_err(io_err(&path))? {
                Next::Record { seq, offset, .. } => {
                    if last_seq == 0 && seq != first_seq {
                        bad = Some((
                            offset,
                            format!(
                                "first record has seq {seq} but the segment is named for {first_seq}"
                            ),
                        ));
                        end = offset;
                        break;
                    }
                    if last_seq != 0 && seq <= last_seq {
                        bad = Some((offset, format!("seq {seq} does not follow seq {last_seq}")));
                        end = offset;
                        break;
                    }
                    if last_index_off.is_none_or(|o| offset >= o + index_stride) {
                        index.push((seq, offset));
                        last_index_off = Some(offset);
                    }
                    match runs.last_mut() {
                        Some(run) if run.1 + 1 == seq => run.1 = seq,
                        _ => runs.push((seq, seq)),
                    }
                    last_seq = seq;
                }
                Next::End => {
                    end = r.pos();
                    break;
                }
                Next::Bad { offset, reason } => {
                    bad = Some((offset, reason));
                    end = offset;
                    break;
                }
            }
        }
    }
    Ok(Scanned {
        meta: SegMeta {
            first_seq,
            path,
            file: Arc::new(file),
            len,
            durable_end: end,
            last_seq,
            index,
        },
        runs,
        bad,
    })
}

/// Overwrites every non-zero byte of `[from, len)` with zeros. Returns
/// whether anything was written.
fn zero_rest(file: &File, from: u64, len: u64) -> io::Result<bool> {
    let mut buf = vec![0u8; ZERO_CHECK_CHUNK];
    let zeros = vec![0u8; ZERO_CHECK_CHUNK];
    let mut off = from;
    let mut wrote = false;
    while off < len {
        let n = (len - off).min(ZERO_CHECK_CHUNK as u64) as usize;
        file.read_exact_at(&mut buf[..n], off)?;
        if buf[..n].iter().any(|b| *b != 0) {
            file.write_all_at(&zeros[..n], off)?;
            wrote = true;
        }
        off += n as u64;
    }
    Ok(wrote)
}

pub(crate) fn recover(
    dir: &Path,
    committed: u64,
    index_stride: u64,
) -> Result<Recovered, OpenError> {
    let mut names: Vec<(u64, PathBuf)> = Vec::new();
    let mut removed_any = false;
    for entry in fs::read_dir(dir).map_err(io_err(dir))? {
        let entry = entry.map_err(io_err(dir))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let path = entry.path();
        if name.ends_with(TMP_SUFFIX) {
            // A segment that was being prepared; never held records.
            fs::remove_file(&path).map_err(io_err(&path))?;
            removed_any = true;
        } else if let Some(seq) = parse_segment_name(name) {
            names.push((seq, path));
        } else if name != LOCK_NAME {
            tracing::debug!(file = %path.display(), "ignoring a file that is not a queue segment");
        }
    }
    names.sort_by_key(|(seq, _)| *seq);

    let count = names.len();
    let mut segments: VecDeque<SegMeta> = VecDeque::new();
    let mut runs: Vec<(u64, u64)> = Vec::new();
    let mut last_seq = 0u64;
    let mut fsyncs = 0u64;
    let mut delete: Vec<PathBuf> = Vec::new();

    for (i, (first_seq, path)) in names.into_iter().enumerate() {
        let is_last = i + 1 == count;
        let scanned = scan(path, first_seq, index_stride)?;
        let meta = scanned.meta;
        if let Some((offset, reason)) = scanned.bad {
            if !is_last {
                return Err(OpenError::Corrupt {
                    path: meta.path,
                    offset,
                    reason,
                });
            }
            tracing::warn!(
                segment = %meta.path.display(),
                offset,
                %reason,
                "queue: torn tail in the last segment; writing continues at the last good record"
            );
        }
        if meta.last_seq == 0 {
            delete.push(meta.path);
            continue;
        }
        if first_seq <= last_seq {
            return Err(OpenError::Corrupt {
                path: meta.path,
                offset: 0,
                reason: format!(
                    "segment starts at seq {first_seq} but an earlier segment already reached seq {last_seq}"
                ),
            });
        }
        last_seq = meta.last_seq;
        runs.extend(scanned.runs);
        segments.push_back(meta);
    }

    // Fully committed segments go, except the one where writing continues.
    while segments.len() > 1 && segments[0].last_seq <= committed {
        if let Some(seg) = segments.pop_front() {
            delete.push(seg.path);
        }
    }

    // The current segment: zero whatever lies after its last good record
    // (a torn frame, or garbage) so that new records are never followed by
    // stale bytes, and make what it holds durable before readers see it.
    if let Some(cur) = segments.back() {
        zero_rest(&cur.file, cur.durable_end, cur.len).map_err(io_err(&cur.path))?;
        cur.file.sync_data().map_err(io_err(&cur.path))?;
        fsyncs += 1;
    }

    for path in &delete {
        match fs::remove_file(path) {
            Ok(()) => removed_any = true,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(path)(e)),
        }
    }
    if removed_any {
        sync_dir(dir).map_err(io_err(dir))?;
        fsyncs += 1;
    }

    runs.retain_mut(|run| {
        run.0 = run.0.max(committed + 1);
        run.1 >= run.0
    });
    Ok(Recovered {
        segments,
        runs,
        last_seq,
        fsyncs,
    })
}
