//! The admin API (HTTP, JSON, under `/v1` on the host's listener): upload
//! modules, deploy, upgrade, pause, resume, undeploy, read status and guest
//! logs. Every call carries `Authorization: Bearer <token>`; a tenant's
//! token reaches only that tenant's deployments, the admin token any.
//!
//! A request changes nothing until everything about it checks out: the
//! module is a component of the world that compiles within the budget, the
//! deployment's topics exist and are the tenant's, its limits fit the quota
//! and its `init` accepts the config. Then the change goes to the registry
//! and every host applies it.
//!
//! (Over 400 lines: every route and its authorization in one file, so a reviewer sees what a token can reach.)

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Extension, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post, put};
use serde::Deserialize;

mod access;
pub mod api;
pub mod client;
mod compiles;
mod observe;
pub mod reset;
pub mod state;

use crate::config::DeploymentConfig;
use crate::registry::{DeploymentSpec, Registry};

use crate::Control;
pub use access::{ApiError, bearer};
use access::{ApiResult, Scope, ScopeQuery, authenticated, err, owned_spec, scope, view};
use api::{Uploaded, View};
use compiles::Compiles;
use weir_abi::now_ms;
use weir_engine::LoadError;

fn admit(compiles: &Arc<Compiles>, scope: &Scope) -> ApiResult<compiles::Ticket> {
    compiles
        .admit(scope.tenant.as_deref())
        .map_err(|why| err(StatusCode::TOO_MANY_REQUESTS, why))
}

/// How long a request waits for a compile (and a deployment's check):
/// the compile limit, which ends the compile itself, and some room to
/// start it and to run `init`.
fn compile_budget(control: &Control) -> Duration {
    Duration::from_secs(control.host.engine().config().compile.seconds) + Duration::from_secs(30)
}

pub fn router(control: Arc<Control>) -> Router {
    let max_body = (control.host.engine().config().max_module_mb as usize + 1) << 20;
    Router::new()
        .route("/v1/modules", put(upload))
        .route("/v1/deployments", get(list))
        .route(
            "/v1/deployments/{name}",
            get(show).post(deploy).put(upgrade).delete(undeploy),
        )
        .route("/v1/deployments/{name}/pause", post(pause))
        .route("/v1/deployments/{name}/resume", post(resume))
        .route("/v1/deployments/{name}/rollback", post(rollback))
        .route("/v1/deployments/{name}/logs", get(logs))
        .merge(observe::routes())
        .merge(state::routes())
        .merge(reset::routes())
        .layer(DefaultBodyLimit::max(max_body))
        .layer(Extension(Arc::new(compiles::Compiles::default())))
        .route_layer(axum::middleware::from_fn_with_state(
            control.clone(),
            authenticated,
        ))
        .merge(state::peer_routes())
        .with_state(control)
}

