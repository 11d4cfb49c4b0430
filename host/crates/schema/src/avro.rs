//! Avro values to JSON text and back, with schemas checked before use:
//! a schema is untrusted input (anyone may register one under a topic's
//! subject), so one that could make decoding recurse without bound is
//! refused.

use apache_avro::Schema;
use apache_avro::schema::Name;
use apache_avro::types::Value;

use crate::avro_json::{self, Names};

/// Most bytes one Avro value may make the decoder allocate at once (a
/// string, bytes or an array's block): a garbage length in a small record
/// must not reserve gigabytes. Process-wide in `apache-avro`, set once.
const MAX_ALLOCATION_BYTES: usize = 64 << 20;

/// JSON a record may decode to: this many bytes per byte of Avro, plus
/// [`JSON_BYTES_BASE`] (field names repeat in JSON; an array of a billion
/// nulls is a few bytes of Avro).
const JSON_BYTES_PER_BYTE: usize = 64;
const JSON_BYTES_BASE: usize = 64 << 10;

/// A parsed Avro schema that decoding cannot recurse on without bound.
#[derive(Debug)]
pub struct AvroSchema {
    schema: Schema,
    /// Its named types, if the schema-walking transcoder handles it all
    /// (`avro_json`); else values go through `apache-avro`'s.
    names: Option<Names>,
}

impl AvroSchema {
    /// Parses `text`, refusing recursive types (a record that contains
    /// itself lets a record nest as deep as its bytes say, and the
    /// decoder's stack is the host's).
    pub fn parse(text: &str) -> Result<AvroSchema, String> {
        static LIMIT: std::sync::Once = std::sync::Once::new();
        LIMIT.call_once(|| {
            apache_avro::util::max_allocation_bytes(MAX_ALLOCATION_BYTES);
        });
        let schema =
            Schema::parse_str(text).map_err(|e| format!("not a valid Avro schema: {e}"))?;
        refuse_recursion(&schema, &mut Vec::new())?;
        let mut names = Names::new();
        let names = avro_json::supported(&schema, &mut names).map(|()| names);
        Ok(AvroSchema { schema, names })
    }

    /// Decodes one value written with this schema and, given a reader
    /// schema, projects it onto that one (Avro's schema resolution: new
    /// fields take their defaults, removed ones are dropped). Appends JSON
    /// text to `out`.
    pub fn decode_json(
        &self,
        mut payload: &[u8],
        reader: Option<&AvroSchema>,
        out: &mut Vec<u8>,
    ) -> Result<(), String> {
        let budget = JSON_BYTES_BASE + JSON_BYTES_PER_BYTE * payload.len();
        if let Some(names) = &self.names {
            let start = out.len();
            let mut input = payload;
            let mut decoder = avro_json::Decoder { names, budget };
            decoder
                .value(&self.schema, &mut input, out)
                .map_err(|e| format!("does not decode as Avro with its writer's schema: {e}"))?;
            if !input.is_empty() {
                out.truncate(start);
                return Err(format!(
                    "{} bytes follow the Avro value its schema describes",
                    input.len()
                ));
            }
            if reader.is_none() {
                return Ok(());
            }
            // Checked and bounded: now projected onto the reader's schema.
            out.truncate(start);
        }
        let value =
            apache_avro::from_avro_datum(&self.schema, &mut payload, reader.map(|r| &r.schema))
                .map_err(|e| format!("does not decode as Avro with its writer's schema: {e}"))?;
        if !payload.is_empty() {
            return Err(format!(
                "{} bytes follow the Avro value its schema describes",
                payload.len()
            ));
        }
        let json = serde_json::Value::try_from(value)
            .map_err(|e| format!("its Avro value has no JSON form: {e}"))?;
        serde_json::to_writer(out, &json).map_err(|e| e.to_string())
    }

