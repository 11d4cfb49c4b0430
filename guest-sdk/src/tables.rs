//! Tables the deployment declares: the latest value of each key of a
//! compacted topic, kept up to date by the host, read-only (world 0.2.1).
//! Open them in [`Transform::init`](crate::Transform::init), read them
//! while processing:
//!
//! ```no_run
//! use weir_sdk::{Config, Emitter, Error, Output, Record, Table, Transform};
//!
//! struct Enrich {
//!     customers: Table,
//! }
//!
//! impl Transform for Enrich {
//!     fn init(_config: &Config) -> Result<Self, String> {
//!         Ok(Enrich { customers: Table::open("customers")? })
//!     }
//!
//!     fn process(&mut self, record: &Record<'_>, out: &mut Emitter) -> Result<(), Error> {
//!         let Some(customer) = record.key().and_then(|k| self.customers.get(k)) else { return Ok(()) };
//!         let value = [record.value().unwrap_or_default(), b";", &customer].concat();
//!         out.emit(Output::new().key_opt(record.key()).value(&value));
//!         Ok(())
//!     }
//! }
//! ```
//!
//! A record sees the table as the host has loaded it when the record is
//! processed (as Kafka Streams' `GlobalKTable`), not as of the record's
//! timestamp.

use crate::bindings::weir::transform::tables as wit;

/// A table, opened by the name the deployment gives it.
#[derive(Clone, Copy, Debug)]
pub struct Table {
    id: u32,
}

impl Table {
    /// The table the deployment declares as `name`; the error names the
    /// tables it declares.
    pub fn open(name: &str) -> Result<Table, String> {
        wit::open(name).map(|id| Table { id })
    }

    pub fn get(&self, key: impl AsRef<[u8]>) -> Option<Vec<u8>> {
        wit::get(self.id, key.as_ref())
    }

    /// Up to `limit` entries with `start <= key < end` in key order.
    pub fn range(&self, start: &[u8], end: Option<&[u8]>, limit: u32) -> Vec<(Vec<u8>, Vec<u8>)> {
        wit::range(self.id, start, end, limit)
            .into_iter()
            .map(|e| (e.key, e.value))
            .collect()
    }

    /// Every entry whose key starts with `prefix`, in key order, fetched
    /// from the host a page at a time.
    pub fn scan_prefix<'a>(
        &self,
        prefix: &'a [u8],
    ) -> impl Iterator<Item = (Vec<u8>, Vec<u8>)> + 'a {
        let id = self.id;
        crate::state::paged(move |after, page| wit::prefix(id, prefix, after, page))
    }
}
