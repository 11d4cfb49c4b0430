//! Who consumes what: a consumer group's members and their partitions, as
//! the group coordinator reports them. Hosts name themselves in their
//! `client.id` (see [`client_id`]), so any host can tell which host owns a
//! partition and where its API answers.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use serde::Serialize;

const CLIENT_ID_PREFIX: &str = "weir|";

/// The `client.id` of a host's group consumers: its id and the URL of its
/// HTTP listener (empty when it has none).
pub fn client_id(host_id: &str, api_url: Option<&str>) -> String {
    format!("{CLIENT_ID_PREFIX}{host_id}|{}", api_url.unwrap_or(""))
}

/// Leaves the group of `consumer` before it is closed, serving its
/// rebalance callbacks meanwhile (records it polls are dropped); `false`
/// when `timeout` passed first. `true` means the LeaveGroup went out (or
/// there was no membership to leave), not that the coordinator has it:
/// with no coordinator reachable, the group drops the member at the
/// session timeout as before.
///
/// A static member (one with a `group.instance.id`) keeps its partitions
/// through a close until the session times out (KIP-345), which is what a
/// host restarted after a crash wants: it takes them back at once. A host
/// that stops on purpose must hand them over at once instead, and
/// librdkafka sends the LeaveGroup only for an unsubscribe whose
/// revocation completes before the close. It drops the member id as it
/// sends it, and the close then waits for the answer.
///
/// `false` too when the consumer has failed for good (see
/// [`fatal_error`]).
pub fn leave<C: ConsumerContext>(consumer: &BaseConsumer<C>, timeout: Duration) -> bool {
    // A fenced member's instance id is another's now: nothing to leave.
    if consumer.client().fatal_error().is_some() {
        return false;
    }
    consumer.unsubscribe();
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if member_id(consumer).is_empty() {
            return true;
        }
        let _ = consumer.poll(Duration::from_millis(20));
    }
    false
}

/// Why `consumer` can no longer be used, when it cannot. The one cause a
/// deployment's consumer can meet is fencing: another member joined the
/// group with its `group.instance.id`, that is another host with the same
/// host id.
pub fn fatal_error<C: ConsumerContext>(consumer: &BaseConsumer<C>) -> Option<String> {
    let (code, reason) = consumer.client().fatal_error()?;
    Some(
        if code == rdkafka::types::RDKafkaErrorCode::FencedInstanceId {
            format!(
                "another consumer of the group uses this host's id as its group.instance.id \
                 (two hosts with one `id`?): {reason}"
            )
        } else {
            format!("the consumer failed for good: {reason}")
        },
    )
}

/// Whether `consumer` was fenced: another member took its
/// `group.instance.id`.
pub fn fenced<C: ConsumerContext>(consumer: &BaseConsumer<C>) -> bool {
    consumer
        .client()
        .fatal_error()
        .is_some_and(|(code, _)| code == rdkafka::types::RDKafkaErrorCode::FencedInstanceId)
}

/// The member id the coordinator gave `consumer` (empty when it is not a
/// member).
fn member_id<C: ConsumerContext>(consumer: &BaseConsumer<C>) -> String {
    use rdkafka::bindings as rd;
    let rk = consumer.client().native_ptr();
    // SAFETY: `rk` is the live client of `consumer`; librdkafka returns a
    // NUL-terminated copy (or null) that we free with its allocator.
    unsafe {
        let id = rd::rd_kafka_memberid(rk);
        if id.is_null() {
            return String::new();
        }
        let owned = std::ffi::CStr::from_ptr(id).to_string_lossy().into_owned();
        rd::rd_kafka_mem_free(rk, id.cast());
        owned
    }
}

/// One member of a group.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Member {
    /// The host's id, or the client id of a consumer that is not a host.
    pub host: String,
    /// Where the host's API answers, if it said.
    pub api_url: Option<String>,
    /// The address the broker sees the member at.
    pub address: String,
    /// Assigned partitions by topic.
    pub partitions: Vec<(String, Vec<i32>)>,
}