    /// Encodes JSON text as a value of this schema, appending it to `out`;
    /// a mismatch names the field.
    pub fn encode_json(&self, json: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
        if let Some(names) = &self.names {
            let json = avro_json::Json::parse(json).map_err(|e| format!("not JSON: {e}"))?;
            let start = out.len();
            return avro_json::Encoder { names }
                .value(&self.schema, &json, out)
                .map_err(|e| {
                    out.truncate(start);
                    if e.starts_with("field `") {
                        format!("{e} (its Avro schema)")
                    } else {
                        format!("does not fit its Avro schema: {e}")
                    }
                });
        }
        let json: serde_json::Value =
            serde_json::from_slice(json).map_err(|e| format!("not JSON: {e}"))?;
        let value = match Value::from(json.clone()).resolve(&self.schema) {
            Ok(v) => v,
            Err(e) => return Err(self.mismatch(&json, e)),
        };
        let bytes = apache_avro::to_avro_datum(&self.schema, value)
            .map_err(|e| format!("does not encode with its Avro schema: {e}"))?;
        out.extend_from_slice(&bytes);
        Ok(())
    }

    /// Why `json` does not fit: the first record field that does not, or
    /// the whole value.
    fn mismatch(&self, json: &serde_json::Value, whole: apache_avro::Error) -> String {
        if let (Schema::Record(record), serde_json::Value::Object(fields)) = (&self.schema, json) {
            for field in &record.fields {
                let Some(value) = fields.get(&field.name) else {
                    if field.default.is_none() {
                        return format!("field `{}` is missing and has no default", field.name);
                    }
                    continue;
                };
                if let Err(e) = Value::from(value.clone()).resolve(&field.schema) {
                    return format!("field `{}` does not fit its Avro schema: {e}", field.name);
                }
            }
        }
        format!("does not fit its Avro schema: {whole}")
    }

    /// A record schema's full name (what the record subject naming
    /// strategies name subjects by).
    pub fn full_name(&self) -> Option<String> {
        match &self.schema {
            Schema::Record(r) => Some(r.name.fullname(None)),
            _ => None,
        }
    }
}

