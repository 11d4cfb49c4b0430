//! Counts records per key in windows computed by the host.
//!
//! Config: `window` = `tumbling` | `hopping` | `sliding` | `session` |
//! `count-tumbling` | `count-hopping`, `size_ms` (tumbling, hopping,
//! sliding), `advance_ms` (hopping), `gap_ms` (session), `count` and `step`
//! (count windows; a result's start and end are its first and last values'
//! timestamps), `grace_ms` (default 0), `emit` = `final` (default) | `update`,
//! and optionally `idle_close_ms`. Each result becomes a record keyed by the
//! record key with value `{"start": S, "end": E, "count": N}`; `end` is
//! exclusive for tumbling and hopping windows and the inclusive last instant
//! for sliding and session windows, as Kafka Streams reports them. In
//! update mode a session merged into another is reported with count 0.

use weir_sdk::{
    Config, Emitter, Error, Output, Record, Transform, Window, WindowResult, WindowSpec,
};

const MSG: &str = "expected tumbling, hopping, sliding, session, count-tumbling or count-hopping";

struct WindowCount {
    window: Window,
}

fn spec(config: &Config) -> Result<WindowSpec, String> {
    let ms = |key: &str| {
        config
            .parse::<u64>(key)?
            .ok_or_else(|| format!("config `{key}` is required for this window"))
    };
    let spec = match config.require("window")? {
        "tumbling" => WindowSpec::tumbling(ms("size_ms")?),
        "hopping" => WindowSpec::hopping(ms("size_ms")?, ms("advance_ms")?),
        "sliding" => WindowSpec::sliding(ms("size_ms")?),
        "session" => WindowSpec::session(ms("gap_ms")?),
        "count-tumbling" => WindowSpec::count_tumbling(ms("count")?),
        "count-hopping" => WindowSpec::count_hopping(ms("count")?, ms("step")?),
        other => return Err(format!("config `window` = `{other}`: {MSG}")),
    };
    let spec = spec.grace_ms(config.parse_or("grace_ms", 0)?).count();
    let spec = match config.get("emit").unwrap_or("final") {
        "final" => spec.emit_on_close(),
        "update" => spec.emit_on_update(),
        other => {
            return Err(format!(
                "config `emit` = `{other}`: expected final or update"
            ));
        }
    };
    Ok(match config.parse::<u64>("idle_close_ms")? {
        Some(ms) => spec.idle_close_ms(ms),
        None => spec,
    })
}

impl Transform for WindowCount {
    fn init(config: &Config) -> Result<Self, String> {
        Ok(WindowCount {
            window: spec(config)?.define("count")?,
        })
    }

    fn process(&mut self, record: &Record<'_>, out: &mut Emitter) -> Result<(), Error> {
        out.add_to_window(self.window, record.key().unwrap_or_default(), 1.0);
        Ok(())
    }

    fn on_window(&mut self, w: &WindowResult<'_>, out: &mut Emitter) -> Result<(), Error> {
        let value = format!(
            r#"{{"start":{},"end":{},"count":{}}}"#,
            w.start, w.end, w.count
        );
        out.emit(Output::new().key(w.key).value(&value));
        Ok(())
    }
}

weir_sdk::export!(WindowCount);
