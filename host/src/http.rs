//! The host's HTTP listener: Prometheus `/metrics`, `/health` and the
//! admin API (`/v1`, see [`crate::admin`]).

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

use crate::pipeline::Host;

pub fn router(host: Arc<Host>) -> Router {
    Router::new().route("/metrics", get(metrics)).route("/health", get(health)).with_state(host.clone()).merge(crate::admin::router(host))
}

async fn metrics(State(host): State<Arc<Host>>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], host.metrics().render())
}

async fn health(State(host): State<Arc<Host>>) -> impl IntoResponse {
    let deployments = host.statuses();
    let degraded = deployments.values().any(|d| !d.stopped.is_empty());
    axum::Json(serde_json::json!({ "status": if degraded { "degraded" } else { "ok" }, "deployments": deployments }))
}
