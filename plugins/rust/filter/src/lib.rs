//! Filter: keeps records whose JSON value has `field` (a JSON pointer,
//! default `/level`) equal to `equals` (default `error`). A value that is not
//! JSON is rejected, so it reaches the dead-letter topic instead of vanishing.

use weir_sdk::{Config, Emitter, Error, Record, Transform};

struct Filter {
    field: String,
    equals: String,
}

impl Transform for Filter {
    fn init(config: &Config) -> Result<Self, String> {
        let field = config.get("field").unwrap_or("/level").to_owned();
        if !field.starts_with('/') {
            return Err(format!(
                "config `field` = `{field}`: a JSON pointer starts with `/`"
            ));
        }
        Ok(Filter {
            field,
            equals: config.get("equals").unwrap_or("error").to_owned(),
        })
    }

    fn process(&mut self, record: &Record<'_>, out: &mut Emitter) -> Result<(), Error> {
        let value: serde_json::Value = record.value_json()?;
        let keep = match value.pointer(&self.field) {
            Some(serde_json::Value::String(s)) => *s == self.equals,
            Some(other) => other.to_string() == self.equals,
            None => false,
        };
        if keep {
            out.forward(record);
        }
        Ok(())
    }
}

weir_sdk::export!(Filter);
