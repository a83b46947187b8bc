//! The reading half of zip, as much of it as Plausible's export needs:
//! the central directory's entries (stored or deflated, no ZIP64), and one
//! entry's bytes, inflated and checked against its CRC-32 at the end.
//! Every offset and size is checked against the file before it is used.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};

/// One file in a zip: its name, method (0 stored, 8 deflated), the offset of
/// its local header, its compressed size and its CRC-32.
#[derive(Clone, Debug)]
pub struct Entry {
    pub name: String,
    method: u16,
    offset: u64,
    size: u64,
    crc: u32,
}

/// The entries of a zip file, from its central directory (directories left out).
pub fn entries(f: &mut File) -> Result<Vec<Entry>, String> {
    let fail = |m: String| m;
    let len = f.metadata().map_err(|e| fail(e.to_string()))?.len();
    let tail_len = len.min(65_557);
    let mut tail = vec![0u8; tail_len as usize];
    f.seek(SeekFrom::Start(len - tail_len))
        .and_then(|_| f.read_exact(&mut tail))
        .map_err(|e| fail(e.to_string()))?;
    let eocd = (0..tail.len().saturating_sub(21))
        .rev()
        .find(|&i| tail[i..i + 4] == [0x50, 0x4b, 0x05, 0x06])
        .ok_or_else(|| {
            fail("not a zip file, or a truncated one (no end of central directory)".into())
        })?;
    let u16_at = |b: &[u8], i: usize| u16::from_le_bytes([b[i], b[i + 1]]);
    let u32_at = |b: &[u8], i: usize| u32::from_le_bytes(b[i..i + 4].try_into().expect("4"));
    let e = &tail[eocd..];
    let count = u16_at(e, 10) as usize;
    let (cd_size, cd_off) = (u32_at(e, 12) as u64, u32_at(e, 16) as u64);
    if cd_off == 0xffff_ffff || count == 0xffff {
        return Err(fail(
            "ZIP64 archives are not read: unzip it and import the directory".into(),
        ));
    }
    if cd_off + cd_size > len {
        return Err(fail(
            "the central directory lies past the end: a truncated zip".into(),
        ));
    }
    let mut cd = vec![0u8; cd_size as usize];
    f.seek(SeekFrom::Start(cd_off))
        .and_then(|_| f.read_exact(&mut cd))
        .map_err(|e| fail(e.to_string()))?;
    let mut out = Vec::new();
    let mut i = 0;
    for _ in 0..count {
        if i + 46 > cd.len() || u32_at(&cd, i) != 0x0201_4b50 {
            return Err(fail("a damaged central directory".into()));
        }
        let method = u16_at(&cd, i + 10);
        let crc = u32_at(&cd, i + 16);
        let size = u32_at(&cd, i + 20) as u64;
        let (n, x, c) = (
            u16_at(&cd, i + 28) as usize,
            u16_at(&cd, i + 30) as usize,
            u16_at(&cd, i + 32) as usize,
        );
        let offset = u32_at(&cd, i + 42) as u64;
        let name =
            String::from_utf8_lossy(cd.get(i + 46..i + 46 + n).unwrap_or_default()).into_owned();
        i += 46 + n + x + c;
        if name.ends_with('/') {
            continue;
        }
        if size == 0xffff_ffff || offset == 0xffff_ffff {
            return Err(fail(format!("{name}: ZIP64 entries are not read")));
        }
        if method != 0 && method != 8 {
            return Err(fail(format!(
                "{name}: compression method {method} (only stored and deflated)"
            )));
        }
        out.push(Entry {
            name,
            method,
            offset,
            size,
            crc,
        });
    }
    Ok(out)
}

/// Checks a CRC-32 at the end of the stream.
struct Crc<R: Read> {
    inner: R,
    hash: crc32fast::Hasher,
    want: u32,
}

impl<R: Read> Read for Crc<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 {
            if self.hash.clone().finalize() != self.want {
                return Err(std::io::Error::other(
                    "the zip entry's CRC-32 does not match",
                ));
            }
        } else {
            self.hash.update(&buf[..n]);
        }
        Ok(n)
    }
}

/// Reads `entry` of the zip `f`: inflated, and failing at its end if the
/// bytes do not match the entry's CRC-32.
pub fn open<'a>(f: &'a mut File, entry: &Entry) -> Result<Box<dyn Read + 'a>, String> {
    let mut head = [0u8; 30];
    f.seek(SeekFrom::Start(entry.offset))
        .and_then(|_| f.read_exact(&mut head))
        .map_err(|e| e.to_string())?;
    if head[..4] != [0x50, 0x4b, 0x03, 0x04] {
        return Err("a damaged zip entry (no local header)".into());
    }
    let skip = u16::from_le_bytes([head[26], head[27]]) as i64
        + u16::from_le_bytes([head[28], head[29]]) as i64;
    f.seek(SeekFrom::Current(skip)).map_err(|e| e.to_string())?;
    let raw = Read::by_ref(f).take(entry.size);
    let inner: Box<dyn Read> = if entry.method == 8 {
        Box::new(flate2::read::DeflateDecoder::new(raw))
    } else {
        Box::new(raw)
    };
    Ok(Box::new(Crc {
        inner,
        hash: crc32fast::Hasher::new(),
        want: entry.crc,
    }))
}
