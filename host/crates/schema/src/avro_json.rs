//! Avro binary straight to JSON text and back, by walking the schema:
//! no value tree per record, which is what decoding cost per record
//! through `apache-avro`'s values (4× the rest of the pipeline in
//! `weir bench formats`).
//!
//! Both directions are bounded: decoding by an output budget (an array
//! of a billion nulls is a few bytes of Avro), encoding by the JSON it
//! reads.
//!
//! (Over 400 lines: the two directions of one schema walk, side by side, so a type added to one is seen missing from the other.)

use std::borrow::Cow;
use std::collections::HashMap;

use apache_avro::Schema;
use apache_avro::schema::Name;

/// Named types by full name, for `Schema::Ref`s.
pub type Names = HashMap<Name, Schema>;

/// Collects `schema`'s named types.
pub fn collect_names(schema: &Schema, names: &mut Names) {
    match schema {
        Schema::Record(r) => {
            names.insert(r.name.clone(), schema.clone());
            r.fields
                .iter()
                .for_each(|f| collect_names(&f.schema, names));
        }
        Schema::Enum(e) => {
            names.insert(e.name.clone(), schema.clone());
        }
        Schema::Fixed(f) => {
            names.insert(f.name.clone(), schema.clone());
        }
        Schema::Array(a) => collect_names(&a.items, names),
        Schema::Map(m) => collect_names(&m.types, names),
        Schema::Union(u) => u.variants().iter().for_each(|v| collect_names(v, names)),
        Schema::Decimal(d) => collect_names(&d.inner, names),
        _ => {}
    }
}

/// Reads Avro values into JSON text.
pub struct Decoder<'a> {
    pub names: &'a Names,
    /// Bytes of JSON it may still write.
    pub budget: usize,
}

type Result<T> = std::result::Result<T, String>;

fn take<'b>(input: &mut &'b [u8], n: usize) -> Result<&'b [u8]> {
    if input.len() < n {
        return Err(format!("{n} bytes wanted, {} left", input.len()));
    }
    let (head, tail) = input.split_at(n);
    *input = tail;
    Ok(head)
}

fn long(input: &mut &[u8]) -> Result<i64> {
    let mut n: u64 = 0;
    for shift in (0..70).step_by(7) {
        let &[b, ref rest @ ..] = *input else {
            return Err("the record ends inside a number".into());
        };
        *input = rest;
        if shift == 63 && b > 1 {
            return Err("a number overflows 64 bits".into());
        }
        n |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(((n >> 1) as i64) ^ -((n & 1) as i64));
        }
    }
    Err("a number overflows 64 bits".into())
}

fn length(input: &mut &[u8]) -> Result<usize> {
    let n = long(input)?;
    usize::try_from(n).map_err(|_| format!("a negative length {n}"))
}

