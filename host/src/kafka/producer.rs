//! One producer per host process, with delivery tracking: every produced
//! record belongs to an [`Acks`] group, and an input offset is committed
//! only once the groups of its batch are fully acknowledged.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{Context, Result};
use rdkafka::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer as _, ProducerContext, ThreadedProducer};

use crate::config::KafkaConfig;

/// Delivery state of a group of records.
#[derive(Default)]
pub struct Acks {
    outstanding: AtomicUsize,
    failed: AtomicBool,
    error: Mutex<Option<String>>,
    /// Highest offset a record of the group was written at.
    max_offset: AtomicI64,
}

impl Acks {
    pub fn new() -> Arc<Acks> {
        Arc::new(Acks { max_offset: AtomicI64::new(-1), ..Acks::default() })
    }

    /// All records delivered (or failed).
    pub fn settled(&self) -> bool {
        self.outstanding.load(Ordering::Acquire) == 0
    }

    /// The first delivery error, if any record failed.
    pub fn failure(&self) -> Option<String> {
        self.failed.load(Ordering::Acquire).then(|| self.error.lock().unwrap().clone().unwrap_or_default())
    }

    pub fn max_offset(&self) -> i64 {
        self.max_offset.load(Ordering::Acquire)
    }
}

pub struct DeliveryContext;

impl ClientContext for DeliveryContext {}

impl ProducerContext for DeliveryContext {
    type DeliveryOpaque = Arc<Acks>;

    fn delivery(&self, result: &DeliveryResult<'_>, acks: Arc<Acks>) {
        match result {
            Ok(m) => {
                acks.max_offset.fetch_max(rdkafka::Message::offset(m), Ordering::AcqRel);
            }
            Err((e, _)) => {
                let mut error = acks.error.lock().unwrap();
                if error.is_none() {
                    *error = Some(e.to_string());
                }
                acks.failed.store(true, Ordering::Release);
            }
        }
        acks.outstanding.fetch_sub(1, Ordering::AcqRel);
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
    inner: ThreadedProducer<DeliveryContext>,
}

impl Producer {
    pub fn new(kafka: &KafkaConfig) -> Result<Producer> {
        let inner = crate::kafka::producer_config(kafka).create_with_context(DeliveryContext).context("creating the Kafka producer")?;
        Ok(Producer { inner })
    }

    /// Queues `out` in `acks`'s group. When librdkafka's queue is full this
    /// waits (backpressure) until `give_up` says to stop waiting.
    pub fn send(&self, out: Out<'_>, acks: &Arc<Acks>, give_up: &dyn Fn() -> bool) -> Result<(), KafkaError> {
        acks.outstanding.fetch_add(1, Ordering::AcqRel);
        let mut record = BaseRecord::with_opaque_to(out.topic, acks.clone());
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
            match self.inner.send(record) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) if !give_up() => {
                    record = r;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err((e, _)) => {
                    acks.outstanding.fetch_sub(1, Ordering::AcqRel);
                    acks.failed.store(true, Ordering::Release);
                    *acks.error.lock().unwrap() = Some(e.to_string());
                    return Err(e);
                }
            }
        }
    }

    /// Waits up to `timeout` for everything queued to be delivered.
    pub fn flush(&self, timeout: Duration) -> Result<(), KafkaError> {
        self.inner.flush(timeout)
    }
}

/// Headers from `(name, value)` pairs.
pub fn headers<'a>(pairs: impl Iterator<Item = (&'a str, Option<&'a [u8]>)>) -> Option<OwnedHeaders> {
    let mut h: Option<OwnedHeaders> = None;
    for (key, value) in pairs {
        h = Some(h.unwrap_or_default().insert(Header { key, value }));
    }
    h
}
