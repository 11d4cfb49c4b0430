//! One producer per host process, with delivery tracking: every produced
//! record belongs to an [`Acks`] group, and an input offset is committed
//! only once the groups of its batch are fully acknowledged.
//!
//! A failed delivery is either transient (the broker was away past the
//! producer's retries) or permanent: the record could never be produced (too
//! large for its topic, the topic gone or denied). Retrying a permanent one
//! would loop forever, so those are reported with what the record was, for
//! the failure policy of the input record it came from.
//!
//! (Over 400 lines: the shared and the transactional producer share delivery tracking and its
//! failure handling.)

use parking_lot::Mutex;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rdkafka::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{
    BaseRecord, DeliveryResult, Producer as _, ProducerContext, ThreadedProducer,
};

use crate::config::KafkaConfig;

/// What a produced record is, for what to do when it cannot be delivered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// An output of the input record at this index of its batch (none: of
    /// a window closed without an input record).
    Output(Option<u32>),
    /// The dead letter of the input record at this index.
    DeadLetter(u32),
    /// Its dead letter without the value, after the whole one failed.
    BareDeadLetter(u32),
    /// A late record's copy.
    Late(u32),
    /// A state change.
    Changelog,
}

/// A record that could never be delivered.
#[derive(Clone, Debug)]
pub struct Undeliverable {
    pub role: Role,
    pub topic: String,
    pub error: String,
}

/// Delivery state of a group of records.
#[derive(Default)]
pub struct Acks {
    outstanding: AtomicUsize,
    failures: Mutex<Failures>,
    /// Highest offset a record of the group was written at.
    max_offset: AtomicI64,
}

#[derive(Default)]
struct Failures {
    transient: Option<String>,
    permanent: Vec<Undeliverable>,
}

/// How a settled group went.
#[derive(Debug)]
pub enum Settled {
    Delivered,
    /// Some records may be delivered by trying again.
    Transient(String),
    /// Every failed record failed for good.
    Permanent(Vec<Undeliverable>),
}

impl Acks {
    pub fn new() -> Arc<Acks> {
        Arc::new(Acks {
            max_offset: AtomicI64::new(-1),
            ..Acks::default()
        })
    }

    /// All records delivered (or failed).
    pub fn settled(&self) -> bool {
        self.outstanding.load(Ordering::Acquire) == 0
    }

    /// How the group went; meaningful once [`settled`](Self::settled).
    pub fn outcome(&self) -> Settled {
        let f = self.failures.lock();
        match (&f.transient, f.permanent.is_empty()) {
            (Some(e), _) => Settled::Transient(e.clone()),
            (None, false) => Settled::Permanent(f.permanent.clone()),
            (None, true) => Settled::Delivered,
        }
    }

    /// A record of the group that was never sent, for a reason trying
    /// again may fix.
    pub fn refuse(&self, why: &str) {
        let mut f = self.failures.lock();
        f.transient.get_or_insert_with(|| why.to_owned());
    }

    pub fn max_offset(&self) -> i64 {
        self.max_offset.load(Ordering::Acquire)
    }

    /// A record of the group was handed to a producer: the group is
    /// unsettled until its report comes ([`Acks::reported`]).
    pub fn sent(&self) {
        self.outstanding.fetch_add(1, Ordering::AcqRel);
    }

    /// The delivery report of a record of the group sent as `role`:
    /// written at an offset, or failed. Whoever delivers records (the
    /// producer, or a test's stand-in) reports each record sent once.
    pub fn reported(&self, role: Role, topic: &str, result: Result<i64, &KafkaError>) {
        match result {
            Ok(offset) => self.delivered(offset),
            Err(e) => {
                self.fail(role, topic, e);
                self.outstanding.fetch_sub(1, Ordering::AcqRel);
            }
        }
    }

    /// A record of the group was written at `offset` (see
    /// [`Acks::reported`]).
    pub fn delivered(&self, offset: i64) {
        self.max_offset.fetch_max(offset, Ordering::AcqRel);
        self.outstanding.fetch_sub(1, Ordering::AcqRel);
    }

