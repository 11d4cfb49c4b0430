//! What the host's Kafka principal may do, asked of the brokers before a
//! deployment consumes anything (the authorized operations of KIP-430), so
//! that a missing ACL is named instead of showing up as a topic that "does
//! not exist" or a commit retried forever. README "Kafka ACLs" lists what a
//! host needs.
//!
//! rust-rdkafka does not wrap DescribeTopics or DescribeConsumerGroups, so
//! this calls librdkafka's admin API directly.

use std::collections::BTreeMap;
use std::ffi::{CStr, CString};
use std::fmt;
use std::time::{Duration, Instant};

use rdkafka::bindings as rd;
use rdkafka::types::RDKafkaErrorCode;

/// A resource of Kafka's authorizer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Resource {
    Topic,
    Group,
    TransactionalId,
}

/// An operation as Kafka's ACLs name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Operation {
    Read,
    Write,
    Create,
    Delete,
}

impl Operation {
    fn acl(self) -> u32 {
        use rd::rd_kafka_AclOperation_t::*;
        (match self {
            Operation::Read => RD_KAFKA_ACL_OPERATION_READ,
            Operation::Write => RD_KAFKA_ACL_OPERATION_WRITE,
            Operation::Create => RD_KAFKA_ACL_OPERATION_CREATE,
            Operation::Delete => RD_KAFKA_ACL_OPERATION_DELETE,
        }) as u32
    }
}

/// An operation on a named resource that the host needs.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Permission {
    pub operation: Operation,
    pub resource: Resource,
    pub name: String,
}

impl Permission {
    pub fn new(operation: Operation, resource: Resource, name: &str) -> Permission {
        Permission {
            operation,
            resource,
            name: name.to_owned(),
        }
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let operation = match self.operation {
            Operation::Read => "READ",
            Operation::Write => "WRITE",
            Operation::Create => "CREATE",
            Operation::Delete => "DELETE",
        };
        let resource = match self.resource {
            Resource::Topic => "topic",
            Resource::Group => "group",
            Resource::TransactionalId => "transactional id",
        };
        write!(f, "{operation} on {resource} `{}`", self.name)
    }
}

/// The brokers refused the host's principal what it needs.
#[derive(Debug, thiserror::Error)]
#[error("{}", denied_message(.0))]
pub struct Denied(pub Vec<Permission>);

fn denied_message(missing: &[Permission]) -> String {
    let list: Vec<String> = missing.iter().map(Permission::to_string).collect();
    format!(
        "the Kafka ACLs do not allow the host's principal {} (README, \"Kafka ACLs\", lists what a host needs)",
        list.join(", ")
    )
}

/// Is `code` the broker refusing the principal something?
pub fn is_denial(code: RDKafkaErrorCode) -> bool {
    use RDKafkaErrorCode::*;
    matches!(
        code,
        TopicAuthorizationFailed
            | GroupAuthorizationFailed
            | TransactionalIdAuthorizationFailed
            | ClusterAuthorizationFailed
    )
}

/// Of `wanted` (topics and groups), what the brokers say the principal
/// may not do. A topic or group the principal may not even describe lacks
/// everything (Kafka then hides whether it exists). What cannot be asked
/// (a broker before Kafka 2.3, a cluster without an authorizer's answer,
/// the embedded cluster) counts as allowed: the operations themselves
/// still fail, only less clearly.
pub fn missing(
    client: *mut rd::rd_kafka_t,
    wanted: &[Permission],
    timeout: Duration,
) -> Vec<Permission> {
    let names = |resource| -> Vec<&str> {
        let mut n: Vec<&str> = wanted
            .iter()
            .filter(|p| p.resource == resource)
            .map(|p| p.name.as_str())
            .collect();
        n.sort_unstable();
        n.dedup();
        n
    };
    let deadline = Instant::now() + timeout;
    let mut allowed = Allowed::default();
    let topics = names(Resource::Topic);
    if !topics.is_empty() {
        allowed.extend(
            Resource::Topic,
            describe(client, Resource::Topic, &topics, deadline),
        );
    }
    let groups = names(Resource::Group);
    if !groups.is_empty() {
        allowed.extend(
            Resource::Group,
            describe(client, Resource::Group, &groups, deadline),
        );
    }
    wanted.iter().filter(|p| !allowed.may(p)).cloned().collect()
}

/// What each described resource allows: `None` where the brokers did not
/// say.
#[derive(Default)]
struct Allowed(BTreeMap<(Resource, String), Option<Vec<u32>>>);

