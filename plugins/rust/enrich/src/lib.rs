//! Stream-table join: enriches each record with the value its key has in a
//! table (orders with their customers). Config `table` names the table
//! (default `customers`); `join` is `inner` (default: records whose key is
//! not in the table, or that have no key, are dropped) or `left` (they
//! pass with nothing appended).
//!
//! An output keeps the record's key and timestamp; its value is the
//! record's value, `;`, and the table's value (an empty one for a left
//! join's miss; a null value counts as empty).

use weir_sdk::{Config, Emitter, Error, Output, Record, Table, Transform};

struct Enrich {
    table: Table,
    left: bool,
}

impl Transform for Enrich {
    fn init(config: &Config) -> Result<Self, String> {
        let table = Table::open(config.get("table").unwrap_or("customers"))?;
        let left = match config.get("join").unwrap_or("inner") {
            "inner" => false,
            "left" => true,
            other => return Err(format!("join must be `inner` or `left`, not `{other}`")),
        };
        Ok(Enrich { table, left })
    }

    fn process(&mut self, record: &Record<'_>, out: &mut Emitter) -> Result<(), Error> {
        let found = record.key().and_then(|k| self.table.get(k));
        if found.is_none() && !self.left {
            return Ok(());
        }
        let value = [
            record.value().unwrap_or_default(),
            b";",
            found.as_deref().unwrap_or_default(),
        ]
        .concat();
        out.emit(
            Output::new()
                .key_opt(record.key())
                .value(&value)
                .timestamp(record.timestamp()),
        );
        Ok(())
    }
}

weir_sdk::export!(Enrich);
