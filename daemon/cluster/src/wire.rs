//! The cluster's frames: `[len u32][mac 32 bytes][postcard body]`, where
//! `mac` is HMAC-SHA256 under the cluster key of a direction byte (`Q` for a
//! request, `A` for an answer) and the body. A frame whose mac does not
//! verify ends the connection before its body is decoded, so only holders of
//! the key are heard. Frames are authenticated, not encrypted: the cluster
//! network is a private one (docs/operations/cluster.md).

use std::io;
use std::path::Path;

use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Largest frame body: 16 entries of at most 4 MiB of records each, with
/// room for framing.
pub const MAX_FRAME: usize = 80 << 20;

/// Shortest key accepted, in bytes.
pub const MIN_KEY: usize = 32;

/// The cluster key.
pub struct Key([u8; 64]);

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(..)")
    }
}

impl Key {
    /// A key from the bytes of the key file: the file's content with
    /// surrounding whitespace removed, at least [`MIN_KEY`] bytes.
    pub fn from_file_bytes(b: &[u8]) -> Result<Key, String> {
        let s = b.trim_ascii();
        if s.len() < MIN_KEY {
            return Err(format!(
                "the cluster key must be at least {MIN_KEY} bytes (it has {}); make one with \
                 `head -c 32 /dev/urandom | base64 > FILE`",
                s.len()
            ));
        }
        // Keys longer than a block are hashed first (HMAC's rule).
        let mut k = [0u8; 64];
        if s.len() > 64 {
            k[..32].copy_from_slice(&Sha256::digest(s));
        } else {
            k[..s.len()].copy_from_slice(s);
        }
        Ok(Key(k))
    }

    /// Reads the key file.
    pub fn read(path: &Path) -> Result<Key, String> {
        let b = std::fs::read(path)
            .map_err(|e| format!("cannot read the cluster key file {}: {e}", path.display()))?;
        Key::from_file_bytes(&b).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// HMAC-SHA256 of `dir` and `body`.
    pub fn mac(&self, dir: u8, body: &[u8]) -> [u8; 32] {
        let mut ipad = [0x36u8; 64];
        let mut opad = [0x5cu8; 64];
        for i in 0..64 {
            ipad[i] ^= self.0[i];
            opad[i] ^= self.0[i];
        }
        let inner = Sha256::new()
            .chain_update(ipad)
            .chain_update([dir])
            .chain_update(body)
            .finalize();
        Sha256::new()
            .chain_update(opad)
            .chain_update(inner)
            .finalize()
            .into()
    }
}

/// Direction byte of a request.
pub const REQUEST: u8 = b'Q';
/// Direction byte of an answer.
pub const ANSWER: u8 = b'A';

/// Writes one frame of `value`.
pub async fn write<W: AsyncWriteExt + Unpin, T: serde::Serialize>(
    w: &mut W,
    key: &Key,
    dir: u8,
    value: &T,
) -> io::Result<()> {
    let body = postcard::to_allocvec(value).map_err(io::Error::other)?;
    if body.len() > MAX_FRAME {
        return Err(io::Error::other(format!(
            "a cluster frame of {} bytes is over the limit of {MAX_FRAME}",
            body.len()
        )));
    }
    let mut head = [0u8; 36];
    head[..4].copy_from_slice(&(body.len() as u32).to_le_bytes());
    head[4..].copy_from_slice(&key.mac(dir, &body));
    w.write_all(&head).await?;
    w.write_all(&body).await?;
    w.flush().await
}

/// Reads one frame and decodes it; an error for a frame over
/// [`MAX_FRAME`], a mac that does not verify, or a body that does not
/// decode.
pub async fn read<R: AsyncReadExt + Unpin, T: serde::de::DeserializeOwned>(
    r: &mut R,
    key: &Key,
    dir: u8,
) -> io::Result<T> {
    let mut head = [0u8; 36];
    r.read_exact(&mut head).await?;
    let len = u32::from_le_bytes(head[..4].try_into().expect("4 bytes")) as usize;
    if len > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("a cluster frame of {len} bytes is over the limit of {MAX_FRAME}"),
        ));
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).await?;
    let want = key.mac(dir, &body);
    // Constant time: every byte is compared.
    if want
        .iter()
        .zip(&head[4..])
        .fold(0u8, |d, (a, b)| d | (a ^ b))
        != 0
    {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "a cluster frame failed authentication (another cluster key?)",
        ));
    }
    postcard::from_bytes(&body).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc_4231_case_2() {
        // RFC 4231 test case 2 ("Jefe"), padded to our minimum by using the
        // raw constructor.
        let mut k = [0u8; 64];
        k[..4].copy_from_slice(b"Jefe");
        let key = Key(k);
        // Our mac prefixes the direction byte: case 2's data starts with 'w'.
        let mac = key.mac(b'w', b"hat do ya want for nothing?");
        let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn short_keys_are_refused_with_the_fix() {
        let e = Key::from_file_bytes(b"  short\n").unwrap_err();
        assert!(
            e.contains("at least 32 bytes") && e.contains("/dev/urandom"),
            "{e}"
        );
        assert!(Key::from_file_bytes(&[b'k'; 44]).is_ok());
    }

    #[tokio::test]
    async fn a_frame_under_another_key_or_direction_is_refused() {
        let a = Key::from_file_bytes(&[b'a'; 32]).unwrap();
        let b = Key::from_file_bytes(&[b'b'; 32]).unwrap();
        let mut buf = Vec::new();
        write(&mut buf, &a, REQUEST, &(7u64, "hello".to_owned()))
            .await
            .unwrap();
        let got: (u64, String) = read(&mut buf.as_slice(), &a, REQUEST).await.unwrap();
        assert_eq!(got, (7, "hello".into()));
        let e = read::<_, (u64, String)>(&mut buf.as_slice(), &b, REQUEST)
            .await
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::PermissionDenied);
        // A request reflected back as an answer does not verify.
        let e = read::<_, (u64, String)>(&mut buf.as_slice(), &a, ANSWER)
            .await
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::PermissionDenied);
        // A length over the limit is refused before anything is allocated.
        let mut big = buf.clone();
        big[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        let e = read::<_, (u64, String)>(&mut big.as_slice(), &a, REQUEST)
            .await
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
    }
}
