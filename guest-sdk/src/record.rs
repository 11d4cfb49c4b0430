use crate::bindings::weir::transform::types::{InputBatch, Span};

/// Sizes of the packed entries and the packed `none` (see `wit/0.2/types.wit`).
pub(crate) const RECORD: usize = 40;
pub(crate) const HEADER: usize = 16;
pub(crate) const NONE: u32 = u32::MAX;

pub(crate) fn slice(data: &[u8], span: Span) -> &[u8] {
    &data[span.start as usize..(span.start + span.len) as usize]
}

#[inline]
fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("a 4-byte slice"))
}

#[inline]
fn i64_at(b: &[u8], at: usize) -> i64 {
    i64::from_le_bytes(b[at..at + 8].try_into().expect("an 8-byte slice"))
}

/// The bytes a packed (start, len) pair at `at` of `entry` names in `data`.
#[inline]
fn bytes_at<'a>(data: &'a [u8], entry: &[u8], at: usize) -> Option<&'a [u8]> {
    let len = u32_at(entry, at + 4);
    (len != NONE).then(|| {
        let start = u32_at(entry, at) as usize;
        &data[start..start + len as usize]
    })
}

/// One input record, borrowing its bytes from the batch the host passed in.
#[derive(Clone, Copy)]
pub struct Record<'a> {
    batch: &'a InputBatch,
    /// This record's packed entry in `batch.records`.
    entry: &'a [u8],
}

impl<'a> Record<'a> {
    pub(crate) fn new(batch: &'a InputBatch, index: usize) -> Self {
        Record {
            batch,
            entry: &batch.records[index * RECORD..(index + 1) * RECORD],
        }
    }

    /// The key; `None` for a null key.
    pub fn key(&self) -> Option<&'a [u8]> {
        bytes_at(&self.batch.data, self.entry, 16)
    }

    /// The value; `None` for a null value (a tombstone).
    pub fn value(&self) -> Option<&'a [u8]> {
        bytes_at(&self.batch.data, self.entry, 24)
    }

    /// The key as UTF-8 text, if it is present and valid UTF-8.
    pub fn key_str(&self) -> Option<&'a str> {
        self.key().and_then(|k| std::str::from_utf8(k).ok())
    }

    /// The value as UTF-8 text, if it is present and valid UTF-8.
    pub fn value_str(&self) -> Option<&'a str> {
        self.value().and_then(|v| std::str::from_utf8(v).ok())
    }

    /// The value parsed as JSON; a missing value or invalid JSON is an error
    /// that rejects the record when returned with `?`.
    pub fn value_json<T: serde::Deserialize<'a>>(&self) -> Result<T, crate::Error> {
        let value = self
            .value()
            .ok_or_else(|| crate::Error::reject("record has no value"))?;
        Ok(serde_json::from_slice(value)?)
    }

    /// Event time in milliseconds since the Unix epoch.
    pub fn timestamp(&self) -> i64 {
        i64_at(self.entry, 8)
    }

    pub fn offset(&self) -> i64 {
        i64_at(self.entry, 0)
    }

    pub fn topic(&self) -> &'a str {
        &self.batch.topic
    }

    pub fn partition(&self) -> i32 {
        self.batch.partition
    }

    pub fn headers(&self) -> Headers<'a> {
        let (first, count) = (
            u32_at(self.entry, 32) as usize,
            u32_at(self.entry, 36) as usize,
        );
        Headers {
            data: &self.batch.data,
            headers: &self.batch.headers[first * HEADER..(first + count) * HEADER],
        }
    }

    /// The value of the first header called `name`. `Some(None)` is a
    /// header with a null value.
    pub fn header(&self, name: &str) -> Option<Option<&'a [u8]>> {
        self.headers().find(|(n, _)| *n == name).map(|(_, v)| v)
    }
}

/// A record's headers in order: `(name, value)`, with `None` for a null value.
#[derive(Clone)]
pub struct Headers<'a> {
    data: &'a [u8],
    /// Packed header entries.
    headers: &'a [u8],
}

impl<'a> Iterator for Headers<'a> {
    type Item = (&'a str, Option<&'a [u8]>);

    fn next(&mut self) -> Option<Self::Item> {
        if self.headers.is_empty() {
            return None;
        }
        let (entry, rest) = self.headers.split_at(HEADER);
        self.headers = rest;
        let name = std::str::from_utf8(bytes_at(self.data, entry, 0).unwrap_or_default())
            .unwrap_or_default();
        Some((name, bytes_at(self.data, entry, 8)))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.headers.len() / HEADER;
        (n, Some(n))
    }
}

impl ExactSizeIterator for Headers<'_> {}
