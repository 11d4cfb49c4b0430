//! The host's HTTP listener: Prometheus `/metrics`, `/health`, the admin
//! API (`/v1`, see [`crate::admin`]) and the web console (`/`, see
//! [`crate::console`]).
//!
//! It faces whoever can reach the port, so it bounds what a client can make
//! it hold: at most [`MAX_CONNECTIONS`] connections, a request head within
//! [`HEADER_TIMEOUT`], a whole request within [`REQUEST_TIMEOUT`], and (in
//! the admin API) no body read before the token is checked. When tokens are
//! configured, `/metrics` and `/health` show each token only its own: the
//! admin everything, a tenant its deployments, no token just the status.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;

use crate::Control;
use crate::tenants::Principal;

/// Connections served at once; more wait in the kernel's backlog.
pub const MAX_CONNECTIONS: usize = 256;
/// A client must send a request's head within this (slow-loris).
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// A request, body and work included, must finish within this: uploads of
/// 64 MiB on a slow link, then their compilation (up to 2 minutes).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(240);
/// A connection is closed after this however busy.
const CONNECTION_LIFETIME: Duration = Duration::from_secs(600);

pub fn router(control: Arc<Control>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/health", get(health))
        .with_state(control.clone())
        .merge(crate::admin::router(control))
        .merge(crate::console::router())
        .layer(axum::middleware::from_fn(request_timeout))
}

async fn request_timeout(request: Request, next: Next) -> Response {
    match tokio::time::timeout(REQUEST_TIMEOUT, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            (StatusCode::REQUEST_TIMEOUT, axum::Json(serde_json::json!({ "error": format!("the request took more than {} s", REQUEST_TIMEOUT.as_secs()) })))
                .into_response()
        }
    }
}

/// Serves `router` on `listener` until the task is dropped.
pub async fn serve(listener: tokio::net::TcpListener, router: Router) {
    let permits = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors, say: wait rather than spin.
                tracing::warn!(error = %e, "accepting an HTTP connection failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let service = TowerToHyperService::new(router.clone());
        tokio::spawn(async move {
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            let _ = tokio::time::timeout(CONNECTION_LIFETIME, connection).await;
            drop(permit);
        });
    }
}

/// Who is asking.
enum Caller {
    Anonymous,
    Known(Principal),
    /// A token nobody has.
    Unknown,
}

fn caller(control: &Control, headers: &HeaderMap) -> Caller {
    match crate::admin::bearer(headers) {
        None => Caller::Anonymous,
        Some(token) => control
            .tenants
            .authenticate(token)
            .map_or(Caller::Unknown, Caller::Known),
    }
}

fn unknown_token() -> Response {
    (StatusCode::UNAUTHORIZED, "unknown token").into_response()
}

async fn metrics(State(control): State<Arc<Control>>, headers: HeaderMap) -> Response {
    // The caller is known before anything is rendered for it.
    let tenant = match control
        .tenants
        .enabled()
        .then(|| caller(&control, &headers))
    {
        None | Some(Caller::Known(Principal::Admin)) => None,
        Some(Caller::Known(Principal::Tenant(t))) => Some(t),
        Some(Caller::Unknown) => return unknown_token(),
        Some(Caller::Anonymous) => {
            return (StatusCode::UNAUTHORIZED, "metrics need `Authorization: Bearer <token>`: the admin's, or a tenant's for its own").into_response();
        }
    };
    control.host.refresh_gauges();
    let text = control.host.metrics().render();
    let visible = match tenant {
        None => text,
        Some(t) => {
            let label = format!("tenant=\"{t}\"");
            text.lines()
                .filter(|l| l.starts_with('#') || l.contains(&label))
                .flat_map(|l| [l, "\n"])
                .collect()
        }
    };
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        visible,
    )
        .into_response()
}

async fn health(State(control): State<Arc<Control>>, headers: HeaderMap) -> Response {
    let mut deployments = control.host.statuses();
    let mut producer = control.host.producer_stalled(None);
    let degraded = producer.is_some()
        || deployments.values().any(|d| {
            !d.stopped.is_empty()
                || !d.failed.is_empty()
                || d.down.is_some()
                || d.denied.is_some()
                || !d.unreadable.is_empty()
        });
    let status = if degraded { "degraded" } else { "ok" };
    if control.tenants.enabled() {
        match caller(&control, &headers) {
            Caller::Unknown => return unknown_token(),
            // Anyone may ask whether the host is well; only tokens see what runs.
            Caller::Anonymous => {
                return axum::Json(serde_json::json!({ "status": status })).into_response();
            }
            Caller::Known(Principal::Admin) => {}
            Caller::Known(Principal::Tenant(t)) => {
                deployments
                    .retain(|id, _| id.split_once('.').is_some_and(|(tenant, _)| tenant == t));
                // Another tenant's trouble is not this one's to read.
                producer = control.host.producer_stalled(Some(&t));
            }
        }
    }
    axum::Json(
        serde_json::json!({ "status": status, "producer": producer, "deployments": deployments }),
    )
    .into_response()
}
