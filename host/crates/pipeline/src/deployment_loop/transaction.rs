//! The deployment's transactional producer on this host, and whether a
//! transaction is open.

use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use weir_kafka::producer::Producer;

/// The deployment's transactional producer on this host (its id is
/// `{group}.{host}`: a host that restarts fences its predecessor and
/// aborts what it left open).
#[derive(Default)]
pub(super) struct Transaction {
    producer: Option<Producer>,
    open: bool,
    /// Making the producer failed (brokers away): not again before this,
    /// so the polling loop does not wait on it after every batch.
    retry_at: Option<Instant>,
    /// The producer being made on a thread of its own ([`prepare`]).
    ///
    /// [`prepare`]: Transaction::prepare
    making: Option<JoinHandle<Result<Producer>>>,
}

/// Makes a transactional producer.
pub(super) type MakeProducer = Box<dyn FnOnce() -> Result<Producer> + Send>;

impl Transaction {
    pub(super) fn is_open(&self) -> bool {
        self.open
    }

    /// The producer of the open transaction, if one is open.
    pub(super) fn sending(&self) -> Option<&Producer> {
        self.producer.as_ref().filter(|_| self.open)
    }

    /// Starts making the producer off the loop's thread, unless there is
    /// one: making it takes round trips to the transaction coordinator
    /// (hundreds of ms on a busy broker), which the first commit would
    /// otherwise spend with every partition waiting.
    pub(super) fn prepare(&mut self, make: MakeProducer) {
        if !self.unprepared() {
            return;
        }
        self.making = std::thread::Builder::new()
            .name("weir-txn-producer".into())
            .spawn(make)
            .ok();
    }

    /// Opens a transaction unless one is open, with the producer made
    /// already, the one being made (waited for), or one `make` makes now
    /// (also when the one being made failed: the brokers may be back).
    pub(super) fn begin(&mut self, make: impl FnOnce() -> MakeProducer) -> Result<&Producer> {
        if self.producer.is_none() {
            if self.failed_lately() {
                bail!("the transactional producer failed a moment ago");
            }
            let made = match self.making.take().map(JoinHandle::join) {
                Some(Ok(Ok(producer))) => Ok(producer),
                _ => make()(),
            };
            self.retry_at = made
                .is_err()
                .then(|| Instant::now() + Duration::from_secs(1));
            self.producer = Some(made?);
        }
        let producer = self.producer.as_ref().expect("made");
        if !self.open {
            if let Err(e) = producer.begin_transaction() {
                self.ended(false);
                return Err(e).context("beginning a transaction");
            }
            self.open = true;
        }
        Ok(self.producer.as_ref().expect("made"))
    }

    /// Neither made nor being made, nor failed a moment ago.
    pub(super) fn unprepared(&self) -> bool {
        self.producer.is_none() && self.making.is_none() && !self.failed_lately()
    }

    fn failed_lately(&self) -> bool {
        self.retry_at.is_some_and(|at| Instant::now() < at)
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

impl Drop for Transaction {
    fn drop(&mut self) {
        // Made to the end here: a producer of the same id made later (by
        // this deployment started again) must not be fenced by this one.
        if let Some(thread) = self.making.take() {
            let _ = thread.join();
        }
    }
}
