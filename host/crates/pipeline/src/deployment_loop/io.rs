//! The seam between the deployment loop and Kafka: what the loop asks of
//! its input ([`Source`]: the deployment's consumer) and of its output
//! ([`Sink`]: a producer). `weir run` gives it the real ones; the unit
//! tests give it stand-ins that record what the loop asked and report
//! deliveries in whatever order a test chooses.

use std::sync::Arc;
use std::time::Duration;

use std::sync::mpsc::Sender;

use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, ConsumerGroupMetadata, RebalanceProtocol,
};
use rdkafka::error::KafkaResult;
use rdkafka::statistics::Statistics;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use weir_kafka::producer::{Acks, Out, Producer, Role};

/// What a callback tells the loop.
pub(super) enum Event {
    Assign(TopicPartitionList),
    /// `lost`: the group went on without this host (it was away past the
    /// session timeout, say); others may own the partitions already.
    Revoke {
        partitions: TopicPartitionList,
        lost: bool,
    },
    Stats(Box<Statistics>),
}

pub(super) struct KafkaContext {
    pub(super) events: Sender<Event>,
    pub(super) name: String,
}

impl ClientContext for KafkaContext {
    fn stats(&self, stats: Statistics) {
        let _ = self.events.send(Event::Stats(Box::new(stats)));
    }
}

impl ConsumerContext for KafkaContext {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        let event = match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => Event::Assign(tpl.clone()),
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => Event::Revoke {
                partitions: tpl.clone(),
                lost: consumer.assignment_lost(),
            },
            other => {
                // As rdkafka's default: an error lets the partitions go.
                tracing::warn!(deployment = %self.name, error = ?other, "rebalance error");
                Event::Revoke {
                    partitions: tpl.clone(),
                    lost: true,
                }
            }
        };
        // Once the loop is gone (stopped, or failed), nobody will finish
        // the rebalance; closing the consumer waits for it, so finish it now.
        if let Err(unsent) = self.events.send(event)
            && let Err(e) = finish_rebalance(consumer, &unsent.0)
        {
            tracing::warn!(deployment = %self.name, error = %e, "finishing a rebalance while closing");
        }
    }

    /// Asynchronous offset commits report here; the next commit covers a
    /// failed one.
    fn commit_callback(
        &self,
        result: rdkafka::error::KafkaResult<()>,
        _offsets: &TopicPartitionList,
    ) {
        if let Err(e) = result {
            tracing::warn!(deployment = %self.name, error = %e, "an offset commit failed; the next one covers it");
        }
    }
}

/// Completes a rebalance in librdkafka: takes the assigned partitions, or
/// lets the revoked ones go.
pub(super) fn finish_rebalance(
    consumer: &BaseConsumer<KafkaContext>,
    event: &Event,
) -> rdkafka::error::KafkaResult<()> {
    let cooperative = matches!(
        consumer.rebalance_protocol(),
        RebalanceProtocol::Cooperative
    );
    match event {
        Event::Assign(tpl) if cooperative => consumer.incremental_assign(tpl),
        Event::Assign(tpl) => consumer.assign(tpl),
        Event::Revoke { partitions, .. } if cooperative => {
            consumer.incremental_unassign(partitions)
        }
        Event::Revoke { .. } => consumer.unassign(),
        Event::Stats(_) => Ok(()),
    }
}

pub(super) fn partition_numbers(tpl: &TopicPartitionList) -> Vec<i32> {
    let mut n: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
    n.sort_unstable();
    n.dedup();
    n
}

/// How long a seek may take.
const SEEK_TIMEOUT: Duration = Duration::from_secs(10);

