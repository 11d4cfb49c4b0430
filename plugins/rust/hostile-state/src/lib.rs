//! Hostile: for every record, writes a fresh 64 KiB value to state under a
//! key of its own (`flood/` and the record's key, or its offset when it has
//! none) and forwards the record. A record whose value is `delete` deletes
//! that key instead; one whose value is `read` only reads it.

use weir_sdk::{Emitter, Error, Record, state};

fn flood(record: &Record<'_>, out: &mut Emitter) -> Result<(), Error> {
    let mut key = b"flood/".to_vec();
    match record.key() {
        Some(k) => key.extend_from_slice(k),
        None => key.extend_from_slice(record.offset().to_string().as_bytes()),
    }
    match record.value() {
        Some(b"delete") => state::delete(&key),
        Some(b"read") => {
            let _ = state::get(&key);
        }
        _ => state::set(&key, vec![b'x'; 64 << 10]),
    }
    out.forward(record);
    Ok(())
}

weir_sdk::export!(fn flood);
