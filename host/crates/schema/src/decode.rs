//! Decoding a batch's keys and values into what a transform reads (JSON
//! text for registry formats) before it runs.

use std::sync::Arc;

use anyhow::{Result, bail};
use weir_abi::codec::{Decoded, Part, RecordDecoding};
use weir_abi::{FailureKind, Header, InputBatch, InputRecord, RecordFailure, Span};

use crate::avro::AvroSchema;
use crate::format::{Format, Formats, PartFormat, SubjectNaming};
use crate::registry::{Lookup, Parsed, Registered, Schemas};
use crate::wire;

/// Headers a decoded record carries for each registry-decoded part: the
/// writer's schema id (decimal text) and the subject it is registered
/// under, e.g. `weir.value.schema-id`.
pub fn metadata_headers(part: Part) -> [&'static str; 2] {
    match part {
        Part::Key => ["weir.key.schema-id", "weir.key.subject"],
        Part::Value => ["weir.value.schema-id", "weir.value.subject"],
    }
}

/// Bytes a decoded batch may hold: what 32-bit spans reach, less room for
/// one more record's metadata.
const MAX_DECODED_BATCH: usize = u32::MAX as usize - (1 << 20);

/// Turns a deployment's input records into what its transform reads.
pub struct InputCodec {
    key: Decoder,
    value: Decoder,
    naming: SubjectNaming,
    registry: Option<Arc<dyn Schemas>>,
}

enum Decoder {
    Bytes,
    String,
    Json,
    /// A registry format: the record's schema id names the schema.
    Registry {
        format: Format,
        /// Avro's reader schema.
        reader: Option<Box<AvroSchema>>,
    },
}

impl InputCodec {
    /// The decoder of `formats`' inputs, or none if records go in as they
    /// are. Fails if a registry format has no registry.
    pub fn new(
        formats: &Formats,
        registry: Option<&Arc<dyn Schemas>>,
    ) -> Result<Option<InputCodec>> {
        let decoder = |part: &PartFormat| -> Result<Decoder> {
            Ok(match part.format {
                Format::Bytes => Decoder::Bytes,
                Format::String => Decoder::String,
                Format::Json => Decoder::Json,
                format @ (Format::Avro | Format::Protobuf | Format::JsonSchema) => {
                    Decoder::Registry {
                        format,
                        reader: part
                            .schema
                            .as_deref()
                            .filter(|_| format == Format::Avro)
                            .map(|s| AvroSchema::parse(s).map(Box::new))
                            .transpose()
                            .map_err(anyhow::Error::msg)?,
                    }
                }
            })
        };
        let (key, value) = (decoder(&formats.key)?, decoder(&formats.value)?);
        if matches!((&key, &value), (Decoder::Bytes, Decoder::Bytes)) {
            return Ok(None);
        }
        let needs = formats.key.format.uses_registry() || formats.value.format.uses_registry();
        if needs && registry.is_none() {
            bail!(
                "the deployment's formats need a schema registry, and the host has no `[schema_registry]`"
            );
        }
        Ok(Some(InputCodec {
            key,
            value,
            naming: formats.subject_naming,
            registry: registry.cloned(),
        }))
    }

    /// One value of `topic` as its transform would read it, if it decodes
    /// now (its schema at hand).
    pub fn decode_value(&self, topic: &str, value: &[u8]) -> Option<Vec<u8>> {
        if matches!(self.value, Decoder::Bytes) {
            return None;
        }
        let mut out = Vec::new();
        self.decode_part(&self.value, Part::Value, topic, value, &mut out, &mut None)
            .ok()
            .map(|_| out)
    }