/// The deployment's input: the partitions of its consumer group this host
/// was given.
pub(super) trait Source {
    /// Stops fetching an input partition (its buffer is full, it waits).
    fn pause(&self, topic: &str, partition: i32);
    fn resume(&self, topic: &str, partition: i32);
    /// Fetches an input partition from `offset` on (none: its beginning).
    fn seek(&self, topic: &str, partition: i32, offset: Option<i64>) -> KafkaResult<()>;
    /// Commits the group's offsets, waiting for the answer if `sync`.
    fn commit(&self, offsets: &[(String, i32, i64)], sync: bool) -> KafkaResult<()>;
    /// The group went on without this member (its partitions may be
    /// someone else's already).
    fn assignment_lost(&self) -> bool;
    /// Whether nothing more is to be read of an input partition for now,
    /// reading from `next_offset`.
    fn caught_up(&self, topic: &str, partition: i32, next_offset: Option<i64>) -> bool;
    /// What fences a transactional commit of the group's offsets.
    fn group_metadata(&self) -> Option<ConsumerGroupMetadata>;
    /// Completes a rebalance: takes the assigned partitions or lets the
    /// revoked ones go.
    fn finish_rebalance(&self, event: &Event) -> KafkaResult<()>;
    /// Why the source can no longer be used, once it cannot.
    fn fatal_error(&self) -> Option<String>;
}

/// The deployment's consumer as its [`Source`].
pub(super) struct KafkaSource<'a> {
    pub(super) consumer: &'a BaseConsumer<KafkaContext>,
    /// A partition without a committed offset starts at its end.
    pub(super) from_end: bool,
}

fn one(topic: &str, partition: i32) -> TopicPartitionList {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(topic, partition);
    tpl
}

impl Source for KafkaSource<'_> {
    fn pause(&self, topic: &str, partition: i32) {
        let _ = self.consumer.pause(&one(topic, partition));
    }

    fn resume(&self, topic: &str, partition: i32) {
        let _ = self.consumer.resume(&one(topic, partition));
    }

    fn seek(&self, topic: &str, partition: i32, offset: Option<i64>) -> KafkaResult<()> {
        let offset = offset.map_or(Offset::Beginning, Offset::Offset);
        self.consumer.seek(topic, partition, offset, SEEK_TIMEOUT)
    }

    fn commit(&self, offsets: &[(String, i32, i64)], sync: bool) -> KafkaResult<()> {
        let mut tpl = TopicPartitionList::new();
        for (topic, partition, offset) in offsets {
            tpl.add_partition_offset(topic, *partition, Offset::Offset(*offset))?;
        }
        let mode = if sync {
            CommitMode::Sync
        } else {
            CommitMode::Async
        };
        self.consumer.commit(&tpl, mode)
    }

    fn assignment_lost(&self) -> bool {
        self.consumer.assignment_lost()
    }

    fn caught_up(&self, topic: &str, partition: i32, next_offset: Option<i64>) -> bool {
        weir_kafka::caught_up(self.consumer, topic, partition, next_offset, self.from_end)
    }

    fn group_metadata(&self) -> Option<ConsumerGroupMetadata> {
        self.consumer.group_metadata()
    }

    fn finish_rebalance(&self, event: &Event) -> KafkaResult<()> {
        finish_rebalance(self.consumer, event)
    }

    fn fatal_error(&self) -> Option<String> {
        weir_kafka::group::fatal_error(self.consumer)
    }
}

/// Where a deployment's records go: every output, dead letter and late
/// copy is sent in an [`Acks`] group, which its delivery reports settle.
pub(super) trait Sink: Send + Sync {
    /// Queues `out` in `acks`'s group (see [`Producer::send`]).
    fn send(
        &self,
        out: Out<'_>,
        role: Role,
        acks: &Arc<Acks>,
        give_up: &dyn Fn() -> bool,
    ) -> KafkaResult<()>;
}

impl Sink for Producer {
    fn send(
        &self,
        out: Out<'_>,
        role: Role,
        acks: &Arc<Acks>,
        give_up: &dyn Fn() -> bool,
    ) -> KafkaResult<()> {
        Producer::send(self, out, role, acks, give_up)
    }
}