impl Decoder<'_> {
    fn write(&mut self, out: &mut Vec<u8>, bytes: &[u8]) -> Result<()> {
        self.budget = self
            .budget
            .checked_sub(bytes.len())
            .ok_or("it decodes to more JSON than its size allows")?;
        out.extend_from_slice(bytes);
        Ok(())
    }

    fn json(&mut self, out: &mut Vec<u8>, value: &impl serde::Serialize) -> Result<()> {
        let start = out.len();
        serde_json::to_writer(&mut *out, value).map_err(|e| e.to_string())?;
        let written = out.len() - start;
        self.budget = self
            .budget
            .checked_sub(written)
            .ok_or("it decodes to more JSON than its size allows")?;
        Ok(())
    }

    /// A block-encoded array or map: calls `item` for each element.
    fn blocks(
        &mut self,
        input: &mut &[u8],
        out: &mut Vec<u8>,
        mut item: impl FnMut(&mut Self, &mut &[u8], &mut Vec<u8>) -> Result<()>,
    ) -> Result<()> {
        let mut first = true;
        loop {
            let mut count = long(input)?;
            if count == 0 {
                return Ok(());
            }
            if count < 0 {
                count = count.checked_neg().ok_or("a block count overflows")?;
                // The block's size in bytes, for skipping; not needed here.
                long(input)?;
            }
            for _ in 0..count {
                if !first {
                    self.write(out, b",")?;
                }
                first = false;
                item(self, input, out)?;
            }
        }
    }

    /// Appends the JSON of one value of `schema` read from `input`.
    pub fn value(&mut self, schema: &Schema, input: &mut &[u8], out: &mut Vec<u8>) -> Result<()> {
        match schema {
            Schema::Null => self.write(out, b"null"),
            Schema::Boolean => match take(input, 1)?[0] {
                0 => self.write(out, b"false"),
                1 => self.write(out, b"true"),
                b => Err(format!("a boolean byte of {b}")),
            },
            Schema::Int | Schema::Date | Schema::TimeMillis => {
                let n = long(input)?;
                let n = i32::try_from(n).map_err(|_| format!("an int of {n}"))?;
                self.json(out, &n)
            }
            Schema::Long
            | Schema::TimeMicros
            | Schema::TimestampMillis
            | Schema::TimestampMicros
            | Schema::TimestampNanos
            | Schema::LocalTimestampMillis
            | Schema::LocalTimestampMicros
            | Schema::LocalTimestampNanos => {
                let n = long(input)?;
                self.json(out, &n)
            }
            Schema::Float => {
                let f = f32::from_le_bytes(take(input, 4)?.try_into().expect("4 bytes"));
                self.number(out, f64::from(f))
            }
            Schema::Double => {
                let f = f64::from_le_bytes(take(input, 8)?.try_into().expect("8 bytes"));
                self.number(out, f)
            }
            Schema::Bytes => {
                let n = length(input)?;
                let bytes = take(input, n)?;
                self.json(out, &bytes)
            }
            Schema::Fixed(f) => {
                let bytes = take(input, f.size)?;
                self.json(out, &bytes)
            }
            Schema::String => {
                let n = length(input)?;
                let text = std::str::from_utf8(take(input, n)?)
                    .map_err(|e| format!("a string that is not UTF-8: {e}"))?;
                self.json(out, &text)
            }
            Schema::Record(r) => {
                self.write(out, b"{")?;
                for (i, field) in r.fields.iter().enumerate() {
                    if i > 0 {
                        self.write(out, b",")?;
                    }
                    self.json(out, &field.name)?;
                    self.write(out, b":")?;
                    self.value(&field.schema, input, out)
                        .map_err(|e| format!("field `{}`: {e}", field.name))?;
                }
                self.write(out, b"}")
            }
            Schema::Enum(e) => {
                let i = long(input)?;
                let symbol = usize::try_from(i)
                    .ok()
                    .and_then(|i| e.symbols.get(i))
                    .ok_or_else(|| format!("enum index {i} of {} symbols", e.symbols.len()))?;
                self.json(out, symbol)
            }
            Schema::Array(a) => {
                self.write(out, b"[")?;
                self.blocks(input, out, |d, input, out| d.value(&a.items, input, out))?;
                self.write(out, b"]")
            }
            Schema::Map(m) => {
                self.write(out, b"{")?;
                self.blocks(input, out, |d, input, out| {
                    d.value(&Schema::String, input, out)?;
                    d.write(out, b":")?;
                    d.value(&m.types, input, out)
                })?;
                self.write(out, b"}")
            }
            Schema::Union(u) => {
                let i = long(input)?;
                let branch = usize::try_from(i)
                    .ok()
                    .and_then(|i| u.variants().get(i))
                    .ok_or_else(|| format!("union branch {i} of {}", u.variants().len()))?;
                self.value(branch, input, out)
            }
            Schema::Ref { name } => {
                let names = self.names;
                let named = names
                    .get(name)
                    .ok_or_else(|| format!("an unknown type `{}`", name.fullname(None)))?;
                self.value(named, input, out)
            }
            // Decimals as their unscaled bytes, as apache-avro's JSON has them.
            Schema::Decimal(d) => self.value(&d.inner, input, out),
            Schema::BigDecimal => self.value(&Schema::Bytes, input, out),
            Schema::Duration => {
                let bytes = take(input, 12)?;
                self.json(out, &bytes)
            }
            // A uuid annotates a string (fixed(16) uuids are read as text
            // and fail as such).
            Schema::Uuid => self.value(&Schema::String, input, out),
        }
    }

    fn number(&mut self, out: &mut Vec<u8>, f: f64) -> Result<()> {
        if !f.is_finite() {
            return Err(format!("{f} has no JSON form"));
        }
        self.json(out, &f)
    }
}

