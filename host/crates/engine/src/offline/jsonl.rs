//! The JSON Lines record format of `weir test` (a stable interface: see
//! the README).
//!
//! Input, one record per line: `key` and `value` as UTF-8 strings (or
//! `key_b64`/`value_b64` for bytes; absent or null = a null key/value),
//! `timestamp` in ms (default 0), `headers` as an object of name to string
//! (null for a null value, `{"b64": "..."}` for bytes), and optional
//! `topic`, `partition` and `offset`. A line may also set the test's wall
//! clock with `wall_clock` (ms since the epoch) before its record; a line
//! with `wall_clock` alone is no record, only a tick of the clock. Wall-clock
//! timers due at the new time fire at that line. A line with `table` (a
//! table's name), `key` and `value` is no record either: it sets the key in
//! that table (a null value removes it) for the records after it.
//!
//! Output, one produced record per line: `topic`, `key`, `value` (strings,
//! or `key_b64`/`value_b64` when not UTF-8), `timestamp`, `headers`.

use anyhow::{Context, Result, anyhow, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Map, Value};

#[derive(Clone, Debug, PartialEq)]
pub struct InputLine {
    /// 1-based line number in the input.
    pub line: usize,
    pub topic: Option<String>,
    pub partition: i32,
    pub offset: Option<i64>,
    pub timestamp: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
    /// The wall clock to set before this line's record (`weir test` only).
    pub wall_clock: Option<i64>,
    /// False for a line that only sets the wall clock or a table.
    pub is_record: bool,
    /// The table this line updates, if it is a table line.
    pub table: Option<String>,
}

const FIELDS: &[&str] = &[
    "key",
    "value",
    "key_b64",
    "value_b64",
    "timestamp",
    "headers",
    "topic",
    "partition",
    "offset",
    "wall_clock",
    "table",
];
/// What a table line may hold besides `table`.
const TABLE_FIELDS: &[&str] = &["key", "value", "key_b64", "value_b64"];

fn bytes_field(obj: &Map<String, Value>, text: &str, b64: &str) -> Result<Option<Vec<u8>>> {
    match (obj.get(text), obj.get(b64)) {
        (Some(v), Some(w)) if !v.is_null() && !w.is_null() => {
            bail!("both `{text}` and `{b64}` are set")
        }
        (Some(Value::String(s)), _) => Ok(Some(s.as_bytes().to_vec())),
        (Some(Value::Null) | None, Some(Value::String(s))) => Ok(Some(
            B64.decode(s)
                .with_context(|| format!("`{b64}` is not base64"))?,
        )),
        (Some(Value::Null) | None, Some(Value::Null) | None) => Ok(None),
        // A typed record's fields (`weir test --schema`), as JSON text.
        (Some(v @ (Value::Object(_) | Value::Array(_))), _) => Ok(Some(v.to_string().into_bytes())),
        (Some(_), _) => {
            bail!("`{text}` must be a string, a JSON object or array (its text), or null")
        }
        (_, Some(_)) => bail!("`{b64}` must be a base64 string or null"),
    }
}

fn header_value(name: &str, v: &Value) -> Result<Option<Vec<u8>>> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s.as_bytes().to_vec())),
        Value::Object(o) if o.len() == 1 && o.get("b64").is_some_and(Value::is_string) => Ok(Some(
            B64.decode(o["b64"].as_str().unwrap_or_default())
                .with_context(|| format!("header `{name}`: `b64` is not base64"))?,
        )),
        _ => bail!("header `{name}` must be a string, null or {{\"b64\": \"...\"}}"),
    }
}

pub fn parse_line(line: usize, text: &str) -> Result<InputLine> {
    let value: Value =
        serde_json::from_str(text).map_err(|e| anyhow!("line {line}: invalid JSON: {e}"))?;
    let Value::Object(obj) = value else {
        bail!("line {line}: expected a JSON object")
    };
    let at = |e: anyhow::Error| anyhow!("line {line}: {e:#}");
    if let Some(unknown) = obj.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        bail!(
            "line {line}: unknown field `{unknown}` (known: {})",
            FIELDS.join(", ")
        );
    }
    let int = |name: &str| -> Result<Option<i64>> {
        match obj.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_i64()
                .map(Some)
                .ok_or_else(|| anyhow!("line {line}: `{name}` must be an integer")),
        }
    };
    let headers = match obj.get("headers") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Object(h)) => h
            .iter()
            .map(|(k, v)| Ok((k.clone(), header_value(k, v).map_err(at)?)))
            .collect::<Result<_>>()?,
        Some(_) => bail!("line {line}: `headers` must be an object"),
    };
    let table = match obj.get("table") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        Some(_) => bail!("line {line}: `table` must be a table's name"),
    };
    if table.is_some() {
        if let Some(other) = obj
            .keys()
            .find(|k| *k != "table" && !TABLE_FIELDS.contains(&k.as_str()))
        {
            bail!("line {line}: a table line takes only `key` and `value`, not `{other}`");
        }
        if [obj.get("key"), obj.get("key_b64")]
            .iter()
            .all(|k| k.is_none_or(Value::is_null))
        {
            bail!("line {line}: a table line needs a `key` (a table has no null key)");
        }
    }
    let partition = int("partition")?.unwrap_or(0);
    Ok(InputLine {
        line,
        topic: match obj.get("topic") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => bail!("line {line}: `topic` must be a string"),
        },
        partition: i32::try_from(partition)
            .map_err(|_| anyhow!("line {line}: `partition` out of range"))?,
        offset: int("offset")?,
        timestamp: int("timestamp")?.unwrap_or(0),
        key: bytes_field(&obj, "key", "key_b64").map_err(at)?,
        value: bytes_field(&obj, "value", "value_b64").map_err(at)?,
        headers,
        wall_clock: int("wall_clock")?,
        is_record: table.is_none() && !(obj.len() == 1 && obj.contains_key("wall_clock")),
        table,
    })
}

