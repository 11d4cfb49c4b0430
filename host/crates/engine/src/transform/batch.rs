//! The columnar batches that cross the sandbox boundary: building input
//! batches, and checking and reading the output batches a guest returns
//! (a guest is never trusted to return well-formed spans).

use std::collections::BTreeMap;

use super::TransformSpec;
use super::budget::HostBudget;
use weir_abi::codec::Part;
use weir_abi::{CallFailure, FailureKind, MAX_MESSAGE_BYTES, truncate};
use weir_abi::{Header, OutputBatch, Span};

/// Charges `budget` for an output batch the host now holds.
pub fn charge_taken(out: &OutputBatch, budget: &mut HostBudget) -> Result<(), CallFailure> {
    let strings: usize = out
        .topics
        .iter()
        .map(String::len)
        .chain(out.rejects.iter().map(|r| r.message.len()))
        .sum();
    let bytes = out.data.len()
        + out.records.len() * size_of::<weir_abi::OutputRecord>()
        + out.headers.len() * size_of::<Header>()
        + out.window_adds.len() * size_of::<weir_abi::WindowAdd>()
        + (out.topics.len() + out.rejects.len()) * size_of::<String>()
        + strings;
    budget.charge(bytes as u64, "the output batch")
}

/// Cuts reject messages to [`MAX_MESSAGE_BYTES`].
pub fn cut_messages(mut out: OutputBatch) -> OutputBatch {
    for r in &mut out.rejects {
        if r.message.len() > MAX_MESSAGE_BYTES {
            r.message = truncate(&r.message, MAX_MESSAGE_BYTES).to_owned();
        }
    }
    out
}

/// What an output's `source` index stands for.
#[derive(Clone, Copy, Debug)]
pub struct Origin {
    /// The input record (index in the dispatched batch), if any: window
    /// results closed by idle time or a final flush have none.
    pub input: Option<u32>,
    /// Timestamp for outputs that set none.
    pub timestamp: i64,
}

/// A checked output batch of one call.
pub struct Produced {
    pub(crate) batch: OutputBatch,
    pub(crate) origins: Vec<Origin>,
}

/// One output record, borrowed from its batch.
pub struct OutRecord<'a> {
    pub input: Option<u32>,
    /// `None` for the deployment's default output topic.
    pub topic: Option<&'a str>,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    pub timestamp: i64,
    headers: &'a [Header],
    data: &'a [u8],
}

impl<'a> OutRecord<'a> {
    #[inline]
    pub fn headers(&self) -> impl Iterator<Item = (&'a str, Option<&'a [u8]>)> + 'a {
        let data = self.data;
        // Header names were checked to be UTF-8 when the batch was accepted.
        self.headers.iter().map(move |h| {
            (
                std::str::from_utf8(&data[h.name.range()]).unwrap_or(""),
                h.value.map(|v| &data[v.range()]),
            )
        })
    }

    /// Bytes of key, value and headers.
    #[inline]
    pub fn size(&self) -> usize {
        self.key.map_or(0, <[u8]>::len)
            + self.value.map_or(0, <[u8]>::len)
            + self
                .headers
                .iter()
                .map(|h| h.name.len as usize + h.value.map_or(0, |v| v.len as usize))
                .sum::<usize>()
    }
}

impl Produced {
    #[inline]
    pub fn records(&self) -> impl Iterator<Item = OutRecord<'_>> {
        let b = &self.batch;
        b.records.iter().map(move |r| {
            let origin = self.origins[r.source as usize];
            OutRecord {
                input: origin.input,
                topic: r.topic.map(|t| b.topics[t as usize].as_str()),
                key: r.key.map(|s| &b.data[s.range()]),
                value: r.value.map(|s| &b.data[s.range()]),
                timestamp: r.timestamp.unwrap_or(origin.timestamp),
                headers: &b.headers[r.headers.range()],
                data: &b.data,
            }
        })
    }

    #[inline]
    pub fn len(&self) -> usize {
        self.batch.records.len()
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.batch.records.is_empty()
    }
}

