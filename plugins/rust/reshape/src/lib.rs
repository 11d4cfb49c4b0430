//! Field-level map over typed records, the conformance plugin of record
//! formats: a deployment with `formats.value = "avro"` hands it each order
//! as JSON, and encodes what it emits with the output schema.
//!
//! In: `{"id": long, "item": string, "qty": int}`. Out: the item
//! upper-cased, the quantity doubled and the writer's schema id (the
//! `weir.value.schema-id` header) as `schema_id`. An item named `unfit`
//! gets its quantity as text, which no output schema of this shape
//! accepts: the conformance tests' bad output.

use serde::{Deserialize, Serialize};
use weir_sdk::{Emitter, Error, Output, Record};

#[derive(Deserialize)]
struct Order<'a> {
    id: i64,
    #[serde(borrow)]
    item: std::borrow::Cow<'a, str>,
    qty: i64,
}

/// What it writes; `qty` is a number, or text for an `unfit` item.
#[derive(Serialize)]
struct Shipped {
    id: i64,
    item: String,
    qty: Qty,
    schema_id: i64,
}

#[derive(Serialize)]
#[serde(untagged)]
enum Qty {
    Number(i64),
    Text(String),
}

fn reshape(record: &Record<'_>, out: &mut Emitter) -> Result<(), Error> {
    let order: Order = record.value_json()?;
    let schema_id: i64 = record
        .header("weir.value.schema-id")
        .flatten()
        .and_then(|v| std::str::from_utf8(v).ok()?.parse().ok())
        .unwrap_or(-1);
    let qty = if order.item == "unfit" {
        Qty::Text((order.qty * 2).to_string())
    } else {
        Qty::Number(order.qty * 2)
    };
    let value = serde_json::to_vec(&Shipped {
        id: order.id,
        item: order.item.to_uppercase(),
        qty,
        schema_id,
    })?;
    out.emit(Output::new().key_opt(record.key()).value(&value));
    Ok(())
}

weir_sdk::export!(fn reshape);
