//! Session windows with a custom aggregation: per key, the distinct record
//! values of each session (records at most `gap_ms` apart, `grace_ms`
//! optional). The host keeps the windows; this plugin only says how to fold
//! a value into a session (`reduce`) and how to join two sessions that a
//! record bridges (`merge`). Each closed session becomes a record keyed by
//! the record key with value `{"start": S, "end": E, "values": [...]}`
//! (values sorted, `end` the last instant).

use std::collections::BTreeSet;

use weir_sdk::{
    Config, Emitter, Error, Output, Record, Transform, Window, WindowResult, WindowSpec,
};

struct SessionCollect {
    window: Window,
}

/// The accumulator: sorted distinct values, one per line.
fn decode(acc: &[u8]) -> BTreeSet<String> {
    String::from_utf8_lossy(acc)
        .lines()
        .map(str::to_owned)
        .collect()
}

fn encode(set: &BTreeSet<String>) -> Vec<u8> {
    set.iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join("\n")
        .into_bytes()
}

impl Transform for SessionCollect {
    fn init(config: &Config) -> Result<Self, String> {
        let gap = config
            .parse::<u64>("gap_ms")?
            .ok_or("config `gap_ms` is required")?;
        let spec = WindowSpec::session(gap)
            .grace_ms(config.parse_or("grace_ms", 0)?)
            .custom()
            .emit_on_close();
        Ok(SessionCollect {
            window: spec.define("values")?,
        })
    }

    fn process(&mut self, record: &Record<'_>, out: &mut Emitter) -> Result<(), Error> {
        let value = record
            .value_str()
            .ok_or_else(|| Error::reject("value is not UTF-8 text"))?;
        if value.contains('\n') {
            return Err(Error::reject("value contains a newline"));
        }
        out.add_custom_to_window_at(
            self.window,
            record.key().unwrap_or_default(),
            record.timestamp(),
            value.as_bytes(),
        );
        Ok(())
    }

    fn reduce(
        &mut self,
        _: Window,
        _: &[u8],
        acc: Option<Vec<u8>>,
        values: Vec<Vec<u8>>,
    ) -> Vec<u8> {
        let mut set = acc.map(|a| decode(&a)).unwrap_or_default();
        set.extend(
            values
                .iter()
                .map(|v| String::from_utf8_lossy(v).into_owned()),
        );
        encode(&set)
    }

    fn merge(&mut self, _: Window, _: &[u8], a: Vec<u8>, b: Vec<u8>) -> Vec<u8> {
        let mut set = decode(&a);
        set.extend(decode(&b));
        encode(&set)
    }

    fn on_window(&mut self, w: &WindowResult<'_>, out: &mut Emitter) -> Result<(), Error> {
        let values: Vec<String> = decode(w.custom.unwrap_or_default()).into_iter().collect();
        let value =
            serde_json::json!({ "start": w.start, "end": w.end, "values": values }).to_string();
        out.emit(Output::new().key(w.key).value(&value));
        Ok(())
    }
}

weir_sdk::export!(SessionCollect);
