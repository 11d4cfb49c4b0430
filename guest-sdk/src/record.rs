use crate::bindings::weir::transform::types::{Header, InputBatch, InputRecord, Span};

pub(crate) fn slice(data: &[u8], span: Span) -> &[u8] {
    &data[span.start as usize..(span.start + span.len) as usize]
}

/// One input record, borrowing its bytes from the batch the host passed in.
#[derive(Clone, Copy)]
pub struct Record<'a> {
    batch: &'a InputBatch,
    record: &'a InputRecord,
}

impl<'a> Record<'a> {
    pub(crate) fn new(batch: &'a InputBatch, record: &'a InputRecord) -> Self {
        Record { batch, record }
    }

    /// The key; `None` for a null key.
    pub fn key(&self) -> Option<&'a [u8]> {
        self.record.key.map(|s| slice(&self.batch.data, s))
    }

    /// The value; `None` for a null value (a tombstone).
    pub fn value(&self) -> Option<&'a [u8]> {
        self.record.value.map(|s| slice(&self.batch.data, s))
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
        let value = self.value().ok_or_else(|| crate::Error::reject("record has no value"))?;
        Ok(serde_json::from_slice(value)?)
    }

    /// Event time in milliseconds since the Unix epoch.
    pub fn timestamp(&self) -> i64 {
        self.record.timestamp
    }

    pub fn offset(&self) -> i64 {
        self.record.offset
    }

    pub fn topic(&self) -> &'a str {
        &self.batch.topic
    }

    pub fn partition(&self) -> i32 {
        self.batch.partition
    }

    pub fn headers(&self) -> Headers<'a> {
        let span = self.record.headers;
        Headers { data: &self.batch.data, headers: &self.batch.headers[span.start as usize..(span.start + span.len) as usize] }
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
    headers: &'a [Header],
}

impl<'a> Iterator for Headers<'a> {
    type Item = (&'a str, Option<&'a [u8]>);

    fn next(&mut self) -> Option<Self::Item> {
        let (first, rest) = self.headers.split_first()?;
        self.headers = rest;
        let name = std::str::from_utf8(slice(self.data, first.name)).unwrap_or_default();
        Some((name, first.value.map(|v| slice(self.data, v))))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.headers.len(), Some(self.headers.len()))
    }
}

impl ExactSizeIterator for Headers<'_> {}
