//! Who may call the admin API and for whom: tokens, the tenant a call
//! acts for, the deployments it may see, and the errors it gets.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::api::{Status, View};
use crate::registry::{DeploymentSpec, Registry};
use crate::tenants::{Principal, TenantConfig};
use crate::{Control, Problem};

/// An error with its HTTP status; the body is `{"error": "..."}`.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

pub(super) fn err(status: StatusCode, message: impl Into<String>) -> ApiError {
    ApiError {
        status,
        message: message.into(),
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            axum::Json(serde_json::json!({ "error": self.message })),
        )
            .into_response()
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(e: anyhow::Error) -> Self {
        let status = match e.downcast_ref::<crate::registry::Conflict>() {
            Some(_) => StatusCode::CONFLICT,
            None => StatusCode::INTERNAL_SERVER_ERROR,
        };
        err(status, format!("{e:#}"))
    }
}

pub(super) type ApiResult<T> = Result<T, ApiError>;

pub(super) const API_OFF: &str =
    "the admin API is off on this host: configure an [admin] token or [tenants.NAME]";

/// The token of `Authorization: Bearer <token>`.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

/// Refuses a request without a known token before its body is read. (A
/// known caller's body is read, within the size limit, even when it will be
/// refused: a client still sending would see a broken connection instead
/// of the reason.)
pub(super) async fn authenticated(
    State(control): State<Arc<Control>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if control.registry.is_none() {
        return err(StatusCode::NOT_FOUND, API_OFF).into_response();
    }
    if bearer(request.headers())
        .and_then(|t| control.tenants.authenticate(t))
        .is_none()
    {
        return err(
            StatusCode::UNAUTHORIZED,
            "missing or unknown `Authorization: Bearer <token>`",
        )
        .into_response();
    }
    next.run(request).await
}

/// The tenant a call acts for (`None`: the operator's own deployments).
pub(super) struct Scope {
    pub(super) tenant: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct ScopeQuery {
    pub(super) tenant: Option<String>,
}

pub(super) fn scope(
    control: &Control,
    headers: &HeaderMap,
    query: &ScopeQuery,
) -> ApiResult<(Scope, Arc<Registry>)> {
    let registry = control
        .registry
        .clone()
        .ok_or_else(|| err(StatusCode::NOT_FOUND, API_OFF))?;
    let token = bearer(headers).ok_or_else(|| {
        err(
            StatusCode::UNAUTHORIZED,
            "missing `Authorization: Bearer <token>`",
        )
    })?;
    let principal = control
        .tenants
        .authenticate(token)
        .ok_or_else(|| err(StatusCode::UNAUTHORIZED, "unknown token"))?;
    let tenant = match (principal, &query.tenant) {
        (Principal::Admin, t) => t.clone(),
        (Principal::Tenant(own), None) => Some(own),
        (Principal::Tenant(own), Some(t)) if *t == own => Some(own),
        (Principal::Tenant(own), Some(t)) => {
            return Err(err(
                StatusCode::FORBIDDEN,
                format!("the token of tenant `{own}` cannot act for tenant `{t}`"),
            ));
        }
    };
    if let Some(t) = &tenant
        && control.tenants.get(t).is_none()
    {
        return Err(err(StatusCode::NOT_FOUND, format!("no tenant `{t}`")));
    }
    Ok((Scope { tenant }, registry))
}

impl Scope {
    pub(super) fn id(&self, name: &str) -> ApiResult<String> {
        crate::config::check_name(name).map_err(|e| err(StatusCode::BAD_REQUEST, e.to_string()))?;
        Ok(crate::registry::id(self.tenant.as_deref(), name))
    }

    pub(super) fn tenant_config<'a>(&self, control: &'a Control) -> Option<&'a TenantConfig> {
        self.tenant.as_deref().and_then(|t| control.tenants.get(t))
    }

    pub(super) fn owns(&self, spec: &DeploymentSpec) -> bool {
        self.tenant.is_none() || spec.tenant == self.tenant
    }
}

pub(super) fn view(control: &Control, spec: &DeploymentSpec) -> View {
    let id = spec.id();
    let running = control.host.deployment(&id).map(|d| d.status_now());
    let problem = control.problems.lock().get(&id).cloned();
    let status = match (&problem, &running) {
        _ if spec.undeployed => Status::Undeployed,
        _ if spec.paused => Status::Paused,
        (
            Some(
                Problem::WaitingForModule(_)
                | Problem::CompilingModule(_)
                | Problem::WaitingForRoom(_),
            ),
            _,
        ) => Status::Starting,
        (Some(Problem::Failed(_)), _) => Status::Failed,
        (None, Some(_)) => Status::Running,
        (None, None) => Status::Starting,
    };
    View {
        name: spec.name.clone(),
        tenant: spec.tenant.clone(),
        status,
        module: spec.module.clone(),
        version: spec.version,
        previous_module: spec.previous_module.clone(),
        rolled_back: spec.rolled_back.clone(),
        error: problem
            .map(|p| p.to_string())
            .or_else(|| running.as_ref().and_then(|r| r.last_error.clone())),
        host: running,
        spec: spec.deployment.clone(),
        history: spec.history.clone(),
    }
}

pub(super) fn owned_spec(
    registry: &Registry,
    scope: &Scope,
    name: &str,
) -> ApiResult<DeploymentSpec> {
    let id = scope.id(name)?;
    registry
        .spec(&id)
        .filter(|s| scope.owns(s))
        .ok_or_else(|| err(StatusCode::NOT_FOUND, format!("no deployment `{name}`")))
}