    /// Decodes `batch`; records that do not decode join `invalid`.
    fn decode_batch(&self, batch: &InputBatch, invalid: &[RecordFailure]) -> Decoded {
        let mut out = InputBatch {
            topic: batch.topic.clone(),
            partition: batch.partition,
            data: Vec::with_capacity(batch.data.len() + batch.data.len() / 2),
            records: Vec::with_capacity(batch.records.len()),
            headers: Vec::with_capacity(batch.headers.len()),
        };
        let mut failures = Vec::new();
        let mut waiting = None;
        // The schema the last record had: most records of a batch share one.
        let mut last = None;
        for (i, r) in batch.records.iter().enumerate() {
            let index = i as u32;
            let copy = |bytes: &[u8], data: &mut Vec<u8>| {
                let start = data.len() as u32;
                data.extend_from_slice(bytes);
                Span {
                    start,
                    len: bytes.len() as u32,
                }
            };
            let mut record = InputRecord {
                offset: r.offset,
                timestamp: r.timestamp,
                key: None,
                value: None,
                headers: Span::EMPTY,
            };
            let first_header = out.headers.len() as u32;
            for h in &batch.headers[r.headers.range()] {
                let name = copy(&batch.data[h.name.range()], &mut out.data);
                let value = h.value.map(|v| copy(&batch.data[v.range()], &mut out.data));
                out.headers.push(Header { name, value });
            }
            let already = invalid.binary_search_by_key(&index, |f| f.index).is_ok();
            let mut failed = None;
            for (part, decoder, span) in [
                (Part::Key, &self.key, r.key),
                (Part::Value, &self.value, r.value),
            ] {
                let Some(span) = span else { continue };
                let bytes = &batch.data[span.range()];
                if already || failed.is_some() {
                    let copied = Some(copy(bytes, &mut out.data));
                    match part {
                        Part::Key => record.key = copied,
                        Part::Value => record.value = copied,
                    }
                    continue;
                }
                let start = out.data.len();
                let mut decoded =
                    self.decode_part(decoder, part, &batch.topic, bytes, &mut out.data, &mut last);
                // Spans are 32-bit: a batch that decodes past 4 GiB (a
                // host's batch limit of over 60 MiB) fails its records
                // from there on rather than wrap.
                if decoded.is_ok() && out.data.len() > MAX_DECODED_BATCH {
                    decoded = Err(Problem::Bad("its batch decodes past 4 GiB".into()));
                }
                match decoded {
                    Ok(meta) => {
                        let decoded = Some(Span {
                            start: start as u32,
                            len: (out.data.len() - start) as u32,
                        });
                        match part {
                            Part::Key => record.key = decoded,
                            Part::Value => record.value = decoded,
                        }
                        if let Some((id, subject)) = meta {
                            let [id_name, subject_name] = metadata_headers(part);
                            for (name, value) in
                                [(id_name, id.to_string()), (subject_name, subject)]
                            {
                                let name = copy(name.as_bytes(), &mut out.data);
                                let value = Some(copy(value.as_bytes(), &mut out.data));
                                out.headers.push(Header { name, value });
                            }
                        }
                    }
                    Err(Problem::Bad(why)) => {
                        out.data.truncate(start);
                        let copied = Some(copy(bytes, &mut out.data));
                        match part {
                            Part::Key => record.key = copied,
                            Part::Value => record.value = copied,
                        }
                        failed = Some(format!("its {}: {why}", part.as_str()));
                    }
                    Err(Problem::Waiting(why)) => {
                        waiting = Some((index, why));
                        break;
                    }
                }
            }
            if waiting.is_some() {
                // Every unknown id of the batch is asked for now, so the
                // wait is the batch's, not one per record (a producer of
                // made-up ids would otherwise hold the partition a second
                // a record).
                self.ask_ahead(batch, i + 1);
                break;
            }
            record.headers = Span {
                start: first_header,
                len: out.headers.len() as u32 - first_header,
            };
            out.records.push(record);
            if let Some(message) = failed {
                failures.push(RecordFailure {
                    index,
                    kind: FailureKind::Decode,
                    message,
                });
            }
        }
        let end = out.records.len() as u32;
        let mut invalid: Vec<RecordFailure> = invalid
            .iter()
            .filter(|f| f.index < end)
            .cloned()
            .chain(failures)
            .collect();
        invalid.sort_by_key(|f| f.index);
        // One failure a record: the batch's own comes first.
        invalid.dedup_by_key(|f| f.index);
        Decoded {
            batch: out,
            invalid,
            waiting,
        }
    }

