//! A deployment's record formats (`[deployments.NAME.formats]`), for keys
//! and values apart, on the way in and on the way out, and the subjects a
//! deployment may reach.

use serde::{Deserialize, Serialize};
use weir_abi::codec::Part;

/// How a key or value is written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    /// As they are (what a deployment without formats gets).
    #[default]
    Bytes,
    /// UTF-8 text, checked.
    String,
    /// JSON text, checked.
    Json,
    /// Avro in the schema registry's wire format; a transform sees JSON.
    Avro,
    /// Protobuf in the schema registry's wire format; a transform sees
    /// JSON (proto field names).
    Protobuf,
    /// JSON checked against a JSON Schema, in the registry's wire format.
    JsonSchema,
}

impl Format {
    pub fn uses_registry(self) -> bool {
        self.registry_kind().is_some()
    }

    /// The registry's name of the schemas this format is written with.
    pub fn registry_kind(self) -> Option<&'static str> {
        match self {
            Format::Avro => Some("AVRO"),
            Format::Protobuf => Some("PROTOBUF"),
            Format::JsonSchema => Some("JSON"),
            Format::Bytes | Format::String | Format::Json => None,
        }
    }
}

/// A key's or value's format, written `"avro"` or as a table with its
/// schema settings.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(from = "PartFormatText", into = "PartFormatText")]
pub struct PartFormat {
    pub format: Format,
    /// On the way in, the reader schema records are projected onto (Avro
    /// schema evolution); on the way out, the schema outputs are written
    /// with (none: the subject's latest).
    pub schema: Option<String>,
    /// On the way out, the subject (default: by the naming strategy).
    pub subject: Option<String>,
    /// On the way out, register `schema` under the subject if it is not
    /// there yet (the subject's compatibility rule still decides).
    pub register: bool,
    /// On the way out, the Protobuf message written (its full name;
    /// default: the schema's first).
    pub message: Option<String>,
}

#[derive(Clone, Deserialize, Serialize)]
#[serde(untagged)]
enum PartFormatText {
    Name(Format),
    Table {
        format: Format,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        schema: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        subject: Option<String>,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        register: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<String>,
    },
}

impl From<PartFormatText> for PartFormat {
    fn from(t: PartFormatText) -> Self {
        match t {
            PartFormatText::Name(format) => PartFormat {
                format,
                ..PartFormat::default()
            },
            PartFormatText::Table {
                format,
                schema,
                subject,
                register,
                message,
            } => PartFormat {
                format,
                schema,
                subject,
                register,
                message,
            },
        }
    }
}

impl From<PartFormat> for PartFormatText {
    fn from(p: PartFormat) -> Self {
        if p.schema.is_none() && p.subject.is_none() && !p.register && p.message.is_none() {
            PartFormatText::Name(p.format)
        } else {
            PartFormatText::Table {
                format: p.format,
                schema: p.schema,
                subject: p.subject,
                register: p.register,
                message: p.message,
            }
        }
    }
}

/// How subjects are named (Confluent's subject name strategies).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SubjectNaming {
    /// `<topic>-key`, `<topic>-value`.
    #[default]
    Topic,
    /// `<topic>-<record's full name>`.
    TopicRecord,
    /// `<record's full name>`: not tied to a topic, so not for tenants.
    Record,
}

impl SubjectNaming {
    /// Whether a schema registered under `subject` may be read from (or
    /// written to) `topic`'s `part`: a tenant reaches only the subjects of
    /// its own topics.
    pub fn allows(self, subject: &str, topic: &str, part: Part) -> bool {
        match self {
            SubjectNaming::Topic => {
                subject
                    .strip_prefix(topic)
                    .and_then(|s| s.strip_prefix('-'))
                    == Some(part.as_str())
            }
            SubjectNaming::TopicRecord => subject
                .strip_prefix(topic)
                .is_some_and(|s| s.starts_with('-') && s.len() > 1),
            SubjectNaming::Record => true,
        }
    }

    /// The subject of `topic`'s `part` when its record is named `record`.
    pub fn subject(self, topic: &str, part: Part, record: Option<&str>) -> Option<String> {
        match (self, record) {
            (SubjectNaming::Topic, _) => Some(format!("{topic}-{}", part.as_str())),
            (SubjectNaming::TopicRecord, Some(r)) => Some(format!("{topic}-{r}")),
            (SubjectNaming::Record, Some(r)) => Some(r.to_owned()),
            (_, None) => None,
        }
    }
}

/// `[deployments.NAME.formats]`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Formats {
    pub key: PartFormat,
    pub value: PartFormat,
    /// Of records to the default output topic (other topics get the
    /// transform's bytes as they are).
    pub output_key: PartFormat,
    pub output_value: PartFormat,
    pub subject_naming: SubjectNaming,
}

