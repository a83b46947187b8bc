//! The on-disk record frame and a chunked reader over a segment file.
//!
//! Frame (all little-endian):
//! ```text
//! len: u32   length of what follows the crc: 8 (seq) + payload bytes; 0 = end of data
//! crc: u32   CRC-32 (IEEE, crc32fast) over the seq bytes followed by the payload
//! seq: u64   the record's sequence number
//! payload    len - 8 bytes
//! ```
//! `len` counts the seq too, so an empty payload still has `len == 8` and a
//! zero `len` can only mean "nothing written here" (segments are pre-zeroed).

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

/// Bytes before the payload: len + crc + seq.
pub(crate) const HEADER: usize = 16;

/// Largest read issued at once when scanning; bounds the reader's buffer
/// (plus at most one record larger than this).
const CHUNK: usize = 1 << 20;

/// Bytes a payload of `payload_len` bytes occupies on disk.
pub(crate) fn frame_len(payload_len: usize) -> u64 {
    (HEADER + payload_len) as u64
}

/// Little-endian u32 from the first four bytes of `b`.
fn u32_at(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

fn crc(seq: u64, payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&seq.to_le_bytes());
    h.update(payload);
    h.finalize()
}

/// Appends the frame of one record to `buf`. The caller has checked that the
/// payload is at most `u32::MAX - 8` bytes (the record limit is far lower).
pub(crate) fn encode(buf: &mut Vec<u8>, seq: u64, payload: &[u8]) {
    let len = (8 + payload.len()) as u32;
    buf.reserve(HEADER + payload.len());
    buf.extend_from_slice(&len.to_le_bytes());
    buf.extend_from_slice(&crc(seq, payload).to_le_bytes());
    buf.extend_from_slice(&seq.to_le_bytes());
    buf.extend_from_slice(payload);
}

/// One step of a [`RecordReader`].
pub(crate) enum Next<'a> {
    /// A record whose CRC checks out.
    Record {
        seq: u64,
        /// File offset of the frame.
        offset: u64,
        payload: &'a [u8],
    },
    /// A zero length field, or the end of the readable region at a frame boundary.
    End,
    /// Something that is not a valid frame starts at `offset` (the reader does
    /// not move past it).
    Bad { offset: u64, reason: String },
}

/// Reads frames sequentially from `[pos, limit)` of a segment file with
/// positioned reads in chunks of up to 1 MiB.
pub(crate) struct RecordReader<'f> {
    file: &'f File,
    limit: u64,
    pos: u64,
    buf: Vec<u8>,
    /// File offset of `buf[0]`.
    buf_start: u64,
}

impl<'f> RecordReader<'f> {
    pub(crate) fn new(file: &'f File, start: u64, limit: u64) -> Self {
        RecordReader {
            file,
            limit,
            pos: start,
            buf: Vec::new(),
            buf_start: start,
        }
    }

    /// File offset of the next frame.
    pub(crate) fn pos(&self) -> u64 {
        self.pos
    }

    /// Makes sure `buf` holds at least `n` bytes starting at `pos`
    /// (`n <= limit - pos`).
    fn fill(&mut self, n: usize) -> io::Result<()> {
        let have = (self.buf_start + self.buf.len() as u64).saturating_sub(self.pos) as usize;
        if self.pos >= self.buf_start && have >= n {
            return Ok(());
        }
        if self.pos >= self.buf_start {
            let consumed = (self.pos - self.buf_start) as usize;
            self.buf.drain(..consumed.min(self.buf.len()));
        } else {
            self.buf.clear();
        }
        self.buf_start = self.pos;
        let left = (self.limit - self.pos) as usize;
        let want = n.max(CHUNK).min(left);
        let mut filled = self.buf.len();
        self.buf.resize(want, 0);
        while filled < want {
            match self
                .file
                .read_at(&mut self.buf[filled..], self.pos + filled as u64)
            {
                Ok(0) => break,
                Ok(k) => filled += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.buf.truncate(filled);
        if filled < n {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "segment file ends at {} before the expected end {}",
                    self.pos + filled as u64,
                    self.limit
                ),
            ));
        }
        Ok(())
    }

    /// Reads the next frame and checks its CRC.
    pub(crate) fn next(&mut self) -> io::Result<Next<'_>> {
        let offset = self.pos;
        let room = self.limit.saturating_sub(offset);
        if room == 0 {
            return Ok(Next::End);
        }
        if room < 4 {
            self.fill(room as usize)?;
            let at = (offset - self.buf_start) as usize;
            return Ok(
                if self.buf[at..at + room as usize].iter().all(|b| *b == 0) {
                    Next::End
                } else {
                    Next::Bad {
                        offset,
                        reason: format!("{room} stray bytes at the end of the segment"),
                    }
                },
            );
        }
        self.fill(4)?;
        let at = (offset - self.buf_start) as usize;
        let len = u32_at(&self.buf[at..]);
        if len == 0 {
            return Ok(Next::End);
        }
        if len < 8 {
            return Ok(Next::Bad {
                offset,
                reason: format!("length field {len} is shorter than a sequence number"),
            });
        }
        let total = 8 + u64::from(len);
        if total > room {
            return Ok(Next::Bad {
                offset,
                reason: format!(
                    "a frame of {total} bytes would run past the end of the data ({room} bytes left)"
                ),
            });
        }
        self.fill(total as usize)?;
        let at = (offset - self.buf_start) as usize;
        let frame = &self.buf[at..at + total as usize];
        let stored_crc = u32_at(&frame[4..]);
        let seq = u64::from(u32_at(&frame[8..])) | (u64::from(u32_at(&frame[12..])) << 32);
        let payload = &frame[HEADER..];
        if crc(seq, payload) != stored_crc {
            return Ok(Next::Bad {
                offset,
                reason: format!("CRC mismatch in a frame of {total} bytes"),
            });
        }
        self.pos = offset + total;
        Ok(Next::Record {
            seq,
            offset,
            payload,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_then_read_back_and_detect_damage() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let mut buf = Vec::new();
        encode(&mut buf, 7, b"hello");
        encode(&mut buf, 8, b"");
        assert_eq!(buf.len() as u64, frame_len(5) + frame_len(0));
        let mut bytes = buf.clone();
        bytes.extend_from_slice(&[0; 32]);
        std::fs::write(&path, &bytes).unwrap();
        let f = File::open(&path).unwrap();
        let mut r = RecordReader::new(&f, 0, bytes.len() as u64);
        match r.next().unwrap() {
            Next::Record { seq, payload, .. } => {
                assert_eq!(seq, 7);
                assert_eq!(payload, b"hello");
            }
            _ => panic!("expected record"),
        }
        match r.next().unwrap() {
            Next::Record { seq, payload, .. } => {
                assert_eq!(seq, 8);
                assert!(payload.is_empty());
            }
            _ => panic!("expected record"),
        }
        assert!(matches!(r.next().unwrap(), Next::End));

        // Flip one payload byte: the CRC must catch it.
        let mut bad = bytes.clone();
        bad[HEADER + 1] ^= 0x40;
        std::fs::write(&path, &bad).unwrap();
        let f = File::open(&path).unwrap();
        let mut r = RecordReader::new(&f, 0, bad.len() as u64);
        assert!(matches!(r.next().unwrap(), Next::Bad { offset: 0, .. }));
    }
}