    /// Asks the registry for the schemas of `batch`'s records from `from`
    /// on (a bounded number of distinct ids).
    fn ask_ahead(&self, batch: &InputBatch, from: usize) {
        const MAX_ASKED: usize = 256;
        let Some(registry) = &self.registry else {
            return;
        };
        let mut asked = std::collections::HashSet::new();
        for r in batch.records.iter().skip(from) {
            for (decoder, span) in [(&self.key, r.key), (&self.value, r.value)] {
                let (Decoder::Registry { .. }, Some(span)) = (decoder, span) else {
                    continue;
                };
                if let Ok((id, _)) = wire::split(&batch.data[span.range()])
                    && asked.len() < MAX_ASKED
                    && asked.insert(id)
                {
                    registry.lookup(id);
                }
            }
        }
    }

    /// Appends the decoded form of one key or value to `data`; returns the
    /// schema id and subject for a registry format.
    fn decode_part(
        &self,
        decoder: &Decoder,
        part: Part,
        topic: &str,
        bytes: &[u8],
        data: &mut Vec<u8>,
        last: &mut Option<Arc<Registered>>,
    ) -> Result<Option<(u32, String)>, Problem> {
        match decoder {
            Decoder::Bytes => {
                data.extend_from_slice(bytes);
                Ok(None)
            }
            Decoder::String => {
                std::str::from_utf8(bytes)
                    .map_err(|e| Problem::Bad(format!("not UTF-8 text: {e}")))?;
                data.extend_from_slice(bytes);
                Ok(None)
            }
            Decoder::Json => {
                serde_json::from_slice::<serde::de::IgnoredAny>(bytes)
                    .map_err(|e| Problem::Bad(format!("not JSON: {e}")))?;
                data.extend_from_slice(bytes);
                Ok(None)
            }
            Decoder::Registry { format, reader } => {
                let (id, payload) = wire::split(bytes).map_err(Problem::Bad)?;
                let registry = self.registry.as_ref().expect("checked in `new`");
                let lookup = match last.as_ref() {
                    Some(s) if s.id == id => Lookup::Found(s.clone()),
                    _ => registry.lookup(id),
                };
                let schema = match lookup {
                    Lookup::Found(s) => s,
                    Lookup::Unusable(why) => return Err(Problem::Bad(why)),
                    Lookup::Waiting(why) => {
                        return Err(Problem::Waiting(match why {
                            Some(why) => format!("waiting for schema {id}: {why}"),
                            None => format!("waiting for schema {id} from the schema registry"),
                        }));
                    }
                };
                let Some(subject) = schema
                    .subjects
                    .iter()
                    .find(|s| self.naming.allows(s, topic, part))
                else {
                    if registry.refetch(id, topic) {
                        return Err(Problem::Waiting(format!(
                            "waiting for schema {id}'s subjects from the schema registry"
                        )));
                    }
                    // Which subjects it is under is another topic's business.
                    return Err(Problem::Bad(format!(
                        "schema {id} is not registered under a subject of topic `{topic}`'s {}",
                        part.as_str()
                    )));
                };
                let parsed = schema
                    .parsed
                    .as_ref()
                    .map_err(|e| Problem::Bad(e.clone()))?;
                let decoded = match (format, parsed) {
                    (Format::Avro, Parsed::Avro(s)) => {
                        s.decode_json(payload, reader.as_deref(), data)
                    }
                    (Format::Protobuf, Parsed::Protobuf(s)) => s.decode_json(payload, data),
                    (Format::JsonSchema, Parsed::Json(s)) => {
                        s.check(payload).map(|()| data.extend_from_slice(payload))
                    }
                    (format, parsed) => Err(format!(
                        "it is written with a {} schema, and the deployment reads {format:?}",
                        parsed.kind()
                    )),
                };
                decoded.map_err(|e| Problem::Bad(format!("schema {id}: {e}")))?;
                let subject = subject.clone();
                *last = Some(schema);
                Ok(Some((id, subject)))
            }
        }
    }
}

impl RecordDecoding for InputCodec {
    fn decode(&self, batch: &InputBatch, invalid: &[RecordFailure]) -> Decoded {
        self.decode_batch(batch, invalid)
    }
}

enum Problem {
    /// The record's fault.
    Bad(String),
    /// The registry's: try again later.
    Waiting(String),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::files::SchemaFiles;
    use parking_lot::Mutex;

    const ORDER: &str =
        r#"{"type":"record","name":"Order","fields":[{"name":"id","type":"long"}]}"#;

