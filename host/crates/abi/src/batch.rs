//! Columnar batches: records refer to their bytes in one `data` buffer by
//! [`Span`], so a batch of any size crosses the sandbox boundary in a few
//! allocations. Building input batches and reading them lives here too; a
//! guest's output batch is checked in `weir-engine` before it is read.

use crate::failure::{FailureKind, RecordFailure};

/// A range of a batch's `data` (or, for a record's headers, of its header
/// list).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Span {
    pub start: u32,
    pub len: u32,
}

impl Span {
    pub const EMPTY: Span = Span { start: 0, len: 0 };

    #[inline]
    pub fn range(self) -> std::ops::Range<usize> {
        self.start as usize..self.start as usize + self.len as usize
    }

    /// The bytes of this span in `data`, or `None` if it lies outside.
    #[inline]
    pub fn get(self, data: &[u8]) -> Option<&[u8]> {
        data.get(self.start as usize..(self.start as usize).checked_add(self.len as usize)?)
    }
}

/// A Kafka record header: a UTF-8 name and an optional value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub name: Span,
    pub value: Option<Span>,
}

/// One consumed record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InputRecord {
    pub offset: i64,
    pub timestamp: i64,
    pub key: Option<Span>,
    pub value: Option<Span>,
    /// A range of the batch's `headers`.
    pub headers: Span,
}

/// Records of one topic-partition, in offset order.
#[derive(Clone, Debug, PartialEq)]
pub struct InputBatch {
    pub topic: String,
    pub partition: i32,
    pub data: Vec<u8>,
    pub records: Vec<InputRecord>,
    pub headers: Vec<Header>,
}

/// One record to produce.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct OutputRecord {
    /// Index of what the record derives from (an input record, or a window
    /// result).
    pub source: u32,
    /// Index into the batch's `topics`; none: the default output topic.
    pub topic: Option<u32>,
    pub key: Option<Span>,
    pub value: Option<Span>,
    /// A range of the batch's `headers`.
    pub headers: Span,
    /// Event time in ms; none keeps the source's.
    pub timestamp: Option<i64>,
}

/// A source record the transform refused.
#[derive(Clone, Debug, PartialEq)]
pub struct Reject {
    pub source: u32,
    pub message: String,
}

/// A value handed to a windowed aggregation.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct WindowAdd {
    /// Window id given by the definition.
    pub window: u32,
    /// Index of the input record the addition belongs to.
    pub source: u32,
    pub key: Span,
    pub timestamp: i64,
    pub number: f64,
    pub custom: Option<Span>,
}

/// Everything a call produced.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct OutputBatch {
    pub data: Vec<u8>,
    pub records: Vec<OutputRecord>,
    pub headers: Vec<Header>,
    pub topics: Vec<String>,
    pub rejects: Vec<Reject>,
    pub window_adds: Vec<WindowAdd>,
}

/// Appends records of one topic-partition to a columnar [`InputBatch`].
pub struct BatchBuilder {
    batch: InputBatch,
    /// Records that cannot be given to a transform, and why.
    invalid: Vec<RecordFailure>,
}

impl BatchBuilder {
    pub fn new(topic: &str, partition: i32) -> Self {
        Self::with_capacity(topic, partition, 0, 0)
    }

    /// A builder with room for `records` records of `data_bytes` bytes in
    /// all before it grows.
    pub fn with_capacity(topic: &str, partition: i32, records: usize, data_bytes: usize) -> Self {
        BatchBuilder {
            batch: InputBatch {
                topic: topic.to_owned(),
                partition,
                data: Vec::with_capacity(data_bytes),
                records: Vec::with_capacity(records),
                headers: Vec::new(),
            },
            invalid: Vec::new(),
        }
    }

    /// Bytes of keys, values and headers held (without the entries
    /// describing them).
    pub fn data_bytes(&self) -> usize {
        self.batch.data.len()
    }

