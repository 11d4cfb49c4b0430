//! Avro values to JSON text and back, with schemas checked before use:
//! a schema is untrusted input (anyone may register one under a topic's
//! subject), so one that could make decoding recurse without bound is
//! refused.

use apache_avro::Schema;
use apache_avro::schema::Name;

use crate::avro_json::{self, Names};

/// Most bytes one Avro value may make the decoder allocate at once (a
/// string, bytes or an array's block): a garbage length in a small record
/// must not reserve gigabytes. Process-wide in `apache-avro`, set once.
const MAX_ALLOCATION_BYTES: usize = 64 << 20;

/// JSON a record may decode to: this many bytes per byte of Avro, plus
/// [`JSON_BYTES_BASE`] (field names repeat in JSON; an array of a billion
/// nulls is a few bytes of Avro).
pub(crate) const JSON_BYTES_PER_BYTE: usize = 64;
pub(crate) const JSON_BYTES_BASE: usize = 64 << 10;

/// A parsed Avro schema that decoding cannot recurse on without bound.
#[derive(Debug)]
pub struct AvroSchema {
    schema: Schema,
    /// Its named types, for the schema walk (`avro_json`).
    names: Names,
}

impl AvroSchema {
    /// Parses `text`, refusing recursive types (a record that contains
    /// itself lets a record nest as deep as its bytes say, and the
    /// decoder's stack is the host's) and types that expand too far.
    pub fn parse(text: &str) -> Result<AvroSchema, String> {
        static LIMIT: std::sync::Once = std::sync::Once::new();
        LIMIT.call_once(|| {
            apache_avro::util::max_allocation_bytes(MAX_ALLOCATION_BYTES);
        });
        let json: serde_json::Value =
            serde_json::from_str(text).map_err(|e| format!("not a valid Avro schema: {e}"))?;
        bound_expansion(&json)?;
        let schema =
            Schema::parse_str(text).map_err(|e| format!("not a valid Avro schema: {e}"))?;
        refuse_recursion(&schema, &mut Vec::new())?;
        let mut names = Names::new();
        avro_json::collect_names(&schema, &mut names);
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
        let start = out.len();
        let mut input = payload;
        let mut decoder = avro_json::Decoder {
            names: &self.names,
            budget,
        };
        let decoded = decoder
            .value(&self.schema, &mut input, out)
            .map_err(|e| format!("does not decode as Avro with its writer's schema: {e}"))
            .and_then(|()| match input.len() {
                0 => Ok(()),
                n => Err(format!(
                    "{n} bytes follow the Avro value its schema describes"
                )),
            });
        let Some(reader) = reader else {
            return decoded.inspect_err(|_| out.truncate(start));
        };
        // Checked and bounded by the walk: now projected onto the
        // reader's schema by apache-avro's resolution.
        out.truncate(start);
        decoded?;
        let value = apache_avro::from_avro_datum(&self.schema, &mut payload, Some(&reader.schema))
            .map_err(|e| format!("does not read as its reader's schema: {e}"))?;
        let json = serde_json::Value::try_from(value)
            .map_err(|e| format!("its Avro value has no JSON form: {e}"))?;
        serde_json::to_writer(out, &json).map_err(|e| e.to_string())
    }