async fn upload(
    State(control): State<Arc<Control>>,
    Extension(compiles): Extension<Arc<Compiles>>,
    headers: HeaderMap,
    Query(q): Query<ScopeQuery>,
    body: Bytes,
) -> ApiResult<(StatusCode, axum::Json<Uploaded>)> {
    let (scope, registry) = scope(&control, &headers, &q)?;
    let quota = scope.tenant_config(&control).map(|t| t.quota);
    if let Some(quota) = &quota {
        let limit = quota.max_module_mb << 20;
        if body.len() as u64 > limit {
            return Err(err(
                StatusCode::PAYLOAD_TOO_LARGE,
                LoadError::TooLarge {
                    size: body.len() as u64,
                    limit,
                }
                .to_string(),
            ));
        }
        check_module_quota(&registry, scope.tenant.as_deref(), quota, &body)?;
    }
    let ticket = admit(&compiles, &scope)?;
    let budget = compile_budget(&control);
    // Compiled and stored in a task of its own, which a client that goes
    // away does not cancel: a compile cut off before its module is stored
    // would leave native code in the cache that no quota counts.
    let work = tokio::spawn(async move {
        // One upload of the caller's at a time, to the end: the quota is
        // checked again over what its last upload stored.
        let _ticket = ticket;
        let (h, bytes) = (control.clone(), body.clone());
        let module = tokio::task::spawn_blocking(move || h.host.engine().load(&bytes))
            .await
            .map_err(|e| err(StatusCode::INTERNAL_SERVER_ERROR, format!("compiling: {e}")))?
            .map_err(|e| {
                let status = match e {
                    LoadError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
                    LoadError::Compiler(_) => StatusCode::INTERNAL_SERVER_ERROR,
                    _ => StatusCode::UNPROCESSABLE_ENTITY,
                };
                err(status, e.to_string())
            })?;
        let tenant = scope.tenant.as_deref();
        let stored = match &quota {
            Some(quota) => check_module_quota(&registry, tenant, quota, &body),
            None => Ok(()),
        };
        let stored = match stored {
            Ok(()) => registry
                .put_module(&body, tenant)
                .await
                .map_err(ApiError::from),
            Err(e) => Err(e),
        };
        if stored.is_err() && registry.modules.get(&module.digest).is_none() {
            control.host.engine().forget(&module.digest);
        }
        let digest = stored?;
        ApiResult::Ok(Uploaded {
            module: digest,
            size: module.size,
            compiled_ms: module.compiled_in.map(|d| d.as_millis()),
        })
    });
    match tokio::time::timeout(budget, work).await {
        Err(_) => Err(err(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("the module did not compile within {} s", budget.as_secs()),
        )),
        Ok(Err(e)) => Err(err(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("uploading: {e}"),
        )),
        Ok(Ok(uploaded)) => Ok((StatusCode::CREATED, axum::Json(uploaded?))),
    }
}

/// Refuses a module that would take `tenant` past its quota of stored
/// modules (one it already owns costs nothing more).
fn check_module_quota(
    registry: &Registry,
    tenant: Option<&str>,
    quota: &crate::tenants::Quota,
    body: &[u8],
) -> ApiResult<()> {
    let digest = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(body));
    if registry.owns(tenant, &digest) {
        return Ok(());
    }
    let (modules, bytes) = registry.stored_by(tenant);
    let gc = "modules no deployment runs are deleted an hour after their upload";
    if modules >= quota.max_modules {
        return Err(err(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("the tenant has {modules} modules, its quota `max_modules` ({gc})"),
        ));
    }
    if bytes + body.len() as u64 > quota.max_module_storage_mb << 20 {
        return Err(err(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "the tenant's modules take {bytes} bytes; with {} more they would pass its quota `max_module_storage_mb` ({} MiB; {gc})",
                body.len(),
                quota.max_module_storage_mb
            ),
        ));
    }
    Ok(())
}

async fn list(
    State(control): State<Arc<Control>>,
    headers: HeaderMap,
    Query(q): Query<ScopeQuery>,
) -> ApiResult<axum::Json<Vec<View>>> {
    let (scope, registry) = scope(&control, &headers, &q)?;
    // The admin without `?tenant=` sees everything.
    let all = q.tenant.is_none() && scope.tenant.is_none();
    let views = registry
        .specs()
        .values()
        .filter(|s| all || s.tenant == scope.tenant)
        .map(|s| view(&control, s))
        .collect();
    Ok(axum::Json(views))
}

async fn show(
    State(control): State<Arc<Control>>,
    headers: HeaderMap,
    Query(q): Query<ScopeQuery>,
    Path(name): Path<String>,
) -> ApiResult<axum::Json<View>> {
    let (scope, registry) = scope(&control, &headers, &q)?;
    Ok(axum::Json(view(
        &control,
        &owned_spec(&registry, &scope, &name)?,
    )))
}