impl Allowed {
    fn extend(&mut self, resource: Resource, described: Option<Vec<Described>>) {
        const DESCRIBE: u32 = rd::rd_kafka_AclOperation_t::RD_KAFKA_ACL_OPERATION_DESCRIBE as u32;
        const ALL: u32 = rd::rd_kafka_AclOperation_t::RD_KAFKA_ACL_OPERATION_ALL as u32;
        for d in described.into_iter().flatten() {
            let ops = match d.error {
                Some(code) if is_denial(code) => Some(Vec::new()),
                Some(_) => None,
                // Describing it took DESCRIBE: a list without it is not
                // an authorizer's answer (a broker that says nothing as `0`).
                None => d
                    .operations
                    .filter(|ops| ops.iter().any(|op| [DESCRIBE, ALL].contains(op))),
            };
            self.0.insert((resource, d.name), ops);
        }
    }

    fn may(&self, p: &Permission) -> bool {
        const ALL: u32 = rd::rd_kafka_AclOperation_t::RD_KAFKA_ACL_OPERATION_ALL as u32;
        match self.0.get(&(p.resource, p.name.clone())) {
            Some(Some(ops)) => ops.iter().any(|op| *op == p.operation.acl() || *op == ALL),
            _ => true,
        }
    }
}

/// One resource's description.
struct Described {
    name: String,
    error: Option<RDKafkaErrorCode>,
    /// As numbers: a newer librdkafka may say operations this one has no
    /// name for.
    operations: Option<Vec<u32>>,
}

/// Describes `names` (topics or groups) with their authorized operations;
/// `None` if the request as a whole failed.
fn describe(
    client: *mut rd::rd_kafka_t,
    resource: Resource,
    names: &[&str],
    deadline: Instant,
) -> Option<Vec<Described>> {
    let c_names: Vec<CString> = names
        .iter()
        .map(|n| CString::new(*n).ok())
        .collect::<Option<_>>()?;
    let mut ptrs: Vec<*const std::ffi::c_char> = c_names.iter().map(|n| n.as_ptr()).collect();
    // librdkafka refuses request timeouts over an hour.
    let timeout_ms = deadline
        .saturating_duration_since(Instant::now())
        .as_millis()
        .clamp(1, 3_600_000) as i32;
    let op = match resource {
        Resource::Topic => rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_DESCRIBETOPICS,
        _ => rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_DESCRIBECONSUMERGROUPS,
    };
    // SAFETY: every handle made here is destroyed before returning; the
    // result's strings and arrays are copied out before its event is.
    unsafe {
        let queue = rd::rd_kafka_queue_new(client);
        let options = rd::rd_kafka_AdminOptions_new(client, op);
        let mut errstr = [0 as std::ffi::c_char; 256];
        rd::rd_kafka_AdminOptions_set_request_timeout(
            options,
            timeout_ms,
            errstr.as_mut_ptr(),
            errstr.len(),
        );
        let set = rd::rd_kafka_AdminOptions_set_include_authorized_operations(options, 1);
        if !set.is_null() {
            rd::rd_kafka_error_destroy(set);
        }
        match resource {
            Resource::Topic => {
                let collection =
                    rd::rd_kafka_TopicCollection_of_topic_names(ptrs.as_mut_ptr(), ptrs.len());
                rd::rd_kafka_DescribeTopics(client, collection, options, queue);
                rd::rd_kafka_TopicCollection_destroy(collection);
            }
            _ => rd::rd_kafka_DescribeConsumerGroups(
                client,
                ptrs.as_mut_ptr(),
                ptrs.len(),
                options,
                queue,
            ),
        }
        // The result comes within the request timeout; a little more for
        // the coordinator lookups before it.
        let event = rd::rd_kafka_queue_poll(queue, timeout_ms.saturating_add(1000));
        rd::rd_kafka_AdminOptions_destroy(options);
        let described = if event.is_null()
            || rd::rd_kafka_event_error(event)
                != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR
        {
            None
        } else {
            Some(read_result(event, resource))
        };
        if !event.is_null() {
            rd::rd_kafka_event_destroy(event);
        }
        rd::rd_kafka_queue_destroy(queue);
        described
    }
}