    fn fail(&self, role: Role, topic: &str, error: &KafkaError) {
        let mut f = self.failures.lock();
        if permanent(error) {
            f.permanent.push(Undeliverable {
                role,
                topic: topic.to_owned(),
                error: error.to_string(),
            });
        } else if f.transient.is_none() {
            f.transient = Some(error.to_string());
        }
    }
}

/// Errors no retry can fix: the record, its topic or the producer's rights
/// are wrong.
fn permanent(error: &KafkaError) -> bool {
    use RDKafkaErrorCode::*;
    let code = match error {
        KafkaError::MessageProduction(code) => *code,
        _ => return false,
    };
    matches!(
        code,
        MessageSizeTooLarge
            | InvalidMessageSize
            | InvalidMessage
            | InvalidRecord
            | MessageBatchTooLarge
            | UnknownTopicOrPartition
            | UnknownTopic
            | UnknownPartition
            | InvalidTopic
            | TopicAuthorizationFailed
            | ClusterAuthorizationFailed
            | PolicyViolation
            | InvalidRequiredAcks
            | UnsupportedForMessageFormat
    )
}

/// What a producer's deliveries show of its health.
#[derive(Default)]
pub struct Progress {
    /// Records sent and not yet reported delivered or failed.
    pending: AtomicUsize,
    /// Counts reports, and sends that found nothing pending: a change is
    /// progress. A count, not a time, so that no report reads the clock.
    moves: AtomicU64,
    /// The count [`Progress::quiet_for`] last saw, and when it first did.
    seen: Mutex<Option<(u64, Instant)>>,
}

impl Progress {
    fn moved(&self) {
        self.moves.fetch_add(1, Ordering::Relaxed);
    }

    /// How long nothing moved, as far as the calls to this one saw (they
    /// come every few seconds: the stall watch's own pace).
    fn quiet_for(&self) -> Duration {
        let moves = self.moves.load(Ordering::Relaxed);
        let mut seen = self.seen.lock();
        match *seen {
            Some((m, since)) if m == moves => since.elapsed(),
            _ => {
                *seen = Some((moves, Instant::now()));
                Duration::ZERO
            }
        }
    }
}

pub struct DeliveryContext {
    progress: Arc<Progress>,
}

impl ClientContext for DeliveryContext {}

/// Which group a record belongs to, and what it is.
pub struct Delivery {
    acks: Arc<Acks>,
    role: Role,
}

impl ProducerContext for DeliveryContext {
    type DeliveryOpaque = Box<Delivery>;

    fn delivery(&self, result: &DeliveryResult<'_>, d: Box<Delivery>) {
        self.progress.pending.fetch_sub(1, Ordering::AcqRel);
        self.progress.moved();
        match result {
            Ok(m) => d.acks.delivered(rdkafka::Message::offset(m)),
            Err((e, m)) => d.acks.reported(d.role, rdkafka::Message::topic(m), Err(e)),
        }
    }
}

/// A record to produce.
pub struct Out<'a> {
    pub topic: &'a str,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    pub headers: Option<OwnedHeaders>,
    pub timestamp: Option<i64>,
    /// Explicit partition (changelogs); none partitions by key.
    pub partition: Option<i32>,
}

#[derive(Clone)]
pub struct Producer {
    inner: Arc<parking_lot::RwLock<ThreadedProducer<DeliveryContext>>>,
    progress: Arc<Progress>,
}

impl Producer {
    pub fn new(kafka: &KafkaConfig) -> Result<Producer> {
        let progress = Arc::new(Progress::default());
        let inner = Self::client(kafka, &progress)?;
        Ok(Producer {
            inner: Arc::new(parking_lot::RwLock::new(inner)),
            progress,
        })
    }

    fn client(
        kafka: &KafkaConfig,
        progress: &Arc<Progress>,
    ) -> Result<ThreadedProducer<DeliveryContext>> {
        crate::producer_config(kafka)
            .create_with_context(DeliveryContext {
                progress: progress.clone(),
            })
            .context("creating the Kafka producer")
    }

