//! How records are turned into what a transform reads, and its outputs
//! into what the topics hold (a deployment's formats): interfaces here,
//! so the engine and the pipeline use them without knowing any format.

use crate::{InputBatch, RecordFailure};

/// Which part of a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    Key,
    Value,
}

impl Part {
    pub fn as_str(self) -> &'static str {
        match self {
            Part::Key => "key",
            Part::Value => "value",
        }
    }
}

/// A batch as its transform reads it.
pub struct Decoded {
    /// The records before `waiting` (all of them if none), decoded, with
    /// the same indexes and offsets as the batch they came from.
    pub batch: InputBatch,
    /// The batch's invalid records and those that do not decode, by index.
    pub invalid: Vec<RecordFailure>,
    /// The first record that cannot be decoded yet (its schema is not at
    /// hand), and why: it and the records after it wait.
    pub waiting: Option<(u32, String)>,
}

/// Decodes a deployment's input batches before its transform runs.
pub trait RecordDecoding: Send + Sync {
    /// Never blocks: what needs something not at hand waits (`Decoded::waiting`).
    fn decode(&self, batch: &InputBatch, invalid: &[RecordFailure]) -> Decoded;
}

/// Encodes what a transform sends to its deployment's default output
/// topic (JSON text into Avro, say) before the host holds it: an output
/// that does not fit fails its source record, as any other bad output.
pub trait RecordEncoding: Send + Sync {
    /// The topic it encodes for (the deployment's default output), whether
    /// an output names it or not.
    fn topic(&self) -> &str;
    /// Whether `part` is rewritten at all.
    fn encodes(&self, part: Part) -> bool;
    /// Appends the encoded `bytes` to `out`, or says what does not fit.
    fn encode(&self, part: Part, bytes: &[u8], out: &mut Vec<u8>) -> Result<(), String>;
    /// What it encoded, as the transform wrote it (JSON text), for people
    /// (`weir test`, the console); `None` if it cannot be read back.
    fn show(&self, part: Part, encoded: &[u8]) -> Option<Vec<u8>>;
}
