//! Reprocessing: `POST /v1/deployments/NAME/reset` moves a deployment's
//! input offsets (to the earliest or latest record, a time, or given
//! offsets) with its state kept or dropped, safely while hosts run it.
//!
//! The deployment is paused in the registry, so every host stops it and
//! commits; once its consumer group is empty the new offsets are committed
//! for it; then it resumes. Dropping state starts a new incarnation (a new
//! group, changelog and state directory: hosts delete their old state when
//! they see it) and deletes the old changelog, so a host that was away
//! cannot bring the old state back.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use serde::{Deserialize, Serialize};

use super::access::{ApiResult, ScopeQuery, err, owned_spec, scope, view};
use super::api::View;
use crate::Control;
use crate::registry::{DeploymentSpec, Registry};
use weir_kafka::offsets::{self, Offsets, ResetTo};

/// How long hosts get to stop the deployment.
const STOP_TIMEOUT: Duration = Duration::from_secs(60);

pub fn routes() -> Router<Arc<Control>> {
    Router::new().route("/v1/deployments/{name}/reset", post(reset))
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ResetRequest {
    pub to: ResetTo,
    pub state: KeepOrDrop,
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeepOrDrop {
    Keep,
    Drop,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ResetDone {
    pub deployment: View,
    /// Where each input partition starts now.
    pub offsets: Offsets,
}

async fn reset(
    State(control): State<Arc<Control>>,
    headers: HeaderMap,
    Query(q): Query<ScopeQuery>,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult<axum::Json<ResetDone>> {
    let (scope, registry) = scope(&control, &headers, &q)?;
    let request: ResetRequest = serde_json::from_slice(&body).map_err(|e| {
        err(
            StatusCode::BAD_REQUEST,
            format!(
                "the body must be {{\"to\": \"earliest\" | \"latest\" | RFC 3339 time | {{TOPIC: {{PARTITION: OFFSET}}}}, \"state\": \"keep\" | \"drop\"}}: {e}"
            ),
        )
    })?;
    request
        .to
        .check()
        .map_err(|e| err(StatusCode::BAD_REQUEST, format!("{e:#}")))?;
    let spec = owned_spec(&registry, &scope, &name)?;
    if spec.undeployed {
        return Err(err(
            StatusCode::NOT_FOUND,
            format!("`{name}` is undeployed"),
        ));
    }
    // One reset at a time: one that started on another host left the
    // deployment paused "for a reset".
    let resetting = spec.paused
        && spec
            .history
            .last()
            .is_some_and(|c| c.what == "paused" && c.why.as_deref() == Some(FOR_A_RESET));
    let claim = Resetting::claim(&spec.id());
    let (Some(claim), false) = (claim, resetting) else {
        return Err(err(
            StatusCode::CONFLICT,
            format!(
                "`{name}` is being reset (or a reset was interrupted: resume it, then reset it again)"
            ),
        ));
    };
    // The rest runs to its end even if the client goes away.
    let run = tokio::spawn(async move {
        let _claim = claim;
        run(control, registry, spec, request).await
    });
    run.await
        .map_err(|e| err(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
}

const FOR_A_RESET: &str = "for a reset";

/// The deployments this host is resetting.
struct Resetting(String);

static RESETTING: parking_lot::Mutex<std::collections::BTreeSet<String>> =
    parking_lot::Mutex::new(std::collections::BTreeSet::new());

impl Resetting {
    fn claim(id: &str) -> Option<Resetting> {
        RESETTING
            .lock()
            .insert(id.to_owned())
            .then(|| Resetting(id.to_owned()))
    }
}

impl Drop for Resetting {
    fn drop(&mut self) {
        RESETTING.lock().remove(&self.0);
    }
}

async fn run(
    control: Arc<Control>,
    registry: Arc<Registry>,
    mut spec: DeploymentSpec,
    request: ResetRequest,
) -> ApiResult<axum::Json<ResetDone>> {
    let (id, name) = (spec.id(), spec.name.clone());
    let kafka = control.host.shared().kafka.clone();
    let group_of = |storage: &str| format!("{}.{storage}", kafka.group_prefix);
    let (old_storage, old_incarnation, was_paused) =
        (spec.storage(), spec.incarnation.clone(), spec.paused);
    let inputs = spec.deployment.inputs.clone();

    // A starting point the cluster cannot resolve (a topic that is not an
    // input, a partition it lacks) is refused before anything stops.
    let (k, group, topics, to) = (
        kafka.clone(),
        group_of(&old_storage),
        inputs.clone(),
        request.to.clone(),
    );
    tokio::task::spawn_blocking(move || offsets::resolve(&k, &group, &topics, &to))
        .await
        .map_err(|e| err(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(|e| err(StatusCode::BAD_REQUEST, format!("{e:#}")))?;

    // Stop it everywhere (and, dropping state, switch incarnation in the
    // same write, so hosts delete the old state as they stop).
    spec.paused = true;
    if request.state == KeepOrDrop::Drop {
        spec.incarnation = format!("{:x}", weir_abi::now_ms());
    }
    spec.change("paused", Some(FOR_A_RESET.into()));
    registry.publish(&id, Some(&spec)).await?;
    let new_group = group_of(&spec.storage());
    let moved = async {
        let (k, group) = (kafka.clone(), group_of(&old_storage));
        if !blocking(move || offsets::wait_empty(&k, &group, STOP_TIMEOUT)).await? {
            return Err(err(
                StatusCode::GATEWAY_TIMEOUT,
                format!("hosts still consumed it after {} s", STOP_TIMEOUT.as_secs()),
            ));
        }
        // The new offsets, into the group the deployment resumes in. Given
        // offsets name some partitions; with a new group, the others
        // continue from where the old group was.
        let (k, old_group, to, state) = (
            kafka.clone(),
            group_of(&old_storage),
            request.to.clone(),
            request.state,
        );
        blocking(move || {
            let mut start = match (&to, state) {
                (ResetTo::Offsets(_), KeepOrDrop::Drop) => {
                    offsets::committed(&k, &old_group, &inputs)?
                }
                _ => Offsets::new(),
            };
            for (topic, ps) in offsets::resolve(&k, &old_group, &inputs, &to)? {
                start.entry(topic).or_default().extend(ps);
            }
            offsets::commit(&k, &new_group, &start)?;
            Ok(start)
        })
        .await
    };
    let applied = match moved.await {
        Ok(applied) => applied,
        Err(e) => {
            // Nothing moved: the deployment goes back as it was (its old
            // incarnation's changelog is still there to restore from).
            if let Some(mut back) = registry.spec(&id).filter(|s| s.version == spec.version) {
                back.paused = was_paused;
                back.incarnation = old_incarnation;
                back.change("reset failed", Some(e.message.clone()));
                registry.publish(&id, Some(&back)).await?;
            }
            return Err(err(
                e.status,
                format!(
                    "resetting `{name}`: {}; nothing was reset, and it runs as before",
                    e.message
                ),
            ));
        }
    };
    if request.state == KeepOrDrop::Drop {
        let (h, old) = (control.clone(), old_storage.clone());
        blocking(move || h.host.drop_changelog(&old)).await?;
    }

    let mut spec = registry.spec(&id).filter(|s| s.version == spec.version).ok_or_else(|| {
        err(StatusCode::CONFLICT, format!("`{name}` changed while it was being reset; its offsets are reset, and it stays as that change left it"))
    })?;
    spec.paused = was_paused;
    let state_word = if request.state == KeepOrDrop::Drop {
        "state dropped"
    } else {
        "state kept"
    };
    spec.change("reset", Some(format!("to {}, {state_word}", request.to)));
    registry.publish(&id, Some(&spec)).await?;
    Ok(axum::Json(ResetDone {
        deployment: view(&control, &spec),
        offsets: applied,
    }))
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> ApiResult<T> {
    Ok(tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| err(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))??)
}