    fn inner(&self) -> parking_lot::RwLockReadGuard<'_, ThreadedProducer<DeliveryContext>> {
        self.inner.read()
    }

    /// Why the producer looks stuck: records waiting for longer than
    /// `after` with no delivery reported meanwhile.
    pub fn stalled(&self, after: Duration) -> Option<String> {
        let pending = self.progress.pending.load(Ordering::Acquire);
        let quiet = self.progress.quiet_for();
        (pending > 0 && quiet > after).then(|| {
            format!(
                "the producer has delivered nothing for {} s, with {pending} records waiting",
                quiet.as_secs()
            )
        })
    }

    /// Replaces the client with a new one, and fails what the old one still
    /// holds (as a transient failure: those records' partitions go back to
    /// their last commit and send them again).
    pub fn renew(&self, kafka: &KafkaConfig) -> Result<()> {
        let fresh = Self::client(kafka, &self.progress)?;
        let old = std::mem::replace(&mut *self.inner.write(), fresh);
        old.purge(rdkafka::producer::PurgeConfig::default().queue().inflight());
        self.progress.moved();
        // Its thread delivers the purge's reports, then ends.
        drop(old);
        Ok(())
    }

    /// Queues `out` in `acks`'s group. When librdkafka's queue is full this
    /// waits (backpressure) until `give_up` says to stop waiting. A record
    /// refused at once counts as a failed delivery of the group.
    pub fn send(
        &self,
        out: Out<'_>,
        role: Role,
        acks: &Arc<Acks>,
        give_up: &dyn Fn() -> bool,
    ) -> Result<(), KafkaError> {
        acks.sent();
        // Quiet since nothing was pending is not stuck.
        if self.progress.pending.fetch_add(1, Ordering::AcqRel) == 0 {
            self.progress.moved();
        }
        let mut record = BaseRecord::with_opaque_to(
            out.topic,
            Box::new(Delivery {
                acks: acks.clone(),
                role,
            }),
        );
        if let Some(k) = out.key {
            record = record.key(k);
        }
        if let Some(v) = out.value {
            record = record.payload(v);
        }
        if let Some(h) = out.headers {
            record = record.headers(h);
        }
        if let Some(t) = out.timestamp {
            record = record.timestamp(t);
        }
        if let Some(p) = out.partition {
            record = record.partition(p);
        }
        loop {
            // The client is read each time: a renewal replaces it, and this
            // loop must not hold the old one while its queue is full.
            let sent = self.inner().send(record);
            match sent {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r))
                    if !give_up() =>
                {
                    record = r;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err((e, _)) => {
                    acks.reported(role, out.topic, Err(&e));
                    self.progress.pending.fetch_sub(1, Ordering::AcqRel);
                    return Err(e);
                }
            }
        }
    }

    /// Waits up to `timeout` for everything queued to be delivered.
    pub fn flush(&self, timeout: Duration) -> Result<(), KafkaError> {
        self.inner().flush(timeout)
    }

    /// A transactional producer under `id`, ready: its first use fences any
    /// earlier producer with the same id and aborts what that one left
    /// open. A broker that refuses transactions is an error naming that.
    /// `timeout`: how long a transaction may stay open (a crashed host's
    /// holds back every `read_committed` reader of its partitions until
    /// then).
    pub fn transactional(kafka: &KafkaConfig, id: &str, timeout: Duration) -> Result<Producer> {
        let mut c = crate::producer_config(kafka);
        let ms = timeout.as_millis().to_string();
        c.set("transactional.id", id)
            .set("transaction.timeout.ms", &ms)
            .set("message.timeout.ms", &ms);
        // A transaction begun right after a commit meets the coordinator
        // still writing that commit's markers (CONCURRENT_TRANSACTIONS) and
        // is retried after this: librdkafka's 100 ms default would add it
        // to every commit (the Java client retries these after 20 ms).
        c.set("retry.backoff.ms", "10");
        let progress = Arc::new(Progress::default());
        let inner: ThreadedProducer<DeliveryContext> = c
            .create_with_context(DeliveryContext {
                progress: progress.clone(),
            })
            .context("creating a transactional producer")?;
        let timeout = Duration::from_millis(kafka.connect_timeout_ms.max(10_000));
        inner.init_transactions(timeout).map_err(|e| match e.rdkafka_error_code() {
            Some(rdkafka::types::RDKafkaErrorCode::TransactionalIdAuthorizationFailed) => {
                use super::acl::{Denied, Operation, Permission, Resource};
                anyhow::Error::new(Denied(vec![Permission::new(Operation::Write, Resource::TransactionalId, id)]))
            }
            _ => anyhow::anyhow!("the brokers at {} refuse transactions ({e}); Weir writes state changelogs in transactions", kafka.brokers),
        })?;
        Ok(Producer {
            inner: Arc::new(parking_lot::RwLock::new(inner)),
            progress,
        })
    }

    pub fn begin_transaction(&self) -> Result<(), KafkaError> {
        self.inner().begin_transaction()
    }

    /// Adds the consumer group's `offsets` to the open transaction and
    /// commits it: all of it becomes visible, or none. The group's
    /// `metadata` fences a host that lost the partitions meanwhile.
    pub fn commit_transaction(
        &self,
        offsets: &rdkafka::TopicPartitionList,
        metadata: &rdkafka::consumer::ConsumerGroupMetadata,
        timeout: Duration,
    ) -> Result<(), KafkaError> {
        if offsets.count() > 0 {
            self.inner()
                .send_offsets_to_transaction(offsets, metadata, timeout)?;
        }
        // rdkafka's flush (which the commit starts with) sleeps 100 ms
        // whenever a record is still out: every commit would take that long.
        // Wait for the deliveries here, in short steps, instead.
        let deadline = std::time::Instant::now() + timeout;
        while self.inner().in_flight_count() > 0 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_micros(200));
        }
        loop {
            match self
                .inner()
                .commit_transaction(deadline.saturating_duration_since(std::time::Instant::now()))
            {
                // librdkafka says when asking again may finish it.
                Err(KafkaError::Transaction(e))
                    if e.is_retriable() && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(10));
                }
                done => return done,
            }
        }
    }

    pub fn abort_transaction(&self, timeout: Duration) -> Result<(), KafkaError> {
        self.inner().abort_transaction(timeout)
    }
}