    /// The builder [`finish_checked`](Self::finish_checked) took apart.
    pub fn from_parts(batch: InputBatch, invalid: Vec<RecordFailure>) -> Self {
        BatchBuilder { batch, invalid }
    }

    #[inline]
    fn bytes(&mut self, b: &[u8]) -> Span {
        let start = self.batch.data.len() as u32;
        self.batch.data.extend_from_slice(b);
        Span {
            start,
            len: b.len() as u32,
        }
    }

    pub fn push<'h>(
        &mut self,
        offset: i64,
        timestamp: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: impl IntoIterator<Item = (&'h str, Option<&'h [u8]>)>,
    ) {
        self.push_bytes(
            offset,
            timestamp,
            key,
            value,
            headers.into_iter().map(|(n, v)| (n.as_bytes(), v)),
        );
    }

    /// [`push`](Self::push) for a record as consumed: header names are
    /// bytes, and a record whose name is not UTF-8 (the world promises
    /// UTF-8) is kept with the name decoded lossily and marked invalid, to
    /// go to the failure policy instead of the transform.
    pub fn push_bytes<'h>(
        &mut self,
        offset: i64,
        timestamp: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: impl IntoIterator<Item = (&'h [u8], Option<&'h [u8]>)>,
    ) {
        let key = key.map(|k| self.bytes(k));
        let value = value.map(|v| self.bytes(v));
        let first = self.batch.headers.len() as u32;
        let mut invalid = None;
        for (i, (name, v)) in headers.into_iter().enumerate() {
            let name = match std::str::from_utf8(name) {
                Ok(_) => self.bytes(name),
                Err(_) => {
                    invalid.get_or_insert_with(|| {
                        format!("header #{i}'s name is not UTF-8 (bytes {}); transforms get UTF-8 header names", hex::encode(&name[..name.len().min(32)]))
                    });
                    self.bytes(String::from_utf8_lossy(name).as_bytes())
                }
            };
            let value = v.map(|v| self.bytes(v));
            self.batch.headers.push(Header { name, value });
        }
        let headers = Span {
            start: first,
            len: self.batch.headers.len() as u32 - first,
        };
        let index = self.batch.records.len() as u32;
        self.batch.records.push(InputRecord {
            offset,
            timestamp,
            key,
            value,
            headers,
        });
        if let Some(message) = invalid {
            self.mark_invalid(index, message);
        }
    }

    /// Marks the record at `index` as one no transform may see.
    pub fn mark_invalid(&mut self, index: u32, message: String) {
        self.invalid.push(RecordFailure {
            index,
            kind: FailureKind::InvalidInput,
            message,
        });
    }

    #[inline]
    pub fn len(&self) -> usize {
        self.batch.records.len()
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.batch.records.is_empty()
    }

    /// Bytes the batch holds: keys, values and headers, and the entries
    /// describing them (an empty header costs 20 bytes held for 2 on the
    /// wire, so entries count).
    #[inline]
    pub fn held_bytes(&self) -> usize {
        self.batch.data.len()
            + self.batch.records.len() * size_of::<InputRecord>()
            + self.batch.headers.len() * size_of::<Header>()
    }

    pub fn topic(&self) -> &str {
        &self.batch.topic
    }

    /// The timestamp of record `i`.
    #[inline]
    pub fn timestamp(&self, i: usize) -> i64 {
        self.batch.records[i].timestamp
    }

    /// Whether record `i` is marked as one no transform may see.
    pub fn is_invalid(&self, i: usize) -> bool {
        self.invalid
            .binary_search_by_key(&(i as u32), |f| f.index)
            .is_ok()
    }

    /// A builder of records `range` of this one (their bytes copied), with
    /// their invalid marks.
    pub fn copy_range(&self, range: std::ops::Range<usize>) -> BatchBuilder {
        let mut b = BatchBuilder::new(&self.batch.topic, self.batch.partition);
        let from = self
            .invalid
            .partition_point(|f| (f.index as usize) < range.start);
        let to = self
            .invalid
            .partition_point(|f| (f.index as usize) < range.end);
        let batch = &self.batch;
        for i in range.clone() {
            let r = &batch.records[i];
            let headers = batch.headers[r.headers.range()].iter().map(|h| {
                (
                    &batch.data[h.name.range()],
                    h.value.map(|v| &batch.data[v.range()]),
                )
            });
            b.push_bytes(r.offset, r.timestamp, batch.key(i), batch.value(i), headers);
        }
        // Names were made UTF-8 when first pushed: the marks come from here.
        b.invalid = self.invalid[from..to]
            .iter()
            .map(|f| RecordFailure {
                index: f.index - range.start as u32,
                ..f.clone()
            })
            .collect();
        b
    }

    pub fn finish(self) -> InputBatch {
        self.batch
    }

    /// The batch and its invalid records (in index order).
    pub fn finish_checked(self) -> (InputBatch, Vec<RecordFailure>) {
        (self.batch, self.invalid)
    }
}