/// Writes JSON values as Avro.
pub struct Encoder<'a> {
    pub names: &'a Names,
}

fn put_long(n: i64, out: &mut Vec<u8>) {
    let mut z = ((n << 1) ^ (n >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

/// JSON as the encoder reads it: parsed once, strings borrowed from the
/// text where they have no escapes, objects as lists (records are small,
/// and a map per object cost more than the rest of encoding).
pub enum Json<'a> {
    Null,
    Bool(bool),
    Int(i64),
    /// An integer past `i64`, or a number with a fraction or exponent.
    Float(f64),
    Str(Cow<'a, str>),
    Arr(Vec<Json<'a>>),
    Obj(Vec<(Cow<'a, str>, Json<'a>)>),
}

impl<'a> Json<'a> {
    /// Parses JSON text (serde_json's nesting limit applies).
    pub fn parse(text: &'a [u8]) -> std::result::Result<Json<'a>, serde_json::Error> {
        serde_json::from_slice(text)
    }

    /// A `serde_json` value (a schema's default) seen as one.
    pub fn of(value: &'a serde_json::Value) -> Json<'a> {
        use serde_json::Value as V;
        match value {
            V::Null => Json::Null,
            V::Bool(b) => Json::Bool(*b),
            V::Number(n) => n
                .as_i64()
                .map_or(Json::Float(n.as_f64().unwrap_or(f64::NAN)), Json::Int),
            V::String(s) => Json::Str(Cow::Borrowed(s)),
            V::Array(items) => Json::Arr(items.iter().map(Json::of).collect()),
            V::Object(fields) => Json::Obj(
                fields
                    .iter()
                    .map(|(k, v)| (Cow::Borrowed(k.as_str()), Json::of(v)))
                    .collect(),
            ),
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Json::Null => "null",
            Json::Bool(_) => "a boolean",
            Json::Int(_) | Json::Float(_) => "a number",
            Json::Str(_) => "a string",
            Json::Arr(_) => "an array",
            Json::Obj(_) => "an object",
        }
    }
}

impl<'de> serde::Deserialize<'de> for Json<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = Json<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("JSON")
            }
            fn visit_unit<E>(self) -> std::result::Result<Json<'de>, E> {
                Ok(Json::Null)
            }
            fn visit_bool<E>(self, b: bool) -> std::result::Result<Json<'de>, E> {
                Ok(Json::Bool(b))
            }
            fn visit_i64<E>(self, n: i64) -> std::result::Result<Json<'de>, E> {
                Ok(Json::Int(n))
            }
            fn visit_u64<E>(self, n: u64) -> std::result::Result<Json<'de>, E> {
                Ok(i64::try_from(n).map_or(Json::Float(n as f64), Json::Int))
            }
            fn visit_f64<E>(self, n: f64) -> std::result::Result<Json<'de>, E> {
                Ok(Json::Float(n))
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> std::result::Result<Json<'de>, E> {
                Ok(Json::Str(Cow::Borrowed(s)))
            }
            fn visit_str<E>(self, s: &str) -> std::result::Result<Json<'de>, E> {
                Ok(Json::Str(Cow::Owned(s.to_owned())))
            }
            fn visit_string<E>(self, s: String) -> std::result::Result<Json<'de>, E> {
                Ok(Json::Str(Cow::Owned(s)))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> std::result::Result<Json<'de>, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(Json::Arr(items))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> std::result::Result<Json<'de>, A::Error> {
                let mut fields = Vec::new();
                while let Some(key) = map.next_key::<Json<'de>>()? {
                    let Json::Str(key) = key else {
                        return Err(serde::de::Error::custom("a key that is not a string"));
                    };
                    fields.push((key, map.next_value()?));
                }
                Ok(Json::Obj(fields))
            }
        }
        d.deserialize_any(Visit)
    }
}