/// The descriptions in admin result `event`.
///
/// # Safety
/// `event` is a DescribeTopics or DescribeConsumerGroups result, as
/// `resource` says, that outlives this call.
unsafe fn read_result(event: *mut rd::rd_kafka_event_t, resource: Resource) -> Vec<Described> {
    let mut n = 0usize;
    // SAFETY: the caller's contract: `event` is a live result of the kind
    // `resource` names; librdkafka's accessors return pointers into it.
    unsafe {
        match resource {
            Resource::Topic => {
                let result = rd::rd_kafka_event_DescribeTopics_result(event);
                if result.is_null() {
                    return Vec::new();
                }
                let topics = rd::rd_kafka_DescribeTopics_result_topics(result, &mut n);
                read_each(
                    topics,
                    n,
                    rd::rd_kafka_TopicDescription_name,
                    rd::rd_kafka_TopicDescription_error,
                    rd::rd_kafka_TopicDescription_authorized_operations,
                )
            }
            _ => {
                let result = rd::rd_kafka_event_DescribeConsumerGroups_result(event);
                if result.is_null() {
                    return Vec::new();
                }
                let groups = rd::rd_kafka_DescribeConsumerGroups_result_groups(result, &mut n);
                read_each(
                    groups,
                    n,
                    rd::rd_kafka_ConsumerGroupDescription_group_id,
                    rd::rd_kafka_ConsumerGroupDescription_error,
                    rd::rd_kafka_ConsumerGroupDescription_authorized_operations,
                )
            }
        }
    }
}

/// Copies out the `n` descriptions at `list` (topics' or groups', read by
/// their type's accessors).
///
/// # Safety
/// `list` holds `n` descriptions (or is null) that outlive this call, and
/// the accessors are those of their type.
unsafe fn read_each<T>(
    list: *const *const T,
    n: usize,
    name: unsafe extern "C" fn(*const T) -> *const std::ffi::c_char,
    error: unsafe extern "C" fn(*const T) -> *const rd::rd_kafka_error_t,
    operations: unsafe extern "C" fn(*const T, *mut usize) -> *const rd::rd_kafka_AclOperation_t,
) -> Vec<Described> {
    if list.is_null() {
        return Vec::new();
    }
    // SAFETY: the caller's contract: `n` descriptions at a non-null `list`.
    unsafe { std::slice::from_raw_parts(list, n) }
        .iter()
        // SAFETY: each `d` is a live description of the accessors' type.
        .map(|&d| unsafe {
            let (name, error) = (name(d), error(d));
            let mut count = 0usize;
            let ops = operations(d, &mut count);
            Described {
                name: if name.is_null() {
                    String::new()
                } else {
                    CStr::from_ptr(name).to_string_lossy().into_owned()
                },
                error: (!error.is_null())
                    .then(|| RDKafkaErrorCode::from(rd::rd_kafka_error_code(error))),
                // As numbers: see `Described::operations`.
                operations: (!ops.is_null())
                    .then(|| std::slice::from_raw_parts(ops.cast::<u32>(), count).to_vec()),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_denial_names_each_missing_permission() {
        let denied = Denied(vec![
            Permission::new(Operation::Read, Resource::Topic, "orders"),
            Permission::new(Operation::Write, Resource::TransactionalId, "weir.probe.wc"),
        ]);
        assert_eq!(
            denied.to_string(),
            "the Kafka ACLs do not allow the host's principal READ on topic `orders`, WRITE on transactional id `weir.probe.wc` (README, \"Kafka ACLs\", lists what a host needs)"
        );
    }

    #[test]
    fn what_the_brokers_did_not_say_counts_as_allowed() {
        use rd::rd_kafka_AclOperation_t::*;
        let [read, describe, all] = [
            RD_KAFKA_ACL_OPERATION_READ,
            RD_KAFKA_ACL_OPERATION_DESCRIBE,
            RD_KAFKA_ACL_OPERATION_ALL,
        ]
        .map(|op| op as u32);
        let mut allowed = Allowed::default();
        let described = |name: &str, error, operations| Described {
            name: name.into(),
            error,
            operations,
        };
        allowed.extend(
            Resource::Topic,
            Some(vec![
                described("in", None, Some(vec![read, describe])),
                described("empty answer", None, Some(vec![])),
                described(
                    "hidden",
                    Some(RDKafkaErrorCode::TopicAuthorizationFailed),
                    None,
                ),
                described("unsaid", None, None),
                described(
                    "gone",
                    Some(RDKafkaErrorCode::UnknownTopicOrPartition),
                    None,
                ),
                described("all", None, Some(vec![all])),
            ]),
        );
        let may = |op, name| allowed.may(&Permission::new(op, Resource::Topic, name));
        assert!(may(Operation::Read, "in"));
        assert!(!may(Operation::Write, "in"));
        assert!(!may(Operation::Read, "hidden"));
        assert!(may(Operation::Write, "unsaid"));
        assert!(
            may(Operation::Read, "gone"),
            "a topic that does not exist is another error's to name"
        );
        assert!(may(Operation::Create, "all"));
        assert!(
            may(Operation::Read, "empty answer"),
            "a broker that lists nothing, not even DESCRIBE, did not answer"
        );
        assert!(may(Operation::Read, "never described"));
    }
}