    /// Encodes JSON text as a value of this schema, appending it to `out`;
    /// a mismatch names the field.
    pub fn encode_json(&self, json: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
        let json = avro_json::Json::parse(json).map_err(|e| format!("not JSON: {e}"))?;
        let start = out.len();
        avro_json::Encoder { names: &self.names }
            .value(&self.schema, &json, out)
            .map_err(|e| {
                out.truncate(start);
                if e.starts_with("field `") {
                    format!("{e} (its Avro schema)")
                } else {
                    format!("does not fit its Avro schema: {e}")
                }
            })
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

/// Most types a schema may hold with every reference to a named type
/// expanded, and most levels of them: what decoding, encoding and
/// apache-avro's check of field defaults walk. Named types referring to
/// two others each make a schema of a few hundred bytes that expands to
/// millions of types; a chain of them, a walk deeper than the host's
/// stack.
const MAX_EXPANDED_TYPES: usize = 10_000;
const MAX_DEPTH: usize = 64;

/// Refuses a schema (as JSON) that expands past [`MAX_EXPANDED_TYPES`]
/// types or [`MAX_DEPTH`] levels; cheap, and before apache-avro parses it.
fn bound_expansion(schema: &serde_json::Value) -> Result<(), String> {
    use serde_json::Value as J;
    // Named types by full and by short name: enough to follow references
    // (a wrong match only makes the bound stricter).
    fn collect<'a>(v: &'a J, named: &mut std::collections::HashMap<&'a str, &'a J>, depth: usize) {
        if depth > MAX_DEPTH {
            return;
        }
        match v {
            J::Object(o) => {
                if let Some(J::String(name)) = o.get("name")
                    && o.get("type")
                        .and_then(J::as_str)
                        .is_some_and(|t| matches!(t, "record" | "error" | "enum" | "fixed"))
                {
                    named.insert(name.as_str(), v);
                    named.insert(name.rsplit('.').next().unwrap_or(name), v);
                }
                o.values().for_each(|c| collect(c, named, depth + 1));
            }
            J::Array(a) => a.iter().for_each(|c| collect(c, named, depth + 1)),
            _ => {}
        }
    }
    type Named<'a> = std::collections::HashMap<&'a str, &'a J>;
    fn walk(v: &J, named: &Named<'_>, depth: usize, seen: &mut usize) -> Result<(), String> {
        *seen += 1;
        if *seen > MAX_EXPANDED_TYPES {
            return Err(format!(
                "the Avro schema expands to more than {MAX_EXPANDED_TYPES} types (its named types refer to others too often)"
            ));
        }
        if depth > MAX_DEPTH {
            return Err(format!(
                "the Avro schema nests more than {MAX_DEPTH} levels deep"
            ));
        }
        match v {
            J::String(name) => match named
                .get(name.as_str())
                .or_else(|| named.get(name.rsplit('.').next().unwrap_or(name)))
            {
                // A definition reached by reference: walked again, as
                // decoding would.
                Some(def) if std::ptr::eq(*def, v) => Ok(()),
                Some(def) => {
                    if refers_to(def, name) {
                        return Err(format!(
                            "the Avro schema is recursive (`{name}` contains itself): Weir refuses recursive schemas, whose values may nest without bound"
                        ));
                    }
                    walk_children(def, named, depth + 1, seen)
                }
                None => Ok(()),
            },
            J::Array(branches) => branches
                .iter()
                .try_for_each(|b| walk(b, named, depth + 1, seen)),
            J::Object(_) => walk_children(v, named, depth, seen),
            _ => Ok(()),
        }
    }
    /// Whether `def` mentions `name` within itself: names a type that
    /// contains itself (one through others is found by the depth bound).
    fn refers_to(def: &J, name: &str) -> bool {
        fn mentions(v: &J, name: &str, top: bool) -> bool {
            match v {
                J::String(s) => {
                    !top && (s == name || s.rsplit('.').next() == name.rsplit('.').next())
                }
                J::Array(a) => a.iter().any(|c| mentions(c, name, false)),
                J::Object(o) => o.iter().any(|(k, c)| {
                    k != "name"
                        && k != "namespace"
                        && k != "doc"
                        && k != "default"
                        && k != "symbols"
                        && k != "aliases"
                        && mentions(c, name, k == "type" && top)
                }),
                _ => false,
            }
        }
        mentions(def, name, true)
    }
    fn walk_children(
        v: &J,
        named: &Named<'_>,
        depth: usize,
        seen: &mut usize,
    ) -> Result<(), String> {
        let J::Object(o) = v else {
            return walk(v, named, depth, seen);
        };
        match o.get("type") {
            Some(J::String(t)) if t == "record" || t == "error" => o
                .get("fields")
                .and_then(J::as_array)
                .into_iter()
                .flatten()
                .filter_map(|f| f.get("type"))
                .try_for_each(|t| walk(t, named, depth + 1, seen)),
            Some(J::String(t)) if t == "array" => o
                .get("items")
                .map_or(Ok(()), |i| walk(i, named, depth + 1, seen)),
            Some(J::String(t)) if t == "map" => o
                .get("values")
                .map_or(Ok(()), |i| walk(i, named, depth + 1, seen)),
            Some(t) => walk(t, named, depth + 1, seen),
            None => Ok(()),
        }
    }
    let mut named = std::collections::HashMap::new();
    collect(schema, &mut named, 0);
    walk(schema, &named, 0, &mut 0)
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
    fn a_schema_that_expands_exponentially_or_deeply_is_refused_quickly() {
        // T0 an int; each Tk a record of two fields of T(k-1): 2^40 types.
        let mut fields =
            String::from(r#"{"type":"record","name":"T1","fields":[{"name":"a","type":"int"}]}"#);
        for k in 2..=40 {
            fields = format!(
                r#"{{"type":"record","name":"T{k}","fields":[{{"name":"a","type":{fields}}},{{"name":"b","type":"T{}"}}]}}"#,
                k - 1
            );
        }
        let started = std::time::Instant::now();
        let e = AvroSchema::parse(&fields).unwrap_err();
        assert!(e.contains("expands to more than"), "{e}");
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        // A chain 200 references long.
        let mut chain = vec![r#"{"type":"record","name":"C0","fields":[]}"#.to_owned()];
        for k in 1..200 {
            chain.push(format!(
                r#"{{"type":"record","name":"C{k}","fields":[{{"name":"a","type":"C{}"}}]}}"#,
                k - 1
            ));
        }
        let e = AvroSchema::parse(&format!("[{}]", chain.join(","))).unwrap_err();
        assert!(e.contains("levels deep"), "{e}");
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