/// Per-source problems found in an output batch.
pub type SourceFailures = BTreeMap<u32, (FailureKind, String)>;

/// Checks a returned batch against its `sources` count and the
/// deployment's limits, charging `budget` for the output records the host
/// will hold until they are produced. A malformed batch is an error for the
/// whole call; rejections and per-record limit breaches are returned per
/// source.
///
/// Linear in the batch: a header list shared by every output record is
/// walked once per record, but each walk is paid for from the budget
/// before it is made.
pub fn check(
    out: &OutputBatch,
    sources: usize,
    spec: &TransformSpec,
    budget: &mut HostBudget,
) -> Result<SourceFailures, CallFailure> {
    let invalid = |why: &str| CallFailure::new(FailureKind::InvalidOutput, why.to_owned());
    let data = out.data.as_slice();
    let span_ok = |s: Span| s.get(data).is_some();
    // Each named topic is judged once, however many outputs use it.
    let topic_verdicts: Vec<Option<(FailureKind, String)>> = out
        .topics
        .iter()
        .map(|t| match (topic_name_error(t), &spec.topic_policy) {
            (Some(why), _) => Some((FailureKind::TopicDenied, why)),
            (None, Some(policy)) => policy(t).err().map(|why| (FailureKind::TopicDenied, why)),
            (None, None) => None,
        })
        .collect();
    for h in &out.headers {
        let name = h
            .name
            .get(data)
            .ok_or_else(|| invalid("a header name lies outside the data buffer"))?;
        std::str::from_utf8(name).map_err(|_| invalid("a header name is not UTF-8"))?;
        if !h.value.is_none_or(span_ok) {
            return Err(invalid("a header value lies outside the data buffer"));
        }
    }
    let mut failures = SourceFailures::new();
    for r in &out.rejects {
        if r.source as usize >= sources {
            return Err(invalid(&format!(
                "a rejection names source {} but the call had {sources}",
                r.source
            )));
        }
        failures
            .entry(r.source)
            .or_insert((FailureKind::Rejected, r.message.clone()));
    }
    let limits = &spec.limits;
    let mut previous = 0u32;
    let (mut count, mut bytes) = (0u64, 0u64);
    // Sources over the output count limit, with how many outputs they made.
    let mut too_many: BTreeMap<u32, u64> = BTreeMap::new();
    for r in &out.records {
        if r.source as usize >= sources {
            return Err(invalid(&format!(
                "an output names source {} but the call had {sources}",
                r.source
            )));
        }
        if r.source < previous {
            return Err(invalid(
                "output sources decrease: outputs must follow their sources' order",
            ));
        }
        if r.source != previous {
            (count, bytes) = (0, 0);
            previous = r.source;
        }
        if !(r.key.is_none_or(span_ok) && r.value.is_none_or(span_ok)) {
            return Err(invalid(
                "an output key or value lies outside the data buffer",
            ));
        }
        let headers = out
            .headers
            .get(r.headers.range())
            .ok_or_else(|| invalid("an output's headers lie outside the header list"))?;
        budget.charge(
            weir_abi::record_size(0, 0, std::iter::repeat_n(0, headers.len())),
            "output records",
        )?;
        let verdict = match r.topic {
            Some(t) => topic_verdicts
                .get(t as usize)
                .ok_or_else(|| invalid("an output names a topic index that does not exist"))?
                .as_ref(),
            None => None,
        };
        count += 1;
        let header_bytes: usize = headers
            .iter()
            .map(|h| h.name.len as usize + h.value.map_or(0, |v| v.len as usize))
            .sum();
        let size = r.key.map_or(0, |s| s.len) as u64
            + u64::from(r.value.map_or(0, |s| s.len))
            + header_bytes as u64;
        budget.charge(size, "output records")?;
        bytes += size;
        let framed = weir_abi::record_size(
            r.key.map_or(0, |s| s.len as usize),
            r.value.map_or(0, |s| s.len as usize),
            headers
                .iter()
                .map(|h| h.name.len as usize + h.value.map_or(0, |v| v.len as usize)),
        );
        if count > u64::from(limits.max_outputs_per_record) {
            *too_many.entry(r.source).or_default() = count;
        } else if let Some(limit) = limits.max_output_record_bytes.filter(|&l| framed > l) {
            failures.entry(r.source).or_insert((
                FailureKind::OutputLimit,
                weir_abi::LimitExceeded::RecordBytes {
                    bytes: framed,
                    limit,
                }
                .to_string(),
            ));
        } else if bytes > limits.max_output_bytes_per_record {
            failures.entry(r.source).or_insert((
                FailureKind::OutputLimit,
                weir_abi::LimitExceeded::OutputBytes {
                    bytes,
                    limit: limits.max_output_bytes_per_record,
                }
                .to_string(),
            ));
        }
        if let Some(denied) = verdict {
            failures.entry(r.source).or_insert_with(|| denied.clone());
        }
    }
    for (source, count) in too_many {
        failures.entry(source).or_insert((
            FailureKind::OutputLimit,
            weir_abi::LimitExceeded::Outputs {
                count,
                limit: limits.max_outputs_per_record,
            }
            .to_string(),
        ));
    }
    Ok(failures)
}

