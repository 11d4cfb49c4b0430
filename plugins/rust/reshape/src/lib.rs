//! Field-level map over typed records, the conformance plugin of record
//! formats: a deployment with `formats.value = "avro"` hands it each order
//! as JSON, and encodes what it emits with the output schema.
//!
//! In: `{"id": long, "item": string, "qty": int}`. Out: the item
//! upper-cased, the quantity doubled and the writer's schema id (the
//! `weir.value.schema-id` header) as `schema_id`. An item named `unfit`
//! gets its quantity as text, which no output schema of this shape
//! accepts: the conformance tests' bad output.

use serde::Deserialize;
use weir_sdk::{Emitter, Error, Output, Record};

#[derive(Deserialize)]
struct Order {
    id: i64,
    item: String,
    qty: i64,
}

fn reshape(record: &Record<'_>, out: &mut Emitter) -> Result<(), Error> {
    let order: Order = record.value_json()?;
    let schema_id: i64 = record
        .header("weir.value.schema-id")
        .flatten()
        .and_then(|v| std::str::from_utf8(v).ok()?.parse().ok())
        .unwrap_or(-1);
    let qty = if order.item == "unfit" {
        serde_json::json!((order.qty * 2).to_string())
    } else {
        serde_json::json!(order.qty * 2)
    };
    let value = serde_json::json!({
        "id": order.id,
        "item": order.item.to_uppercase(),
        "qty": qty,
        "schema_id": schema_id,
    });
    let value = serde_json::to_vec(&value)?;
    out.emit(Output::new().key_opt(record.key()).value(&value));
    Ok(())
}

weir_sdk::export!(fn reshape);