    fn avro_in() -> Formats {
        Formats {
            value: PartFormat {
                format: Format::Avro,
                ..PartFormat::default()
            },
            ..Formats::default()
        }
    }

    /// Records of topic `t` with these values.
    fn batch(values: &[&[u8]]) -> InputBatch {
        let mut b = weir_abi::BatchBuilder::new("t", 0);
        for (i, v) in values.iter().enumerate() {
            b.push(i as i64, 0, None, Some(v), std::iter::empty());
        }
        b.finish()
    }

    fn framed(id: u32, json: &str) -> Vec<u8> {
        let mut out = Vec::new();
        wire::frame(id, &mut out);
        crate::avro::AvroSchema::parse(ORDER)
            .unwrap()
            .encode_json(json.as_bytes(), &mut out)
            .unwrap();
        out
    }

    #[test]
    fn a_bad_record_fails_alone_and_the_rest_decode_with_their_metadata() {
        let files: Arc<dyn Schemas> = Arc::new(
            SchemaFiles::new(&[
                ("t-value".into(), "AVRO", ORDER.into()),
                ("u-value".into(), "AVRO", ORDER.into()),
            ])
            .unwrap(),
        );
        let codec = InputCodec::new(&avro_in(), Some(&files)).unwrap().unwrap();
        let good = framed(1, r#"{"id":7}"#);
        let other_topics = framed(2, r#"{"id":8}"#);
        let d = codec.decode(&batch(&[&good, b"\x01junk", &other_topics, &good]), &[]);
        assert!(d.waiting.is_none());
        assert_eq!(d.batch.records.len(), 4, "indexes are kept");
        let failed: Vec<_> = d.invalid.iter().map(|f| (f.index, f.kind)).collect();
        assert_eq!(failed, [(1, FailureKind::Decode), (2, FailureKind::Decode)]);
        assert!(
            d.invalid[1]
                .message
                .contains("not registered under a subject of topic `t`"),
            "{}",
            d.invalid[1].message
        );
        let r = d.batch.records[3];
        assert_eq!(&d.batch.data[r.value.unwrap().range()], br#"{"id":7}"#);
        let headers: Vec<_> = d.batch.headers[r.headers.range()]
            .iter()
            .map(|h| String::from_utf8_lossy(&d.batch.data[h.value.unwrap().range()]).into_owned())
            .collect();
        assert_eq!(headers, ["1", "t-value"]);
    }

    /// A registry that has nothing yet, and remembers what it was asked.
    #[derive(Default)]
    struct Away(Mutex<Vec<u32>>);

    impl Schemas for Away {
        fn lookup(&self, id: u32) -> Lookup {
            self.0.lock().push(id);
            Lookup::Waiting(Some("connection refused".into()))
        }
        fn fetch(&self, id: u32) -> Result<Arc<Registered>> {
            bail!("no schema {id}")
        }
        fn register(&self, _: &str, _: &Parsed, _: &str, _: bool) -> Result<u32> {
            bail!("away")
        }
        fn latest(&self, _: &str) -> Result<u32> {
            bail!("away")
        }
    }

    #[test]
    fn records_wait_for_an_absent_registry_and_every_id_is_asked_for_at_once() {
        let away = Arc::new(Away::default());
        let schemas: Arc<dyn Schemas> = away.clone();
        let codec = InputCodec::new(&avro_in(), Some(&schemas))
            .unwrap()
            .unwrap();
        let d = codec.decode(
            &batch(&[
                b"plain",
                &framed(5, r#"{"id":1}"#),
                &framed(6, r#"{"id":2}"#),
                &framed(5, r#"{"id":3}"#),
            ]),
            &[],
        );
        let (index, why) = d.waiting.unwrap();
        assert_eq!(index, 1);
        assert!(
            why.contains("schema 5") && why.contains("connection refused"),
            "{why}"
        );
        // The record before it is there (and failed: it is not framed).
        assert_eq!(d.batch.records.len(), 1);
        assert_eq!(d.invalid.len(), 1);
        let mut asked = away.0.lock().clone();
        asked.sort();
        assert_eq!(
            asked,
            [5, 5, 6],
            "the waiting record's, then each later id once"
        );
    }
}
