//! The deployment's transactional producer on this host, and whether a
//! transaction is open.

use std::time::Instant;

use weir_kafka::producer::Producer;

/// The deployment's transactional producer on this host (its id is
/// `{group}.{host}`: a host that restarts fences its predecessor and
/// aborts what it left open).
#[derive(Default)]
pub(super) struct Transaction {
    pub(super) producer: Option<Producer>,
    pub(super) open: bool,
    /// Making the producer failed (brokers away): not again before this,
    /// so the polling loop does not wait on it after every batch.
    pub(super) retry_at: Option<Instant>,
}

impl Transaction {
    pub(super) fn is_open(&self) -> bool {
        self.open
    }

    /// The producer of the open transaction, if one is open.
    pub(super) fn sending(&self) -> Option<&Producer> {
        self.producer.as_ref().filter(|_| self.open)
    }

    /// The transaction ended: `ok`, or not, when its producer (fenced, or
    /// failed) is not used again.
    pub(super) fn ended(&mut self, ok: bool) {
        self.open = false;
        if !ok {
            self.producer = None;
        }
    }
}
