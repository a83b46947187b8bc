//! A minimal HTTP/1.1 client for the daemon's control socket: one request per
//! connection, `Connection: close`, so the CLI needs no HTTP library.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use crate::exit::{Exit, Failure};

/// A reply from the control socket.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub body: Vec<u8>,
}

/// The daemon's refusal (a reply other than the one expected) as a CLI
/// failure: the `message` of its JSON body, or `fallback`; [`Exit::Usage`]
/// when the daemon blamed the request (4xx), [`Exit::Runtime`] otherwise.
pub fn refusal(status: u16, body: &[u8], fallback: &str) -> Failure {
    let v: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let msg = v["message"].as_str().unwrap_or(fallback).to_owned();
    let exit = if (400..500).contains(&status) {
        Exit::Usage
    } else {
        Exit::Runtime
    };
    Failure::new(exit, msg)
}

/// How long the CLI waits for the daemon's answer to most commands.
pub const ANSWER_WAIT: Duration = Duration::from_secs(30);

/// Connects to a running daemon's control socket; `None` if no daemon listens.
pub fn connect(socket: &Path) -> Option<UnixStream> {
    connect_waiting(socket, ANSWER_WAIT)
}

/// [`connect`], waiting up to `wait` for the answer: for what may take long
/// on the daemon's side (a node's catch-up, a prune's archive).
pub fn connect_waiting(socket: &Path, wait: Duration) -> Option<UnixStream> {
    let s = UnixStream::connect(socket).ok()?;
    s.set_read_timeout(Some(wait)).ok()?;
    Some(s)
}

/// Reads the whole reply; a read that timed out says so, and that the
/// daemon may still finish what was asked.
fn read_reply(s: &mut UnixStream) -> std::io::Result<Vec<u8>> {
    let mut raw = Vec::new();
    match s.read_to_end(&mut raw) {
        Ok(_) => Ok(raw),
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            let secs = s.read_timeout().ok().flatten().map_or(0, |d| d.as_secs());
            Err(std::io::Error::other(format!(
                "the daemon did not answer within {secs} s; it may still finish what was asked \
                 (its log says when it does)"
            )))
        }
        Err(e) => Err(e),
    }
}

/// HTTP/1.1 chunked encoding: one chunk per write.
struct ChunkedWriter<W: Write> {
    inner: W,
}

impl<W: Write> Write for ChunkedWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        write!(self.inner, "{:x}\r\n", buf.len())?;
        self.inner.write_all(buf)?;
        self.inner.write_all(b"\r\n")?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Sends a POST whose body `produce` writes (chunked), then reads the whole
/// reply. If `produce` fails, the body is left without its final chunk, so
/// the daemon sees it incomplete; its error is returned beside the reply.
pub fn post_streamed(
    s: UnixStream,
    path: &str,
    produce: impl FnOnce(&mut dyn Write) -> Result<(), String>,
) -> std::io::Result<(Result<(), String>, Reply)> {
    let mut w = ChunkedWriter {
        inner: std::io::BufWriter::with_capacity(1 << 20, s.try_clone()?),
    };
    write!(
        w.inner,
        "POST {path} HTTP/1.1\r\nHost: hitvault\r\nContent-Type: application/vnd.hitvault.takeout-frames\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    )?;
    let produced = produce(&mut w);
    let sent = match &produced {
        Ok(()) => w
            .inner
            .write_all(b"0\r\n\r\n")
            .and_then(|()| w.inner.flush()),
        Err(_) => w.inner.flush(),
    };
    drop(w);
    if produced.is_err() || sent.is_err() {
        let _ = s.shutdown(std::net::Shutdown::Write);
    }
    let mut s = s;
    let raw = read_reply(&mut s)?;
    let reply = parse_reply(&raw)?;
    Ok((produced.and(sent.map_err(|e| e.to_string())), reply))
}

/// Sends one request and reads the whole reply.
pub fn request(
    mut s: UnixStream,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
) -> std::io::Result<Reply> {
    let body = body.unwrap_or_default();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: hitvault\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes())?;
    s.write_all(body)?;
    let raw = read_reply(&mut s)?;
    parse_reply(&raw)
}