impl Encoder<'_> {
    /// Appends `value` as a value of `schema`; an error names the field.
    pub fn value(&self, schema: &Schema, value: &Json<'_>, out: &mut Vec<u8>) -> Result<()> {
        use Json as J;
        let wrong = |wanted: &str| Err(format!("{wanted} expected, {} found", value.kind()));
        match (schema, value) {
            (Schema::Null, J::Null) => Ok(()),
            (Schema::Null, _) => wrong("null"),
            (Schema::Boolean, J::Bool(b)) => {
                out.push(u8::from(*b));
                Ok(())
            }
            (Schema::Boolean, _) => wrong("a boolean"),
            (Schema::Int | Schema::Date | Schema::TimeMillis, J::Int(n)) => {
                let n = i32::try_from(*n)
                    .map_err(|_| format!("an int (32 bits) expected, {n} found"))?;
                put_long(i64::from(n), out);
                Ok(())
            }
            (
                Schema::Long
                | Schema::TimeMicros
                | Schema::TimestampMillis
                | Schema::TimestampMicros
                | Schema::TimestampNanos
                | Schema::LocalTimestampMillis
                | Schema::LocalTimestampMicros
                | Schema::LocalTimestampNanos,
                J::Int(n),
            ) => {
                put_long(*n, out);
                Ok(())
            }
            (
                Schema::Int
                | Schema::Long
                | Schema::Date
                | Schema::TimeMillis
                | Schema::TimeMicros
                | Schema::TimestampMillis
                | Schema::TimestampMicros
                | Schema::TimestampNanos
                | Schema::LocalTimestampMillis
                | Schema::LocalTimestampMicros
                | Schema::LocalTimestampNanos,
                _,
            ) => wrong("an integer"),
            (Schema::Float, J::Int(n)) => {
                out.extend_from_slice(&(*n as f32).to_le_bytes());
                Ok(())
            }
            (Schema::Float, J::Float(f)) => {
                out.extend_from_slice(&(*f as f32).to_le_bytes());
                Ok(())
            }
            (Schema::Double, J::Int(n)) => {
                out.extend_from_slice(&(*n as f64).to_le_bytes());
                Ok(())
            }
            (Schema::Double, J::Float(f)) => {
                out.extend_from_slice(&f.to_le_bytes());
                Ok(())
            }
            (Schema::Float | Schema::Double, _) => wrong("a number"),
            (Schema::String, J::Str(s)) => {
                put_long(s.len() as i64, out);
                out.extend_from_slice(s.as_bytes());
                Ok(())
            }
            (Schema::String, _) => wrong("a string"),
            (Schema::Bytes, _) => {
                let bytes = bytes_of(value)?;
                put_long(bytes.len() as i64, out);
                out.extend_from_slice(&bytes);
                Ok(())
            }
            (Schema::Fixed(f), _) => {
                let bytes = bytes_of(value)?;
                if bytes.len() != f.size {
                    return Err(format!("{} bytes expected, {} found", f.size, bytes.len()));
                }
                out.extend_from_slice(&bytes);
                Ok(())
            }
            (Schema::Record(r), J::Obj(fields)) => {
                for field in &r.fields {
                    let given = fields
                        .iter()
                        .find(|(k, _)| *k == field.name)
                        .map(|(_, v)| v);
                    let default;
                    let value = match (given, &field.default) {
                        (Some(v), _) => v,
                        (None, Some(d)) => {
                            default = Json::of(d);
                            &default
                        }
                        (None, None) => {
                            return Err(format!(
                                "field `{}` is missing and has no default",
                                field.name
                            ));
                        }
                    };
                    self.value(&field.schema, value, out).map_err(|e| {
                        match e.strip_prefix("field `") {
                            Some(inner) => format!("field `{}.{inner}", field.name),
                            None => format!("field `{}`: {e}", field.name),
                        }
                    })?;
                }
                // Fields the schema lacks are left out, as the registry's
                // serializers do.
                Ok(())
            }
            (Schema::Record(_), _) => wrong("an object"),
            (Schema::Enum(e), J::Str(s)) => {
                let i = e
                    .symbols
                    .iter()
                    .position(|x| x == s.as_ref())
                    .ok_or_else(|| format!("{s:?} is not one of the enum's symbols"))?;
                put_long(i as i64, out);
                Ok(())
            }
            (Schema::Enum(_), _) => wrong("an enum symbol"),
            (Schema::Array(a), J::Arr(items)) => {
                if !items.is_empty() {
                    put_long(items.len() as i64, out);
                    for (i, item) in items.iter().enumerate() {
                        self.value(&a.items, item, out)
                            .map_err(|e| format!("item {i}: {e}"))?;
                    }
                }
                out.push(0);
                Ok(())
            }
            (Schema::Array(_), _) => wrong("an array"),
            (Schema::Map(m), J::Obj(entries)) => {
                if !entries.is_empty() {
                    put_long(entries.len() as i64, out);
                    for (k, v) in entries {
                        put_long(k.len() as i64, out);
                        out.extend_from_slice(k.as_bytes());
                        self.value(&m.types, v, out)
                            .map_err(|e| format!("key {k:?}: {e}"))?;
                    }
                }
                out.push(0);
                Ok(())
            }
            (Schema::Map(_), _) => wrong("an object"),
            (Schema::Union(u), _) => {
                // The first branch that takes it, as Avro's JSON readers do.
                let start = out.len();
                let mut why = Vec::new();
                for (i, branch) in u.variants().iter().enumerate() {
                    put_long(i as i64, out);
                    match self.value(branch, value, out) {
                        Ok(()) => return Ok(()),
                        Err(e) => {
                            out.truncate(start);
                            why.push(e);
                        }
                    }
                }
                Err(format!(
                    "no branch of the union takes it ({})",
                    why.join("; ")
                ))
            }
            (Schema::Ref { name }, _) => {
                let named = self
                    .names
                    .get(name)
                    .ok_or_else(|| format!("an unknown type `{}`", name.fullname(None)))?;
                self.value(named, value, out)
            }
            (Schema::Decimal(d), _) => self.value(&d.inner, value, out),
            (Schema::BigDecimal, _) => self.value(&Schema::Bytes, value, out),
            (Schema::Duration, _) => {
                let bytes = bytes_of(value)?;
                if bytes.len() != 12 {
                    return Err(format!("12 bytes expected, {} found", bytes.len()));
                }
                out.extend_from_slice(&bytes);
                Ok(())
            }
            (Schema::Uuid, _) => self.value(&Schema::String, value, out),
        }
    }
}

/// Bytes written in JSON: an array of byte values, or a string whose
/// characters are bytes (Avro's JSON encoding).
fn bytes_of(value: &Json<'_>) -> Result<Vec<u8>> {
    match value {
        Json::Arr(items) => items
            .iter()
            .map(|i| match i {
                Json::Int(b) => {
                    u8::try_from(*b).map_err(|_| "bytes (0 to 255) expected".to_owned())
                }
                _ => Err("bytes (0 to 255) expected".to_owned()),
            })
            .collect(),
        Json::Str(s) => s
            .chars()
            .map(|c| u8::try_from(u32::from(c)).map_err(|_| format!("{c:?} is not a byte")))
            .collect(),
        other => Err(format!("bytes expected, {} found", other.kind())),
    }
}