/// Why `name` cannot be a Kafka topic (Kafka's own rule: 1 to 249 of
/// `[A-Za-z0-9._-]`, not `.` or `..`), quoting at most its start.
fn topic_name_error(name: &str) -> Option<String> {
    let legal = (1..=249).contains(&name.len())
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    (!legal).then(|| {
        format!(
            "output topic name {:?} ({} bytes) is not a legal Kafka topic name (1 to 249 of letters, digits, `.`, `_` and `-`)",
            truncate(name, 64),
            name.len()
        )
    })
}

/// Rewrites outputs to the default topic into the deployment's output
/// format (`spec.output_encoding`), charging `budget` for the encoded
/// bytes; an output that does not fit fails its source (`encode`).
pub fn encode(
    mut out: OutputBatch,
    mut failures: SourceFailures,
    spec: &TransformSpec,
    budget: &mut HostBudget,
) -> Result<(OutputBatch, SourceFailures), CallFailure> {
    let Some(encoding) = &spec.output_encoding else {
        return Ok((out, failures));
    };
    let parts = [Part::Key, Part::Value].map(|part| (part, encoding.encodes(part)));
    let mut encoded = Vec::new();
    for i in 0..out.records.len() {
        let r = out.records[i];
        let to_default = r.topic.is_none_or(|t| {
            out.topics
                .get(t as usize)
                .is_some_and(|name| name == encoding.topic())
        });
        if !to_default || failures.contains_key(&r.source) {
            continue;
        }
        for (part, encodes) in parts {
            let span = match part {
                Part::Key => r.key,
                Part::Value => r.value,
            };
            let Some(span) = span.filter(|_| encodes) else {
                continue;
            };
            encoded.clear();
            if let Err(why) = encoding.encode(part, &out.data[span.range()], &mut encoded) {
                let part = part.as_str();
                failures
                    .entry(r.source)
                    .or_insert((FailureKind::Encode, format!("an output's {part}: {why}")));
                break;
            }
            budget.charge(encoded.len() as u64, "encoded outputs")?;
            let start = u32::try_from(out.data.len())
                .ok()
                .filter(|s| s.checked_add(encoded.len() as u32).is_some())
                .ok_or_else(|| {
                    CallFailure::new(FailureKind::OutputLimit, "encoded outputs pass 4 GiB")
                })?;
            out.data.extend_from_slice(&encoded);
            let new = Some(Span {
                start,
                len: encoded.len() as u32,
            });
            match part {
                Part::Key => out.records[i].key = new,
                Part::Value => out.records[i].value = new,
            }
        }
    }
    Ok((out, failures))
}

/// Drops the outputs of failed sources.
pub fn without_sources(mut out: OutputBatch, failed: &SourceFailures) -> OutputBatch {
    if !failed.is_empty() {
        out.records.retain(|r| !failed.contains_key(&r.source));
    }
    out
}
