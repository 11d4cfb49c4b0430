//! Protobuf messages to JSON text and back, by a schema the registry
//! holds as `.proto` text, compiled in process.
//!
//! A registry holds a schema as `.proto` text (Confluent's) or as a
//! base64 `FileDescriptorProto` (what confluent-kafka's Python serializer
//! registers, and Apicurio gives back as it was given): both are read.
//!
//! The registry's wire format names the message of the schema's file by
//! its indexes (the top-level message, then nested ones), after the
//! schema id: a zig-zag varint count and the indexes, or a lone 0 for the
//! first message.

use prost::Message;
use prost_reflect::{
    DescriptorPool, DeserializeOptions, DynamicMessage, MessageDescriptor, SerializeOptions,
};

/// The name a schema's text compiles under.
const TEXT_FILE: &str = "schema.proto";

/// Most message indexes a record may name (nesting of the message).
const MAX_INDEXES: usize = 32;

/// A compiled `.proto` file.
pub struct ProtoSchema {
    pool: DescriptorPool,
    /// Its file's name in `pool`.
    file: String,
}

impl std::fmt::Debug for ProtoSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProtoSchema").finish_non_exhaustive()
    }
}

/// Imports a schema may make: Google's well-known types, compiled in.
/// Imports of other registered schemas (references) are not followed.
struct Resolver {
    file: protox::file::File,
    google: protox::file::GoogleFileResolver,
}

impl protox::file::FileResolver for Resolver {
    fn open_file(&self, name: &str) -> Result<protox::file::File, protox::Error> {
        if name == self.file.name() {
            Ok(self.file.clone())
        } else {
            self.google.open_file(name)
        }
    }
}

impl ProtoSchema {
    /// Compiles `text`. A file importing itself, or anything but Google's
    /// well-known types, is refused.
    pub fn parse(text: &str) -> Result<ProtoSchema, String> {
        use base64::Engine;
        let file = match protox::file::File::from_source(TEXT_FILE, text) {
            Ok(file) => file,
            Err(e) => base64::engine::general_purpose::STANDARD
                .decode(text.trim())
                .ok()
                .and_then(|bytes| protox::file::File::decode_file_descriptor_proto(&bytes[..]).ok())
                .ok_or_else(|| format!("not a Protobuf schema Weir can compile: {e}"))?,
        };
        let name = file.name().to_owned();
        let mut compiler = protox::Compiler::with_file_resolver(Resolver {
            file,
            google: protox::file::GoogleFileResolver::new(),
        });
        compiler.include_imports(true);
        compiler
            .open_file(&name)
            .map_err(|e| format!("not a Protobuf schema Weir can compile: {e}"))?;
        let pool = compiler.descriptor_pool();
        let schema = ProtoSchema { pool, file: name };
        if schema.file_messages().next().is_none() {
            return Err("the Protobuf schema defines no message".into());
        }
        Ok(schema)
    }