/// Reads every record of a JSON Lines text; blank lines are skipped.
pub fn parse(text: &str) -> Result<Vec<InputLine>> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| parse_line(i + 1, l))
        .collect()
}

fn put_bytes(obj: &mut Map<String, Value>, name: &str, bytes: Option<&[u8]>) {
    match bytes {
        None => {
            obj.insert(name.to_owned(), Value::Null);
        }
        Some(b) => match std::str::from_utf8(b) {
            Ok(s) => {
                obj.insert(name.to_owned(), Value::String(s.to_owned()));
            }
            Err(_) => {
                obj.insert(format!("{name}_b64"), Value::String(B64.encode(b)));
            }
        },
    }
}

/// One output record as a JSON line (without the newline).
pub fn output_line<'a>(
    topic: &str,
    key: Option<&[u8]>,
    value: Option<&[u8]>,
    timestamp: i64,
    headers: impl Iterator<Item = (&'a str, Option<&'a [u8]>)>,
) -> String {
    let mut obj = Map::new();
    obj.insert("topic".into(), Value::String(topic.to_owned()));
    put_bytes(&mut obj, "key", key);
    put_bytes(&mut obj, "value", value);
    obj.insert("timestamp".into(), Value::from(timestamp));
    let mut h = Map::new();
    for (name, v) in headers {
        let v = match v {
            None => Value::Null,
            Some(b) => match std::str::from_utf8(b) {
                Ok(s) => Value::String(s.to_owned()),
                Err(_) => serde_json::json!({ "b64": B64.encode(b) }),
            },
        };
        h.insert(name.to_owned(), v);
    }
    obj.insert("headers".into(), Value::Object(h));
    Value::Object(obj).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_text_bytes_and_headers() {
        let l = parse_line(3, r#"{"key":"k","value_b64":"AAE=","timestamp":5,"headers":{"a":"x","n":null,"b":{"b64":"/w=="}},"partition":2}"#).unwrap();
        assert_eq!(l.key.as_deref(), Some(&b"k"[..]));
        assert_eq!(l.value.as_deref(), Some(&[0u8, 1][..]));
        assert_eq!(l.timestamp, 5);
        assert_eq!(l.partition, 2);
        assert_eq!(
            l.headers,
            vec![
                ("a".into(), Some(b"x".to_vec())),
                ("b".into(), Some(vec![0xFF])),
                ("n".into(), None)
            ]
        );
    }

    #[test]
    fn a_wall_clock_line_alone_is_no_record() {
        let tick = parse_line(1, r#"{"wall_clock": 60000}"#).unwrap();
        assert_eq!((tick.wall_clock, tick.is_record), (Some(60000), false));
        let both = parse_line(2, r#"{"wall_clock": 5, "value": "v"}"#).unwrap();
        assert_eq!((both.wall_clock, both.is_record), (Some(5), true));
        assert!(parse_line(3, r#"{"value": "v"}"#).unwrap().is_record);
    }

    #[test]
    fn errors_name_the_line_and_the_problem() {
        let e = parse("{}\n{\"value\": 3}\n").unwrap_err().to_string();
        assert!(
            e.contains("line 2") && e.contains("`value` must be a string"),
            "{e}"
        );
        let e = parse_line(1, r#"{"vlaue":"x"}"#).unwrap_err().to_string();
        assert!(e.contains("unknown field `vlaue`"), "{e}");
        assert!(
            parse_line(9, "not json")
                .unwrap_err()
                .to_string()
                .starts_with("line 9: invalid JSON")
        );
    }

    #[test]
    fn outputs_bytes_that_are_not_utf8_as_base64() {
        let line = output_line(
            "t",
            None,
            Some(&[0xFF, 0]),
            7,
            [("h", Some(&b"v"[..]))].into_iter(),
        );
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["key"], Value::Null);
        assert_eq!(v["value_b64"], "/wA=");
        assert_eq!(v["headers"]["h"], "v");
        assert_eq!(v["timestamp"], 7);
    }
}
