use crate::bindings::weir::transform::types::{OutputBatch, Reject, Span, WindowAdd};
use crate::record::{HEADER, NONE, RECORD};
use crate::{Record, Window};

/// One record to produce, built with borrowed bytes:
///
/// ```no_run
/// # use weir_sdk::{Emitter, Output};
/// # fn f(out: &mut Emitter) {
/// out.emit(Output::new().key("user-7").value(r#"{"n":1}"#).topic("audit").header("source", "weir"));
/// # }
/// ```
#[derive(Clone, Debug, Default)]
pub struct Output<'a> {
    key: Option<&'a [u8]>,
    value: Option<&'a [u8]>,
    topic: Option<&'a str>,
    headers: Vec<(&'a str, Option<&'a [u8]>)>,
    timestamp: Option<i64>,
}

impl<'a> Output<'a> {
    /// An output with null key and value, to the default topic.
    pub fn new() -> Self {
        Self::default()
    }

    pub fn key(mut self, key: &'a (impl AsRef<[u8]> + ?Sized)) -> Self {
        self.key = Some(key.as_ref());
        self
    }

    pub fn key_opt(mut self, key: Option<&'a [u8]>) -> Self {
        self.key = key;
        self
    }

    pub fn value(mut self, value: &'a (impl AsRef<[u8]> + ?Sized)) -> Self {
        self.value = Some(value.as_ref());
        self
    }

    pub fn value_opt(mut self, value: Option<&'a [u8]>) -> Self {
        self.value = value;
        self
    }

    /// Produces to `topic` instead of the deployment's default output.
    pub fn topic(mut self, topic: &'a str) -> Self {
        self.topic = Some(topic);
        self
    }

    pub fn header(mut self, name: &'a str, value: &'a (impl AsRef<[u8]> + ?Sized)) -> Self {
        self.headers.push((name, Some(value.as_ref())));
        self
    }

    pub fn header_opt(mut self, name: &'a str, value: Option<&'a [u8]>) -> Self {
        self.headers.push((name, value));
        self
    }

    /// Event time in ms (default: the input record's, a window's last
    /// instant, or a timer's time).
    pub fn timestamp(mut self, timestamp: i64) -> Self {
        self.timestamp = Some(timestamp);
        self
    }
}

/// Where a transform puts its outputs and window additions for the current
/// record.
pub struct Emitter {
    batch: OutputBatch,
    source: u32,
    timestamp: i64,
    mark: Mark,
}

/// Lengths of the output columns when the current record began, so that a
/// rejection can undo exactly what the record emitted.
#[derive(Clone, Copy, Default)]
struct Mark {
    data: usize,
    records: usize,
    headers: usize,
    adds: usize,
}

impl Emitter {
    pub(crate) fn with_capacity(data: usize, records: usize) -> Self {
        Emitter {
            batch: OutputBatch {
                data: Vec::with_capacity(data),
                records: Vec::with_capacity(records * RECORD),
                headers: Vec::new(),
                topics: Vec::new(),
                rejects: Vec::new(),
                window_adds: Vec::new(),
            },
            source: 0,
            timestamp: 0,
            mark: Mark::default(),
        }
    }

    pub(crate) fn begin(&mut self, source: u32, timestamp: i64) {
        self.source = source;
        self.timestamp = timestamp;
        self.mark = Mark {
            data: self.batch.data.len(),
            records: self.batch.records.len(),
            headers: self.batch.headers.len(),
            adds: self.batch.window_adds.len(),
        };
    }

    /// Undoes everything emitted since `begin` and records the rejection.
    pub(crate) fn reject(&mut self, message: String) {
        let m = self.mark;
        self.batch.data.truncate(m.data);
        self.batch.records.truncate(m.records);
        self.batch.headers.truncate(m.headers);
        self.batch.window_adds.truncate(m.adds);
        self.batch.rejects.push(Reject {
            source: self.source,
            message,
        });
    }