impl Formats {
    pub fn is_default(&self) -> bool {
        self == &Formats::default()
    }

    pub fn uses_registry(&self) -> bool {
        [&self.key, &self.value, &self.output_key, &self.output_value]
            .iter()
            .any(|p| p.format.uses_registry())
    }

    /// Checks what can be checked without the registry. `tenant`: whether
    /// the deployment is a tenant's.
    pub fn check(&self, tenant: bool) -> Result<(), String> {
        if tenant && self.subject_naming == SubjectNaming::Record {
            return Err(
                "formats.subject_naming = \"record\" names subjects apart from topics, so a tenant's deployment may not use it".into(),
            );
        }
        for (name, part, output) in [
            ("key", &self.key, false),
            ("value", &self.value, false),
            ("output_key", &self.output_key, true),
            ("output_value", &self.output_value, true),
        ] {
            let Some(kind) = part.format.registry_kind() else {
                if part.schema.is_some()
                    || part.subject.is_some()
                    || part.message.is_some()
                    || part.register
                {
                    return Err(format!(
                        "formats.{name}: a schema, subject, message or `register` needs a registry format (\"avro\", \"protobuf\", \"json-schema\")"
                    ));
                }
                continue;
            };
            if !output && (part.subject.is_some() || part.register || part.message.is_some()) {
                return Err(format!(
                    "formats.{name}: `subject`, `register` and `message` are for outputs; inputs take the schema from each record's schema id"
                ));
            }
            if !output && part.schema.is_some() && part.format != Format::Avro {
                return Err(format!(
                    "formats.{name}: only Avro inputs take a (reader) `schema`"
                ));
            }
            if part.message.is_some() && part.format != Format::Protobuf {
                return Err(format!("formats.{name}: `message` is for Protobuf"));
            }
            if let Some(schema) = &part.schema {
                crate::registry::Parsed::parse(kind, schema)
                    .map_err(|e| format!("formats.{name}.schema: {e}"))?;
            }
            if output && part.register && part.schema.is_none() {
                return Err(format!(
                    "formats.{name}: `register = true` needs the `schema` to register"
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_read_as_names_or_tables_and_write_back_the_same() {
        let text = r#"
            key = "string"
            value = { format = "avro", schema = '{"type":"string"}' }
            output_value = "avro"
        "#;
        let formats: Formats = toml::from_str(text).unwrap();
        assert_eq!(formats.key.format, Format::String);
        assert_eq!(
            formats.value.schema.as_deref(),
            Some(r#"{"type":"string"}"#)
        );
        assert_eq!(formats.output_value.format, Format::Avro);
        let back: Formats = toml::from_str(&toml::to_string(&formats).unwrap()).unwrap();
        assert_eq!(back, formats);
        assert!(toml::from_str::<Formats>("value = \"xml\"").is_err());
    }

    #[test]
    fn a_tenant_reaches_only_its_topics_subjects() {
        use Part::*;
        let topic = SubjectNaming::Topic;
        assert!(topic.allows("orders-value", "orders", Value));
        assert!(!topic.allows("orders-key", "orders", Value));
        assert!(!topic.allows("orders2-value", "orders", Value));
        assert!(!topic.allows("other-value", "orders", Value));
        let topic_record = SubjectNaming::TopicRecord;
        assert!(topic_record.allows("orders-shop.Order", "orders", Value));
        assert!(!topic_record.allows("ordersX-shop.Order", "orders", Value));
        assert!(!topic_record.allows("orders-", "orders", Value));
        let record = Formats {
            subject_naming: SubjectNaming::Record,
            ..Formats::default()
        };
        assert!(record.check(true).is_err());
        assert!(record.check(false).is_ok());
    }

    #[test]
    fn misplaced_settings_are_refused() {
        let bad = |text: &str| {
            toml::from_str::<Formats>(text)
                .unwrap()
                .check(false)
                .unwrap_err()
        };
        assert!(bad(r#"value = { format = "json", schema = "{}" }"#).contains("registry format"));
        assert!(bad(r#"value = { format = "protobuf", schema = "x" }"#).contains("only Avro"));
        assert!(
            bad(r#"output_value = { format = "avro", message = "x" }"#).contains("for Protobuf")
        );
        assert!(bad(r#"value = { format = "avro", subject = "x" }"#).contains("for outputs"));
        assert!(
            bad(r#"output_value = { format = "avro", register = true }"#)
                .contains("needs the `schema`")
        );
        assert!(
            bad(r#"value = { format = "avro", schema = "{" }"#).contains("formats.value.schema")
        );
    }
}
