//! Encoding what a transform sends to its default output topic in the
//! deployment's output format.

use std::sync::Arc;

use anyhow::{Context, Result, bail};
use weir_abi::codec::{Part, RecordEncoding};

use crate::format::{Format, Formats, PartFormat};
use crate::registry::{Parsed, Schemas};
use crate::wire;

/// Encodes what a transform sends to its default output.
pub struct OutputCodec {
    topic: String,
    key: Encoder,
    value: Encoder,
}

enum Encoder {
    Bytes,
    String,
    Json,
    Registry {
        id: u32,
        schema: Parsed,
        /// Protobuf's message indexes.
        message: Vec<usize>,
    },
}

impl OutputCodec {
    /// The encoder of `formats`' outputs to `topic`, or none if outputs
    /// go out as they are. Registers the output schemas if the formats
    /// say so, so a schema the subject refuses fails the deployment here,
    /// with the registry's reason.
    pub fn new(
        formats: &Formats,
        topic: &str,
        registry: Option<&Arc<dyn Schemas>>,
    ) -> Result<Option<OutputCodec>> {
        let encoder = |part: Part, format_part: &PartFormat| -> Result<Encoder> {
            Ok(match format_part.format {
                Format::Bytes => Encoder::Bytes,
                Format::String => Encoder::String,
                Format::Json => Encoder::Json,
                format @ (Format::Avro | Format::Protobuf | Format::JsonSchema) => {
                    let registry = registry.context(
                        "the deployment's output format needs a schema registry, and the host has no `[schema_registry]`",
                    )?;
                    let what = format!("formats.output_{}", part.as_str());
                    let kind = format.registry_kind().expect("a registry format");
                    let given = match &format_part.schema {
                        Some(text) => Some((
                            Parsed::parse(kind, text)
                                .map_err(|e| anyhow::anyhow!("{what}.schema: {e}"))?,
                            text,
                        )),
                        None => None,
                    };
                    let record = match &given {
                        Some((Parsed::Avro(s), _)) => s.full_name(),
                        _ => None,
                    };
                    let subject = match &format_part.subject {
                        Some(s) => s.clone(),
                        None => formats
                            .subject_naming
                            .subject(topic, part, record.as_deref())
                            .with_context(|| format!("{what}: name the `subject` (the naming strategy needs the record's name, which only an Avro `schema` gives)"))?,
                    };
                    if !formats.subject_naming.allows(&subject, topic, part) {
                        bail!(
                            "{what}: subject `{subject}` is not a subject of topic `{topic}`'s {} under the deployment's subject naming",
                            part.as_str()
                        );
                    }
                    let id = match &given {
                        Some((parsed, text)) => registry
                            .register(&subject, parsed, text, format_part.register)
                            .with_context(|| what.clone())?,
                        None => registry.latest(&subject).with_context(|| what.clone())?,
                    };
                    let registered = registry
                        .fetch(id)
                        .with_context(|| format!("{what}: subject `{subject}`"))?;
                    // The registry's parse of it: the same schema, whether given or the latest.
                    let schema = registered
                        .parsed
                        .clone()
                        .map_err(|e| anyhow::anyhow!("{what}: subject `{subject}`: {e}"))?;
                    if schema.kind() != kind {
                        bail!(
                            "{what}: subject `{subject}` holds a {} schema, not {kind}",
                            schema.kind()
                        );
                    }
                    let message = match &schema {
                        Parsed::Protobuf(p) => p
                            .indexes_of(format_part.message.as_deref())
                            .map_err(|e| anyhow::anyhow!("{what}: {e}"))?,
                        _ => Vec::new(),
                    };
                    Encoder::Registry {
                        id,
                        schema,
                        message,
                    }
                }
            })
        };
        let key = encoder(Part::Key, &formats.output_key)?;
        let value = encoder(Part::Value, &formats.output_value)?;
        if matches!((&key, &value), (Encoder::Bytes, Encoder::Bytes)) {
            return Ok(None);
        }
        Ok(Some(OutputCodec {
            topic: topic.to_owned(),
            key,
            value,
        }))
    }

    fn encoder(&self, part: Part) -> &Encoder {
        match part {
            Part::Key => &self.key,
            Part::Value => &self.value,
        }
    }
}

impl RecordEncoding for OutputCodec {
    fn topic(&self) -> &str {
        &self.topic
    }

    fn encodes(&self, part: Part) -> bool {
        !matches!(self.encoder(part), Encoder::Bytes)
    }

    fn encode(&self, part: Part, bytes: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
        match self.encoder(part) {
            Encoder::Bytes => {
                out.extend_from_slice(bytes);
                Ok(())
            }
            Encoder::String => {
                std::str::from_utf8(bytes).map_err(|e| format!("not UTF-8 text: {e}"))?;
                out.extend_from_slice(bytes);
                Ok(())
            }
            Encoder::Json => {
                serde_json::from_slice::<serde::de::IgnoredAny>(bytes)
                    .map_err(|e| format!("not JSON: {e}"))?;
                out.extend_from_slice(bytes);
                Ok(())
            }
            Encoder::Registry {
                id,
                schema,
                message,
            } => {
                let start = out.len();
                wire::frame(*id, out);
                match schema {
                    Parsed::Avro(s) => s.encode_json(bytes, out),
                    Parsed::Protobuf(s) => s.encode_json(message, bytes, out),
                    Parsed::Json(s) => s.check(bytes).map(|()| out.extend_from_slice(bytes)),
                }
                .inspect_err(|_| out.truncate(start))
            }
        }
    }

    fn show(&self, part: Part, encoded: &[u8]) -> Option<Vec<u8>> {
        let Encoder::Registry { schema, .. } = self.encoder(part) else {
            return Some(encoded.to_vec());
        };
        let (_, payload) = wire::split(encoded).ok()?;
        let mut out = Vec::new();
        match schema {
            Parsed::Avro(s) => s.decode_json(payload, None, &mut out).ok()?,
            Parsed::Protobuf(s) => s.decode_json(payload, &mut out).ok()?,
            Parsed::Json(_) => out.extend_from_slice(payload),
        }
        Some(out)
    }
}