/// Read access to the records of an input batch.
impl InputBatch {
    #[inline]
    pub fn key(&self, i: usize) -> Option<&[u8]> {
        self.records[i].key.map(|s| &self.data[s.range()])
    }

    #[inline]
    pub fn value(&self, i: usize) -> Option<&[u8]> {
        self.records[i].value.map(|s| &self.data[s.range()])
    }

    #[inline]
    pub fn headers(&self, i: usize) -> impl Iterator<Item = (&str, Option<&[u8]>)> {
        self.headers[self.records[i].headers.range()]
            .iter()
            .map(|h| {
                (
                    std::str::from_utf8(&self.data[h.name.range()]).unwrap_or(""),
                    h.value.map(|v| &self.data[v.range()]),
                )
            })
    }

    /// A batch of the records at `indices` (in that order).
    pub fn select(&self, indices: &[u32]) -> InputBatch {
        let mut b = BatchBuilder::new(&self.topic, self.partition);
        for &i in indices {
            let i = i as usize;
            let r = &self.records[i];
            b.push(
                r.offset,
                r.timestamp,
                self.key(i),
                self.value(i),
                self.headers(i),
            );
        }
        b.finish()
    }
}

/// Longest reject or error message kept: a dead letter's header carries
/// it.
pub const MAX_MESSAGE_BYTES: usize = 4096;

/// `s` cut to at most `max` bytes, at a character boundary.
#[inline]
pub fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copied_range_keeps_its_records_and_their_invalid_marks() {
        let mut b = BatchBuilder::new("t", 3);
        for i in 0..5i64 {
            let name = if i == 3 {
                b"\xff".as_slice()
            } else {
                b"h".as_slice()
            };
            b.push_bytes(
                i + 10,
                i * 100,
                Some(format!("k{i}").as_bytes()),
                None,
                [(name, Some(b"v".as_slice()))],
            );
        }
        b.mark_invalid(4, "too far ahead".into());
        assert!(b.is_invalid(3) && b.is_invalid(4) && !b.is_invalid(2));
        let (copy, invalid) = b.copy_range(2..5).finish_checked();
        assert_eq!((copy.topic.as_str(), copy.partition), ("t", 3));
        assert_eq!(
            copy.records
                .iter()
                .map(|r| (r.offset, r.timestamp))
                .collect::<Vec<_>>(),
            [(12, 200), (13, 300), (14, 400)]
        );
        assert_eq!(copy.key(0), Some(b"k2".as_slice()));
        assert_eq!(
            copy.headers(2).collect::<Vec<_>>(),
            [("h", Some(b"v".as_slice()))]
        );
        assert_eq!(invalid.iter().map(|f| f.index).collect::<Vec<_>>(), [1, 2]);
        assert!(
            invalid[0].message.contains("not UTF-8"),
            "{}",
            invalid[0].message
        );
    }
}
