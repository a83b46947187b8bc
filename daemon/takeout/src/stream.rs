//! The wire form of an export between a running daemon and the CLI: a
//! sequence of frames `[tag: u8][len: u32 LE][payload]`. Data frames carry one
//! record batch as a complete Arrow IPC stream; the last frame is `END`
//! (payload: row counts as JSON) or `ERROR` (payload: the message). A stream
//! that stops without `END` is incomplete and must not be taken as an export.

use std::io::{self, Read};

use arrow_array::RecordBatch;
use arrow_ipc::reader::StreamReader;
use arrow_ipc::writer::StreamWriter;

use crate::schema::Table;

const END: u8 = 0;
const ERROR: u8 = 0xff;

fn tag(t: Table) -> u8 {
    match t {
        Table::Sites => 1,
        Table::Hits => 2,
        Table::Props => 3,
        Table::Goals => 4,
        Table::Funnels => 5,
        Table::ImportedDays => 6,
        Table::ImportedValues => 7,
        Table::Engagements => 8,
    }
}

fn frame(tag: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(5 + payload.len());
    out.push(tag);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(payload);
    out
}

/// One data frame.
pub fn data_frame(table: Table, batch: &RecordBatch) -> Result<Vec<u8>, arrow_schema::ArrowError> {
    let mut w = StreamWriter::try_new(Vec::new(), &batch.schema())?;
    w.write(batch)?;
    w.finish()?;
    Ok(frame(tag(table), &w.into_inner()?))
}

/// The final frame of a complete stream.
pub fn end_frame(rows: u64) -> Vec<u8> {
    frame(
        END,
        serde_json::json!({ "rows": rows }).to_string().as_bytes(),
    )
}

/// The final frame of a failed stream.
pub fn error_frame(message: &str) -> Vec<u8> {
    frame(ERROR, message.as_bytes())
}

/// A decoded frame.
#[derive(Debug)]
pub enum Frame {
    Data(Table, RecordBatch),
    End { rows: u64 },
    Error(String),
}

/// Reads the next frame; an EOF before `END` is an error.
pub fn read_frame(r: &mut impl Read) -> io::Result<Frame> {
    let mut head = [0u8; 5];
    r.read_exact(&mut head).map_err(|e| {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            io::Error::new(e.kind(), "the export stream ended before it was complete")
        } else {
            e
        }
    })?;
    let len = u32::from_le_bytes(head[1..5].try_into().expect("4 bytes")) as usize;
    let mut payload = vec![0u8; len];
    r.read_exact(&mut payload)?;
    let bad = |m: String| io::Error::new(io::ErrorKind::InvalidData, m);
    match head[0] {
        END => {
            let v: serde_json::Value =
                serde_json::from_slice(&payload).map_err(|e| bad(e.to_string()))?;
            Ok(Frame::End {
                rows: v["rows"].as_u64().unwrap_or(0),
            })
        }
        ERROR => Ok(Frame::Error(String::from_utf8_lossy(&payload).into_owned())),
        t => {
            let table = Table::ALL
                .into_iter()
                .find(|x| tag(*x) == t)
                .ok_or_else(|| bad(format!("unknown frame tag {t}")))?;
            let mut rd =
                StreamReader::try_new(&payload[..], None).map_err(|e| bad(e.to_string()))?;
            let batch = rd
                .next()
                .ok_or_else(|| bad("empty data frame".into()))?
                .map_err(|e| bad(e.to_string()))?;
            Ok(Frame::Data(table, batch))
        }
    }
}