    fn file_messages(&self) -> impl Iterator<Item = MessageDescriptor> + '_ {
        self.pool
            .get_file_by_name(&self.file)
            .into_iter()
            .flat_map(|f| f.messages().collect::<Vec<_>>())
    }

    /// The message at `indexes` (top-level, then nested).
    fn message(&self, indexes: &[usize]) -> Result<MessageDescriptor, String> {
        let (first, rest) = indexes.split_first().ok_or("no message index")?;
        let mut message = self
            .file_messages()
            .nth(*first)
            .ok_or_else(|| format!("the schema has no message {first}"))?;
        for &i in rest {
            let child = message.child_messages().nth(i);
            message = child.ok_or_else(|| {
                format!(
                    "message `{}` has no nested message {i}",
                    message.full_name()
                )
            })?;
        }
        Ok(message)
    }

    /// The indexes of message `name` (its full name), or of the first
    /// message if none is named.
    pub fn indexes_of(&self, name: Option<&str>) -> Result<Vec<usize>, String> {
        let Some(name) = name else {
            return Ok(vec![0]);
        };
        let message = self
            .pool
            .get_message_by_name(name)
            .filter(|m| m.parent_file().name() == self.file)
            .ok_or_else(|| format!("the Protobuf schema has no message `{name}`"))?;
        let mut indexes = Vec::new();
        let mut at = Some(message);
        while let Some(m) = at {
            let siblings: Vec<MessageDescriptor> = match m.parent_message() {
                Some(parent) => parent.child_messages().collect(),
                None => self.file_messages().collect(),
            };
            let i = siblings
                .iter()
                .position(|s| s.full_name() == m.full_name())
                .ok_or("a message outside its file")?;
            indexes.push(i);
            at = m.parent_message();
        }
        indexes.reverse();
        Ok(indexes)
    }

    /// Decodes a payload (message indexes, then the message) and appends
    /// its JSON text to `out`: proto field names, every field present,
    /// 64-bit integers as numbers.
    pub fn decode_json(&self, payload: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
        let (indexes, mut message) = read_indexes(payload)?;
        let descriptor = self.message(&indexes)?;
        let value = DynamicMessage::decode(descriptor.clone(), &mut message).map_err(|e| {
            format!(
                "does not decode as Protobuf message `{}`: {e}",
                descriptor.full_name()
            )
        })?;
        let options = SerializeOptions::new()
            .use_proto_field_name(true)
            .stringify_64_bit_integers(false)
            .skip_default_fields(false);
        // Every field present: a repeated message of one long-named field
        // makes kilobytes of JSON of each two bytes, so the JSON is
        // bounded as Avro's is.
        let start = out.len();
        let mut bounded = Bounded {
            out: &mut *out,
            left: crate::avro::JSON_BYTES_BASE + crate::avro::JSON_BYTES_PER_BYTE * payload.len(),
        };
        let mut serializer = serde_json::Serializer::new(&mut bounded);
        value
            .serialize_with_options(&mut serializer, &options)
            .map_err(|e| {
                out.truncate(start);
                format!("its Protobuf message has no JSON form within its size's bound: {e}")
            })
    }

    /// Encodes JSON text as message `indexes` (with the indexes in front),
    /// appending it to `out`; a mismatch names the field.
    pub fn encode_json(
        &self,
        indexes: &[usize],
        json: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), String> {
        let descriptor = self.message(indexes)?;
        let mut deserializer = serde_json::Deserializer::from_slice(json);
        let message = DynamicMessage::deserialize_with_options(
            descriptor.clone(),
            &mut deserializer,
            &DeserializeOptions::new().deny_unknown_fields(true),
        )
        .map_err(|e| {
            format!(
                "does not fit Protobuf message `{}`: {e}",
                descriptor.full_name()
            )
        })?;
        deserializer.end().map_err(|e| format!("not JSON: {e}"))?;
        write_indexes(indexes, out);
        message.encode(out).map_err(|e| e.to_string())
    }
}

/// A writer that fails past `left` bytes.
struct Bounded<'a> {
    out: &'a mut Vec<u8>,
    left: usize,
}

impl std::io::Write for Bounded<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.left = self
            .left
            .checked_sub(buf.len())
            .ok_or_else(|| std::io::Error::other("it decodes to more JSON than its size allows"))?;
        self.out.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Reads the message indexes in front of a payload.
fn read_indexes(mut bytes: &[u8]) -> Result<(Vec<usize>, &[u8]), String> {
    let bad = |e: prost::DecodeError| format!("its Protobuf message indexes do not read: {e}");
    let count = zigzag(prost::encoding::decode_varint(&mut bytes).map_err(bad)?);
    if count == 0 {
        return Ok((vec![0], bytes));
    }
    let count = usize::try_from(count)
        .ok()
        .filter(|&c| c <= MAX_INDEXES)
        .ok_or_else(|| {
            format!("it names {count} message indexes; at most {MAX_INDEXES} are read")
        })?;
    let mut indexes = Vec::with_capacity(count);
    for _ in 0..count {
        let i = zigzag(prost::encoding::decode_varint(&mut bytes).map_err(bad)?);
        indexes.push(usize::try_from(i).map_err(|_| format!("message index {i} is negative"))?);
    }
    Ok((indexes, bytes))
}

fn write_indexes(indexes: &[usize], out: &mut Vec<u8>) {
    if indexes == [0] {
        out.push(0);
        return;
    }
    let put = |n: i64, out: &mut Vec<u8>| {
        prost::encoding::encode_varint(((n << 1) ^ (n >> 63)) as u64, out)
    };
    put(indexes.len() as i64, out);
    for &i in indexes {
        put(i as i64, out);
    }
}