/// A deployment request: the fields of a `[deployments.NAME]` table, with
/// `module` (an uploaded module's sha256) instead of `plugin`.
fn parse_request(
    control: &Control,
    scope: &Scope,
    name: &str,
    body: &[u8],
) -> ApiResult<(String, DeploymentConfig)> {
    let bad = |m: String| err(StatusCode::BAD_REQUEST, m);
    let mut fields: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(body)
        .map_err(|e| bad(format!("the body is not a JSON object: {e}")))?;
    let module = match fields.remove("module") {
        Some(serde_json::Value::String(m)) if crate::registry::is_digest(&m) => m,
        Some(m) => {
            return Err(bad(format!(
                "`module` must be the sha256 (64 lowercase hex digits) that PUT /v1/modules returned, not {m}"
            )));
        }
        None => {
            return Err(bad(
                "`module` (the sha256 that PUT /v1/modules returned) is missing".into(),
            ));
        }
    };
    if fields.contains_key("plugin") {
        return Err(bad(
            "`plugin` is for the configuration file; name an uploaded module with `module`".into(),
        ));
    }
    let given = match fields.remove("limits") {
        None => serde_json::Map::new(),
        Some(serde_json::Value::Object(m)) => m,
        Some(_) => return Err(bad("`limits` must be an object".into())),
    };
    let tenant = scope.tenant_config(control);
    let limits = match tenant {
        Some(t) => t
            .quota
            .limits(&given)
            .map_err(|e| err(StatusCode::FORBIDDEN, e))?,
        None => serde_json::from_value(serde_json::Value::Object(given))
            .map_err(|e| bad(format!("limits: {e}")))?,
    };
    fields.insert(
        "limits".into(),
        serde_json::to_value(limits).expect("limits serialize"),
    );
    let mut config: DeploymentConfig = serde_json::from_value(serde_json::Value::Object(fields))
        .map_err(|e| bad(e.to_string()))?;
    config.check().map_err(|e| bad(format!("{e:#}")))?;
    // The default dead-letter topic follows the output (so it falls inside
    // a tenant's prefixes).
    config
        .dead_letter_topic
        .get_or_insert_with(|| format!("{}.dlq", config.output));
    if let Some(t) = tenant {
        if config.cpu_share > t.quota.max_cpu_share {
            return Err(err(
                StatusCode::FORBIDDEN,
                format!(
                    "cpu_share = {} exceeds the tenant's quota of {}",
                    config.cpu_share, t.quota.max_cpu_share
                ),
            ));
        }
        let id = crate::registry::id(scope.tenant.as_deref(), name);
        t.check_topics(&config, &config.dead_letter_topic(&id))
            .map_err(|e| err(StatusCode::FORBIDDEN, e))?;
    }
    Ok((module, config))
}

/// Checks a deployment against the cluster and runs its `init` once, off
/// the request path.
async fn validate(
    control: &Arc<Control>,
    compiles: &Arc<Compiles>,
    registry: &Registry,
    scope: &Scope,
    id: &str,
    module: &str,
    config: &DeploymentConfig,
) -> ApiResult<()> {
    let missing = || {
        err(
            StatusCode::BAD_REQUEST,
            format!("no module {module}: upload it first (PUT /v1/modules)"),
        )
    };
    // A tenant deploys what it uploaded (or what its deployment already
    // runs), not a module whose digest it learnt from someone else.
    let in_use = registry
        .spec(id)
        .is_some_and(|s| s.module == module || s.previous_module.as_deref() == Some(module));
    if scope.tenant.is_some() && !in_use && !registry.owns(scope.tenant.as_deref(), module) {
        return Err(missing());
    }
    let bytes = registry.modules.get(module).ok_or_else(missing)?;
    let ticket = admit(compiles, scope)?;
    let (h, config, tenant, id) = (
        control.clone(),
        config.clone(),
        scope.tenant.clone(),
        id.to_owned(),
    );
    let checked = tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        let _ticket = ticket;
        let module = Arc::new(h.host.engine().load(&bytes)?);
        h.check_deployment(&id, &config, module, tenant.as_deref())
            .map(|_| ())
    });
    let budget = compile_budget(control);
    match tokio::time::timeout(budget, checked).await {
        Err(_) => Err(err(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!(
                "checking the deployment took more than {} s",
                budget.as_secs()
            ),
        )),
        Ok(Err(e)) => Err(err(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())),
        Ok(Ok(Err(e))) => Err(err(StatusCode::UNPROCESSABLE_ENTITY, format!("{e:#}"))),
        Ok(Ok(Ok(()))) => Ok(()),
    }
}