/// The members of `group` with their assignments (none while the group
/// rebalances or is empty).
pub fn members(client: &BaseConsumer, group: &str, timeout: Duration) -> Result<Vec<Member>> {
    let list = client
        .fetch_group_list(Some(group), timeout)
        .with_context(|| format!("describing consumer group `{group}`"))?;
    let mut members = Vec::new();
    for g in list.groups() {
        for m in g.members() {
            let (host, api_url) = match m
                .client_id()
                .strip_prefix(CLIENT_ID_PREFIX)
                .and_then(|rest| rest.split_once('|'))
            {
                Some((host, url)) => (host.to_owned(), (!url.is_empty()).then(|| url.to_owned())),
                None => (m.client_id().to_owned(), None),
            };
            let partitions = m
                .assignment()
                .and_then(decode_assignment)
                .unwrap_or_default();
            members.push(Member {
                host,
                api_url,
                address: m.client_host().trim_start_matches('/').to_owned(),
                partitions,
            });
        }
    }
    members.sort_by(|a, b| a.host.cmp(&b.host));
    Ok(members)
}

/// Decodes a consumer protocol assignment (version, then topics with
/// their partitions, then user data we ignore); `None` when malformed.
/// The bytes come from the broker, written by whichever client joined the
/// group, so every length is checked against what is left.
pub fn decode_assignment(bytes: &[u8]) -> Option<Vec<(String, Vec<i32>)>> {
    let mut r = Reader(bytes);
    let _version = r.i16()?;
    let topics = r.len()?;
    let mut out = Vec::new();
    for _ in 0..topics {
        let name_len = usize::try_from(r.i16()?).ok()?;
        let name = String::from_utf8(r.take(name_len)?.to_vec()).ok()?;
        let count = r.len()?;
        // Each partition takes 4 bytes: a count larger than what is left is a lie.
        if count.checked_mul(4)? > r.0.len() {
            return None;
        }
        let partitions = (0..count).map(|_| r.i32()).collect::<Option<Vec<_>>>()?;
        out.push((name, partitions));
    }
    Some(out)
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        if n > self.0.len() {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }
    fn i16(&mut self) -> Option<i16> {
        Some(i16::from_be_bytes(self.take(2)?.try_into().ok()?))
    }
    fn i32(&mut self) -> Option<i32> {
        Some(i32::from_be_bytes(self.take(4)?.try_into().ok()?))
    }
    /// An array length: -1 (null) is empty.
    fn len(&mut self) -> Option<usize> {
        let n = self.i32()?;
        usize::try_from(n.max(0)).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assignment(topics: &[(&str, &[i32])]) -> Vec<u8> {
        let mut b = vec![0, 1];
        b.extend((topics.len() as i32).to_be_bytes());
        for (t, ps) in topics {
            b.extend((t.len() as i16).to_be_bytes());
            b.extend(t.as_bytes());
            b.extend((ps.len() as i32).to_be_bytes());
            for p in *ps {
                b.extend(p.to_be_bytes());
            }
        }
        b.extend((-1i32).to_be_bytes());
        b
    }

    #[test]
    fn decodes_assignments_and_refuses_lies() {
        let bytes = assignment(&[("in", &[0, 2]), ("other", &[1])]);
        assert_eq!(
            decode_assignment(&bytes),
            Some(vec![("in".into(), vec![0, 2]), ("other".into(), vec![1])])
        );
        for cut in 0..bytes.len() - 4 {
            assert_eq!(decode_assignment(&bytes[..cut]), None, "cut at {cut}");
        }
        // Two billion partitions in a few bytes.
        let mut lie = assignment(&[("in", &[])]);
        lie[10..14].copy_from_slice(&i32::MAX.to_be_bytes());
        assert_eq!(decode_assignment(&lie), None);
    }

    #[test]
    fn client_ids_carry_the_host_and_its_url() {
        assert_eq!(
            client_id("h1", Some("http://127.0.0.1:9464")),
            "weir|h1|http://127.0.0.1:9464"
        );
        assert_eq!(client_id("h1", None), "weir|h1|");
    }
}