fn zigzag(n: u64) -> i64 {
    ((n >> 1) as i64) ^ -((n & 1) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORDERS: &str = r#"
        syntax = "proto3";
        package shop;
        message Order { int64 id = 1; string item = 2; int32 qty = 3; }
        message Batch { message Line { string sku = 1; } repeated Line lines = 1; }
    "#;

    #[test]
    fn json_goes_to_protobuf_and_back_by_message_index() {
        let schema = ProtoSchema::parse(ORDERS).unwrap();
        for (name, json) in [
            (None, r#"{"id":7,"item":"pen","qty":0}"#),
            (Some("shop.Batch.Line"), r#"{"sku":"a-1"}"#),
        ] {
            let indexes = schema.indexes_of(name).unwrap();
            let mut bytes = Vec::new();
            schema
                .encode_json(&indexes, json.as_bytes(), &mut bytes)
                .unwrap();
            let mut back = Vec::new();
            schema.decode_json(&bytes, &mut back).unwrap();
            assert_eq!(String::from_utf8(back).unwrap(), json);
        }
        assert_eq!(schema.indexes_of(Some("shop.Batch.Line")).unwrap(), [1, 0]);
    }

    #[test]
    fn a_mismatch_or_garbage_says_so() {
        let schema = ProtoSchema::parse(ORDERS).unwrap();
        let mut out = Vec::new();
        let e = schema
            .encode_json(&[0], br#"{"id":"x"}"#, &mut out)
            .unwrap_err();
        assert!(e.contains("shop.Order"), "{e}");
        let e = schema
            .encode_json(&[0], br#"{"colour":1}"#, &mut out)
            .unwrap_err();
        assert!(e.contains("colour"), "{e}");
        assert!(schema.decode_json(&[0, 0xff], &mut out).is_err());
        // 2^40 indexes claimed.
        assert!(
            schema
                .decode_json(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x40], &mut out)
                .is_err()
        );
        assert!(
            schema
                .decode_json(&[2, 6], &mut out)
                .unwrap_err()
                .contains("no message 3")
        );
    }

    #[test]
    fn a_few_bytes_cannot_decode_to_megabytes_of_json() {
        let name = "f".repeat(100_000);
        let text = format!(
            r#"syntax = "proto3"; message E {{ int32 {name} = 1; }} message M {{ repeated E xs = 1; }}"#
        );
        let schema = ProtoSchema::parse(&text).unwrap();
        // 1000 empty elements: 2 bytes each, 100 KB of JSON each.
        let mut payload = vec![2, 2];
        for _ in 0..1000 {
            payload.extend_from_slice(&[0x0a, 0x00]);
        }
        let e = schema.decode_json(&payload, &mut Vec::new()).unwrap_err();
        assert!(e.contains("more JSON than its size allows"), "{e}");
    }

    #[test]
    fn a_file_importing_itself_or_another_is_refused() {
        let looped = r#"syntax = "proto3"; import "schema.proto"; message A {}"#;
        assert!(ProtoSchema::parse(looped).is_err());
        let other = r#"syntax = "proto3"; import "other.proto"; message A {}"#;
        assert!(ProtoSchema::parse(other).is_err());
        let google = r#"syntax = "proto3"; import "google/protobuf/timestamp.proto";
            message A { google.protobuf.Timestamp at = 1; }"#;
        ProtoSchema::parse(google).unwrap();
        assert!(
            ProtoSchema::parse("syntax = \"proto3\";")
                .unwrap_err()
                .contains("no message")
        );
    }

    #[test]
    fn a_base64_file_descriptor_reads_as_its_text_would() {
        // What confluent-kafka's Python serializer registered for
        // `message Order { int64 id = 1; string item = 2; int32 qty = 3; }`.
        let registered = "ChBzaG9wL29yZGVyLnByb3RvEgRzaG9wIi4KBU9yZGVyEgoKAmlkGAEgASgDEgwKBGl0ZW0YAiABKAkSCwoDcXR5GAMgASgFYgZwcm90bzM=";
        let schema = ProtoSchema::parse(registered).unwrap();
        // Its serializer's bytes for Order(id=5, item="pen", qty=2), after the schema id.
        let mut out = Vec::new();
        schema
            .decode_json(
                &[0, 0x08, 0x05, 0x12, 0x03, b'p', b'e', b'n', 0x18, 0x02],
                &mut out,
            )
            .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"id":5,"item":"pen","qty":2}"#
        );
    }

    #[test]
    fn a_message_nested_past_the_decoders_limit_fails_alone() {
        let schema =
            ProtoSchema::parse(r#"syntax = "proto3"; message N { N child = 1; }"#).unwrap();
        // 200 levels of `child`, each a length-delimited field 1.
        let mut message = Vec::new();
        for _ in 0..200 {
            let mut outer = vec![0x0a];
            prost::encoding::encode_varint(message.len() as u64, &mut outer);
            outer.extend_from_slice(&message);
            message = outer;
        }
        let mut payload = vec![0];
        payload.extend_from_slice(&message);
        let mut out = Vec::new();
        assert!(schema.decode_json(&payload, &mut out).is_err());
    }
}