async fn deploy(
    State(control): State<Arc<Control>>,
    Extension(compiles): Extension<Arc<Compiles>>,
    headers: HeaderMap,
    Query(q): Query<ScopeQuery>,
    Path(name): Path<String>,
    body: Bytes,
) -> ApiResult<(StatusCode, axum::Json<View>)> {
    let (scope, registry) = scope(&control, &headers, &q)?;
    let id = scope.id(&name)?;
    let (module, config) = parse_request(&control, &scope, &name, &body)?;
    let existing = registry.spec(&id);
    if existing.as_ref().is_some_and(|s| !s.undeployed) {
        return Err(err(
            StatusCode::CONFLICT,
            format!(
                "`{name}` is already deployed: upgrade it (PUT, `weir upgrade`) or undeploy it first"
            ),
        ));
    }
    if let Some(t) = scope.tenant_config(&control) {
        let count = registry
            .specs()
            .values()
            .filter(|s| s.tenant == scope.tenant && !s.undeployed)
            .count();
        if count >= t.quota.max_deployments {
            return Err(err(
                StatusCode::FORBIDDEN,
                format!(
                    "the tenant has {count} deployments, its quota is {}",
                    t.quota.max_deployments
                ),
            ));
        }
    }
    validate(
        &control, &compiles, &registry, &scope, &id, &module, &config,
    )
    .await?;
    let mut spec = DeploymentSpec {
        tenant: scope.tenant.clone(),
        name: name.clone(),
        // Redeploying over a kept undeploy continues its state.
        incarnation: existing
            .as_ref()
            .map_or_else(|| format!("{:x}", now_ms()), |s| s.incarnation.clone()),
        module,
        version: existing.as_ref().map_or(1, |s| s.version + 1),
        paused: false,
        undeployed: false,
        previous_module: None,
        rolled_back: None,
        updated_at_ms: now_ms(),
        deployment: config,
        write: String::new(),
        history: existing.map(|s| s.history).unwrap_or_default(),
    };
    spec.record("deployed", None);
    registry.publish(&id, Some(&spec)).await?;
    Ok((StatusCode::CREATED, axum::Json(view(&control, &spec))))
}

async fn upgrade(
    State(control): State<Arc<Control>>,
    Extension(compiles): Extension<Arc<Compiles>>,
    headers: HeaderMap,
    Query(q): Query<ScopeQuery>,
    Path(name): Path<String>,
    body: Bytes,
) -> ApiResult<axum::Json<View>> {
    let (scope, registry) = scope(&control, &headers, &q)?;
    let id = scope.id(&name)?;
    let current = owned_spec(&registry, &scope, &name).and_then(|s| match s.undeployed {
        true => Err(err(
            StatusCode::NOT_FOUND,
            format!("`{name}` is undeployed: deploy it again"),
        )),
        false => Ok(s),
    })?;
    let (module, config) = parse_request(&control, &scope, &name, &body)?;
    validate(
        &control, &compiles, &registry, &scope, &id, &module, &config,
    )
    .await?;
    let mut spec = current.clone();
    let why = match (module != current.module, config != current.deployment) {
        (true, _) => {
            spec.previous_module = Some(current.module.clone());
            spec.rolled_back = None;
            format!("from module {}", current.module)
        }
        (false, true) => "configuration only".to_owned(),
        (false, false) => "nothing changed".to_owned(),
    };
    spec.module = module;
    spec.deployment = config;
    spec.change("upgraded", Some(why));
    registry.publish(&id, Some(&spec)).await?;
    Ok(axum::Json(view(&control, &spec)))
}

async fn set_paused(
    control: Arc<Control>,
    headers: HeaderMap,
    q: ScopeQuery,
    name: String,
    paused: bool,
) -> ApiResult<axum::Json<View>> {
    let (scope, registry) = scope(&control, &headers, &q)?;
    let mut spec = owned_spec(&registry, &scope, &name)?;
    if spec.undeployed {
        return Err(err(
            StatusCode::NOT_FOUND,
            format!("`{name}` is undeployed"),
        ));
    }
    if spec.paused != paused {
        spec.paused = paused;
        spec.change(if paused { "paused" } else { "resumed" }, None);
        registry.publish(&spec.id(), Some(&spec)).await?;
    }
    Ok(axum::Json(view(&control, &spec)))
}