fn parse_reply(raw: &[u8]) -> std::io::Result<Reply> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("malformed reply from the control socket"))?;
    let head = String::from_utf8_lossy(&raw[..split]);
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other("malformed status line from the control socket"))?;
    let chunked = head.lines().any(|l| {
        l.to_ascii_lowercase()
            .starts_with("transfer-encoding: chunked")
    });
    let mut body = raw[split + 4..].to_vec();
    if chunked {
        body = dechunk(&body)?;
    }
    Ok(Reply { status, body })
}

fn dechunk(mut b: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = b
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or_else(|| std::io::Error::other("bad chunk"))?;
        let size = usize::from_str_radix(String::from_utf8_lossy(&b[..eol]).trim(), 16)
            .map_err(|_| std::io::Error::other("bad chunk size"))?;
        b = &b[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        out.extend_from_slice(
            b.get(..size)
                .ok_or_else(|| std::io::Error::other("short chunk"))?,
        );
        b = b.get(size + 2..).unwrap_or_default();
    }
}

/// A reply whose body is read as it arrives.
pub struct Streamed {
    pub status: u16,
    /// Header names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: Box<dyn Read>,
}

impl Streamed {
    /// Reads the rest of the body and makes it a [`refusal`].
    pub fn refusal(mut self, fallback: &str) -> Failure {
        let mut body = Vec::new();
        let _ = self.body.read_to_end(&mut body);
        refusal(self.status, &body, fallback)
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Sends a bodyless request and returns the reply with its body unread. A
/// chunked body that stops before its last chunk reads as an error, never
/// as a clean end.
pub fn stream(s: UnixStream, method: &str, path: &str) -> std::io::Result<Streamed> {
    use std::io::BufRead;
    let mut w = s.try_clone()?;
    write!(
        w,
        "{method} {path} HTTP/1.1\r\nHost: hitvault\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    let mut r = std::io::BufReader::with_capacity(1 << 20, s);
    let mut line = String::new();
    r.read_line(&mut line)?;
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other("malformed status line from the control socket"))?;
    let mut headers = Vec::new();
    loop {
        line.clear();
        if r.read_line(&mut line)? == 0 {
            return Err(std::io::Error::other("the control socket closed mid-reply"));
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
        }
    }
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    let body: Box<dyn Read> = if chunked {
        Box::new(Chunked {
            inner: r,
            left: 0,
            done: false,
        })
    } else {
        Box::new(r)
    };
    Ok(Streamed {
        status,
        headers,
        body,
    })
}

/// Reads an HTTP/1.1 chunked body.
struct Chunked<R> {
    inner: R,
    left: usize,
    done: bool,
}

impl<R: std::io::BufRead> Read for Chunked<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let cut = || {
            std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the daemon ended the reply before its end",
            )
        };
        if self.done || buf.is_empty() {
            return Ok(0);
        }
        if self.left == 0 {
            let mut line = String::new();
            if self.inner.read_line(&mut line)? == 0 {
                return Err(cut());
            }
            if line.trim().is_empty() {
                // The CRLF that ends the previous chunk.
                line.clear();
                if self.inner.read_line(&mut line)? == 0 {
                    return Err(cut());
                }
            }
            let size = line.trim().split(';').next().unwrap_or("");
            self.left = usize::from_str_radix(size, 16)
                .map_err(|_| std::io::Error::other(format!("bad chunk size {size:?}")))?;
            if self.left == 0 {
                self.done = true;
                return Ok(0);
            }
        }
        let n = buf.len().min(self.left);
        let got = self.inner.read(&mut buf[..n])?;
        if got == 0 {
            return Err(cut());
        }
        self.left -= got;
        Ok(got)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_daemon_that_does_not_answer_in_time_is_named_not_a_bare_os_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("control.sock");
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        // Accepts and reads, and never answers.
        let held = std::thread::spawn(move || {
            let (mut c, _) = listener.accept().unwrap();
            let mut buf = [0u8; 1024];
            let _ = c.read(&mut buf);
            std::thread::sleep(Duration::from_secs(3));
        });
        let s = connect_waiting(&path, Duration::from_secs(1)).unwrap();
        let e = request(s, "POST", "/cluster/add", None).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("the daemon did not answer within 1 s"),
            "{e}"
        );
        held.join().unwrap();
    }
}