/// A transaction failed and could not be aborted: whether it committed is
/// unknown, so nothing the host holds in memory about it can be trusted.
#[derive(Debug)]
pub struct OutcomeUnknown;

impl std::fmt::Display for OutcomeUnknown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the transaction could not be aborted: whether it committed is unknown")
    }
}

/// How long a transaction may stay open: a few commit intervals, at least
/// 10 s, at most the broker's default limit (15 min).
pub fn transaction_timeout(commit_interval: Duration) -> Duration {
    (commit_interval * 3).clamp(Duration::from_secs(10), Duration::from_secs(900))
}

/// Headers from `(name, value)` pairs.
pub fn headers<'a>(
    pairs: impl Iterator<Item = (&'a str, Option<&'a [u8]>)>,
) -> Option<OwnedHeaders> {
    let mut h: Option<OwnedHeaders> = None;
    for (key, value) in pairs {
        h = Some(h.unwrap_or_default().insert(Header { key, value }));
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_sorted_into_permanent_and_transient() {
        let acks = Acks::new();
        acks.fail(
            Role::Output(Some(3)),
            "out",
            &KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge),
        );
        assert!(
            matches!(acks.outcome(), Settled::Permanent(ref u) if u[0].role == Role::Output(Some(3)) && u[0].topic == "out")
        );
        acks.fail(
            Role::Output(Some(4)),
            "out",
            &KafkaError::MessageProduction(RDKafkaErrorCode::MessageTimedOut),
        );
        assert!(
            matches!(acks.outcome(), Settled::Transient(_)),
            "a transient failure means trying again"
        );
        assert!(matches!(Acks::new().outcome(), Settled::Delivered));
    }

    #[test]
    fn transactions_outlive_a_few_commit_intervals_within_the_brokers_limit() {
        let s = Duration::from_secs;
        assert_eq!(transaction_timeout(Duration::from_millis(100)), s(10));
        assert_eq!(transaction_timeout(s(60)), s(180));
        assert_eq!(transaction_timeout(s(300)), s(900));
    }
}