/// Returns a deployment to the module before its last upgrade (the
/// configuration stays), on every host.
async fn rollback(
    State(control): State<Arc<Control>>,
    Extension(compiles): Extension<Arc<Compiles>>,
    headers: HeaderMap,
    Query(q): Query<ScopeQuery>,
    Path(name): Path<String>,
) -> ApiResult<axum::Json<View>> {
    let (scope, registry) = scope(&control, &headers, &q)?;
    let mut spec = owned_spec(&registry, &scope, &name)?;
    if spec.undeployed {
        return Err(err(
            StatusCode::NOT_FOUND,
            format!("`{name}` is undeployed"),
        ));
    }
    let previous = spec.previous_module.clone().ok_or_else(|| {
        err(
            StatusCode::CONFLICT,
            format!("`{name}` has no upgrade to roll back"),
        )
    })?;
    validate(
        &control,
        &compiles,
        &registry,
        &scope,
        &spec.id(),
        &previous,
        &spec.deployment,
    )
    .await?;
    spec.previous_module = Some(std::mem::replace(&mut spec.module, previous));
    let why = "asked through the admin API".to_owned();
    spec.rolled_back = Some(why.clone());
    spec.change("rolled back", Some(why));
    registry.publish(&spec.id(), Some(&spec)).await?;
    Ok(axum::Json(view(&control, &spec)))
}

async fn pause(
    State(control): State<Arc<Control>>,
    headers: HeaderMap,
    Query(q): Query<ScopeQuery>,
    Path(name): Path<String>,
) -> ApiResult<axum::Json<View>> {
    set_paused(control, headers, q, name, true).await
}

async fn resume(
    State(control): State<Arc<Control>>,
    headers: HeaderMap,
    Query(q): Query<ScopeQuery>,
    Path(name): Path<String>,
) -> ApiResult<axum::Json<View>> {
    set_paused(control, headers, q, name, false).await
}

#[derive(Deserialize)]
struct UndeployQuery {
    tenant: Option<String>,
    /// Delete the state, changelog and offsets too (default: keep them for a
    /// later deploy of the same name).
    #[serde(default)]
    drop_state: bool,
}

async fn undeploy(
    State(control): State<Arc<Control>>,
    headers: HeaderMap,
    Query(q): Query<UndeployQuery>,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    let (scope, registry) = scope(
        &control,
        &headers,
        &ScopeQuery {
            tenant: q.tenant.clone(),
        },
    )?;
    let mut spec = owned_spec(&registry, &scope, &name)?;
    let id = spec.id();
    if q.drop_state {
        registry.publish(&id, None).await?;
        // Once the group is empty nobody writes the changelog any more.
        let (h, storage) = (control.clone(), spec.storage());
        tokio::task::spawn_blocking(move || h.host.drop_changelog(&storage))
            .await
            .map_err(|e| err(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))??;
    } else if !spec.undeployed {
        spec.undeployed = true;
        spec.change("undeployed", None);
        registry.publish(&id, Some(&spec)).await?;
    }
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
struct LogsQuery {
    tenant: Option<String>,
    #[serde(default = "default_lines")]
    lines: usize,
}

fn default_lines() -> usize {
    100
}

async fn logs(
    State(control): State<Arc<Control>>,
    headers: HeaderMap,
    Query(q): Query<LogsQuery>,
    Path(name): Path<String>,
) -> ApiResult<axum::Json<Vec<weir_engine::transform::log::LogLine>>> {
    let (scope, registry) = scope(
        &control,
        &headers,
        &ScopeQuery {
            tenant: q.tenant.clone(),
        },
    )?;
    let spec = owned_spec(&registry, &scope, &name)?;
    let lines = control
        .host
        .deployment(&spec.id())
        .map(|d| d.runnable().spec.log.recent(q.lines))
        .unwrap_or_default();
    Ok(axum::Json(lines))
}