/// Fails on a reference to a named type that encloses it.
fn refuse_recursion(schema: &Schema, enclosing: &mut Vec<Name>) -> Result<(), String> {
    match schema {
        Schema::Ref { name } if enclosing.contains(name) => Err(format!(
            "the Avro schema is recursive (`{}` contains itself): Weir refuses recursive schemas, whose values may nest without bound",
            name.fullname(None)
        )),
        Schema::Record(record) => {
            enclosing.push(record.name.clone());
            for field in &record.fields {
                refuse_recursion(&field.schema, enclosing)?;
            }
            enclosing.pop();
            Ok(())
        }
        Schema::Array(a) => refuse_recursion(&a.items, enclosing),
        Schema::Map(m) => refuse_recursion(&m.types, enclosing),
        Schema::Union(u) => u
            .variants()
            .iter()
            .try_for_each(|v| refuse_recursion(v, enclosing)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const V1: &str = r#"{"type":"record","name":"Order","fields":[
        {"name":"id","type":"long"},{"name":"item","type":"string"}]}"#;
    const V2: &str = r#"{"type":"record","name":"Order","fields":[
        {"name":"id","type":"long"},{"name":"item","type":"string"},
        {"name":"qty","type":"int","default":1}]}"#;

    fn encode(schema: &str, json: &str) -> Vec<u8> {
        let mut out = Vec::new();
        AvroSchema::parse(schema)
            .unwrap()
            .encode_json(json.as_bytes(), &mut out)
            .unwrap();
        out
    }

    fn decode(writer: &str, reader: Option<&str>, payload: &[u8]) -> Result<String, String> {
        let reader = reader.map(|r| AvroSchema::parse(r).unwrap());
        let mut out = Vec::new();
        AvroSchema::parse(writer)
            .unwrap()
            .decode_json(payload, reader.as_ref(), &mut out)?;
        Ok(String::from_utf8(out).unwrap())
    }

    #[test]
    fn json_goes_to_avro_and_back() {
        let bytes = encode(V1, r#"{"id":7,"item":"pen"}"#);
        assert_eq!(
            decode(V1, None, &bytes).unwrap(),
            r#"{"id":7,"item":"pen"}"#
        );
    }

    #[test]
    fn a_reader_schema_projects_old_records_onto_the_new_shape() {
        let old = encode(V1, r#"{"id":7,"item":"pen"}"#);
        assert_eq!(
            decode(V1, Some(V2), &old).unwrap(),
            r#"{"id":7,"item":"pen","qty":1}"#
        );
        let new = encode(V2, r#"{"id":8,"item":"ink","qty":3}"#);
        assert_eq!(
            decode(V2, Some(V1), &new).unwrap(),
            r#"{"id":8,"item":"ink"}"#
        );
    }

    #[test]
    fn garbage_and_trailing_bytes_are_errors() {
        // A string length of 2^62: refused, not allocated.
        let huge = [2, 0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f];
        assert!(decode(V1, None, &huge).is_err());
        let mut extra = encode(V1, r#"{"id":7,"item":"pen"}"#);
        extra.push(0);
        assert!(
            decode(V1, None, &extra)
                .unwrap_err()
                .contains("1 bytes follow")
        );
        assert!(decode(V1, None, &[]).is_err());
    }

    #[test]
    fn an_output_that_does_not_fit_names_the_field() {
        let schema = AvroSchema::parse(V1).unwrap();
        let mut out = Vec::new();
        let e = schema
            .encode_json(br#"{"id":"seven","item":"pen"}"#, &mut out)
            .unwrap_err();
        assert!(e.contains("field `id`"), "{e}");
        let e = schema.encode_json(br#"{"id":1}"#, &mut out).unwrap_err();
        assert!(e.contains("field `item` is missing"), "{e}");
        assert!(
            schema
                .encode_json(b"{", &mut out)
                .unwrap_err()
                .contains("not JSON")
        );
    }

    #[test]
    fn a_few_bytes_cannot_decode_to_gigabytes_of_json() {
        let nulls = r#"{"type":"array","items":"null"}"#;
        // One block of 2^40 nulls: 6 bytes of Avro.
        let mut payload = Vec::new();
        let n: i64 = 1 << 40;
        let mut z = ((n << 1) ^ (n >> 63)) as u64;
        while z >= 0x80 {
            payload.push((z as u8) | 0x80);
            z >>= 7;
        }
        payload.push(z as u8);
        let e = decode(nulls, None, &payload).unwrap_err();
        assert!(e.contains("more JSON than its size allows"), "{e}");
        // And with a reader schema, whose resolution is apache-avro's.
        assert!(decode(nulls, Some(nulls), &payload).is_err());
    }

    #[test]
    fn unions_enums_maps_and_arrays_go_both_ways() {
        let schema = r#"{"type":"record","name":"R","fields":[
            {"name":"note","type":["null","string"]},
            {"name":"colour","type":{"type":"enum","name":"C","symbols":["RED","BLUE"]}},
            {"name":"tags","type":{"type":"map","values":"long"}},
            {"name":"sizes","type":{"type":"array","items":"double"}},
            {"name":"raw","type":"bytes"}]}"#;
        for json in [
            r#"{"note":null,"colour":"BLUE","tags":{"a":1,"b":-2},"sizes":[1.5,2.0],"raw":[0,255]}"#,
            r#"{"note":"hi","colour":"RED","tags":{},"sizes":[],"raw":[]}"#,
        ] {
            let bytes = encode(schema, json);
            let back: serde_json::Value =
                serde_json::from_str(&decode(schema, None, &bytes).unwrap()).unwrap();
            assert_eq!(
                back,
                serde_json::from_str::<serde_json::Value>(json).unwrap()
            );
        }
        let e = AvroSchema::parse(schema)
            .unwrap()
            .encode_json(
                br#"{"note":1,"colour":"RED","tags":{},"sizes":[],"raw":[]}"#,
                &mut Vec::new(),
            )
            .unwrap_err();
        assert!(e.contains("field `note`"), "{e}");
    }

    #[test]
    fn a_recursive_schema_is_refused() {
        let list = r#"{"type":"record","name":"Node","fields":[
            {"name":"next","type":["null","Node"]}]}"#;
        assert!(AvroSchema::parse(list).unwrap_err().contains("recursive"));
        // A named type used twice side by side is not recursion.
        let twice = r#"{"type":"record","name":"P","fields":[
            {"name":"a","type":{"type":"record","name":"Q","fields":[{"name":"x","type":"int"}]}},
            {"name":"b","type":"Q"}]}"#;
        AvroSchema::parse(twice).unwrap();
    }

    #[test]
    fn a_deeply_nested_schema_is_refused_quickly() {
        let depth = 10_000;
        let text = format!(
            "{}\"int\"{}",
            r#"{"type":"array","items":"#.repeat(depth),
            "}".repeat(depth)
        );
        assert!(AvroSchema::parse(&text).is_err());
    }
}