    pub(crate) fn finish(self) -> OutputBatch {
        self.batch
    }

    fn push_bytes(&mut self, bytes: &[u8]) -> Span {
        let start = self.batch.data.len() as u32;
        self.batch.data.extend_from_slice(bytes);
        Span {
            start,
            len: bytes.len() as u32,
        }
    }

    fn push_packed(&mut self, bytes: Option<&[u8]>) -> [u8; 8] {
        let (start, len) = match bytes {
            Some(b) => (self.push_bytes(b).start, b.len() as u32),
            None => (0, NONE),
        };
        let mut packed = [0; 8];
        packed[..4].copy_from_slice(&start.to_le_bytes());
        packed[4..].copy_from_slice(&len.to_le_bytes());
        packed
    }

    fn topic_index(&mut self, topic: &str) -> u32 {
        match self.batch.topics.iter().position(|t| t == topic) {
            Some(i) => i as u32,
            None => {
                self.batch.topics.push(topic.to_owned());
                (self.batch.topics.len() - 1) as u32
            }
        }
    }

    /// Queues `output` for production.
    pub fn emit(&mut self, output: Output<'_>) {
        let mut entry = [0u8; RECORD];
        entry[..4].copy_from_slice(&self.source.to_le_bytes());
        let topic = output.topic.map_or(NONE, |t| self.topic_index(t));
        entry[4..8].copy_from_slice(&topic.to_le_bytes());
        entry[8..16].copy_from_slice(&self.push_packed(output.key));
        entry[16..24].copy_from_slice(&self.push_packed(output.value));
        let first = (self.batch.headers.len() / HEADER) as u32;
        for (name, value) in &output.headers {
            let name = self.push_packed(Some(name.as_bytes()));
            let value = self.push_packed(*value);
            self.batch.headers.extend_from_slice(&name);
            self.batch.headers.extend_from_slice(&value);
        }
        entry[24..28].copy_from_slice(&first.to_le_bytes());
        entry[28..32].copy_from_slice(&(output.headers.len() as u32).to_le_bytes());
        entry[32..].copy_from_slice(&output.timestamp.unwrap_or(i64::MIN).to_le_bytes());
        self.batch.records.extend_from_slice(&entry);
    }

    /// Emits `record` unchanged (key, value, headers, timestamp) to the
    /// default output topic.
    pub fn forward(&mut self, record: &Record<'_>) {
        let mut output = Output::new()
            .key_opt(record.key())
            .value_opt(record.value());
        output.headers.extend(record.headers());
        self.emit(output);
    }

    /// Adds `number` under `key` to `window`, at the record's timestamp.
    pub fn add_to_window(&mut self, window: Window, key: &[u8], number: f64) {
        self.add_to_window_at(window, key, self.timestamp, number);
    }

    /// Adds `number` under `key` to `window` at event time `timestamp`.
    pub fn add_to_window_at(&mut self, window: Window, key: &[u8], timestamp: i64, number: f64) {
        let key = self.push_bytes(key);
        self.batch.window_adds.push(WindowAdd {
            window: window.id(),
            source: self.source,
            key,
            timestamp,
            number,
            custom: None,
        });
    }

    /// Adds `value` under `key` to a window with a custom aggregation, at
    /// event time `timestamp`; the host folds it with `Transform::reduce`.
    pub fn add_custom_to_window_at(
        &mut self,
        window: Window,
        key: &[u8],
        timestamp: i64,
        value: &[u8],
    ) {
        let key = self.push_bytes(key);
        let custom = Some(self.push_bytes(value));
        self.batch.window_adds.push(WindowAdd {
            window: window.id(),
            source: self.source,
            key,
            timestamp,
            number: 0.0,
            custom,
        });
    }

    /// The timestamp of the record (window result, timer) being handled.
    pub fn timestamp(&self) -> i64 {
        self.timestamp
    }
}
