//! What the console reads about a deployment, beside its view: this
//! host's last 15 minutes of it, its latest dead letters, and which host
//! consumes which partition. Scoped like every other call: a tenant's
//! token reaches only its own deployments.

use std::collections::BTreeMap;
use std::path::Path as FsPath;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use serde::{Deserialize, Serialize};

use super::access::{ApiResult, ScopeQuery, err, owned_spec, scope};
use crate::Control;
use crate::series::Point;
use weir_kafka::group::Member;
use weir_kafka::tail::Shown;

pub fn routes() -> Router<Arc<Control>> {
    Router::new()
        .route("/v1/deployments/{name}/activity", get(activity))
        .route("/v1/deployments/{name}/dead-letters", get(dead_letters))
        .route("/v1/deployments/{name}/owners", get(owners))
}

/// `GET /v1/deployments/NAME/activity`: the deployment on the host that
/// answers.
#[derive(Debug, Serialize)]
pub struct Activity {
    /// The host that answered.
    pub host: String,
    pub step_ms: u64,
    /// Rates per step, oldest first (the last 15 minutes).
    pub points: Vec<Point>,
    pub records_in: u64,
    pub records_out: u64,
    pub dead_lettered: u64,
    pub failures_by_kind: BTreeMap<String, u64>,
    pub restored_keys: u64,
    /// Partitions whose state is being restored now.
    pub restoring: u64,
    /// Bytes of the deployment's state on this host's disk.
    pub state_bytes: u64,
}

async fn activity(
    State(control): State<Arc<Control>>,
    headers: HeaderMap,
    Query(q): Query<ScopeQuery>,
    Path(name): Path<String>,
) -> ApiResult<axum::Json<Activity>> {
    let (scope, registry) = scope(&control, &headers, &q)?;
    let spec = owned_spec(&registry, &scope, &name)?;
    let id = spec.id();
    let totals = control
        .host
        .metrics()
        .totals()
        .remove(&id)
        .unwrap_or_default();
    let dir = control.host.shared().host.state_dir.join(spec.storage());
    let state_bytes = tokio::task::spawn_blocking(move || dir_bytes(&dir, 3))
        .await
        .unwrap_or(0);
    Ok(axum::Json(Activity {
        host: control.host.shared().host_id.clone(),
        step_ms: crate::series::STEP.as_millis() as u64,
        points: control.series.of(&id),
        records_in: totals.records_in as u64,
        records_out: totals.records_out as u64,
        dead_lettered: totals.dead_lettered as u64,
        failures_by_kind: totals.failures_by_kind,
        restored_keys: totals.restored_keys,
        restoring: totals.restoring,
        state_bytes,
    }))
}

/// Bytes of the files under `dir`, `depth` levels down at most (a
/// deployment's state is partitions of RocksDB files).
fn dir_bytes(dir: &FsPath, depth: u32) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() && depth > 0 => dir_bytes(&e.path(), depth - 1),
            Ok(t) if t.is_file() => e.metadata().map_or(0, |m| m.len()),
            _ => 0,
        })
        .sum()
}

#[derive(Deserialize)]
struct DeadLetterQuery {
    tenant: Option<String>,
    #[serde(default = "default_dead_letters")]
    limit: usize,
}

fn default_dead_letters() -> usize {
    20
}

/// Dead letters shown at most; the records looked at per partition to find them.
const MAX_DEAD_LETTERS: usize = 100;
const SCAN_PER_PARTITION: i64 = 500;
/// Reads of dead-letter topics at once on a host: each is a Kafka client.
static READERS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);

/// `GET /v1/deployments/NAME/dead-letters?limit=N`: the newest dead
/// letters of the deployment (its dead-letter topic may be shared: those
/// of others are left out), newest first, fields cut to 1 KiB.
async fn dead_letters(
    State(control): State<Arc<Control>>,
    headers: HeaderMap,
    Query(q): Query<DeadLetterQuery>,
    Path(name): Path<String>,
) -> ApiResult<axum::Json<Vec<Shown>>> {
    let (scope, registry) = scope(
        &control,
        &headers,
        &ScopeQuery {
            tenant: q.tenant.clone(),
        },
    )?;
    let spec = owned_spec(&registry, &scope, &name)?;
    let Ok(_permit) = READERS.try_acquire() else {
        return Err(err(
            StatusCode::SERVICE_UNAVAILABLE,
            "dead letters are being read for others; try again in a moment",
        ));
    };
    let (id, topic) = (spec.id(), spec.deployment.dead_letter_topic(&spec.id()));
    let kafka = control.host.shared().kafka.clone();
    let limit = q.limit.min(MAX_DEAD_LETTERS);
    let ours = move |r: &Shown| {
        r.headers
            .iter()
            .any(|(k, v)| k == "weir.deployment" && v.as_deref() == Some(id.as_str()))
    };
    // Dead letters are input records: shown in the deployment's input
    // format where they decode (those that failed to are shown raw).
    let decoding = weir_schema::InputCodec::new(
        &spec.deployment.formats,
        control.host.shared().registry.as_ref(),
    )
    .ok()
    .flatten();
    let inputs = spec.deployment.inputs.clone();
    let read = tokio::task::spawn_blocking(move || {
        weir_kafka::tail::newest(
            &kafka,
            &topic,
            limit,
            SCAN_PER_PARTITION,
            Duration::from_secs(5),
            ours,
            |headers, value| {
                // Anyone who may write the dead-letter topic may write
                // this header: only the deployment's own inputs' subjects
                // are decoded by.
                let source = headers
                    .iter()
                    .find(|(k, _)| k == "weir.source.topic")?
                    .1
                    .as_deref()
                    .filter(|s| inputs.iter().any(|i| i == s))?;
                decoding.as_ref()?.decode_value(source, value)
            },
        )
    });
    let found = read
        .await
        .map_err(|e| err(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))??;
    Ok(axum::Json(found))
}

/// `GET /v1/deployments/NAME/owners`: the hosts consuming the deployment
/// and their partitions (empty while its group rebalances or nobody runs
/// it).
async fn owners(
    State(control): State<Arc<Control>>,
    headers: HeaderMap,
    Query(q): Query<ScopeQuery>,
    Path(name): Path<String>,
) -> ApiResult<axum::Json<Vec<Member>>> {
    let (scope, registry) = scope(&control, &headers, &q)?;
    let storage = owned_spec(&registry, &scope, &name)?.storage();
    let members = tokio::task::spawn_blocking(move || control.host.group_members(&storage))
        .await
        .map_err(|e| err(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))??;
    Ok(axum::Json(members))
}
