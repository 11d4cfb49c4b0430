//! The admin API from the command line (`weir deploy`, `weir list`, ...).

use std::time::Duration;

use anyhow::{Context, Result, bail};
use reqwest::Method;
use reqwest::blocking::{Client as Http, RequestBuilder};
use serde::de::DeserializeOwned;
use serde_json::Value;
use weir_engine::transform::log::LogLine;

use super::api::{Uploaded, View};
use super::reset::{ResetDone, ResetRequest};
use super::state::Answer;
use weir_pipeline::state_query::StateQuery;

pub struct Client {
    base: String,
    token: String,
    /// The tenant an admin token acts for.
    tenant: Option<String>,
    http: Http,
}

impl Client {
    pub fn new(url: &str, token: &str, tenant: Option<String>) -> Result<Client> {
        // Uploads wait for the module to compile (seconds for Python and
        // JavaScript components).
        let http = Http::builder().timeout(Duration::from_secs(300)).build()?;
        Ok(Client {
            base: url.trim_end_matches('/').to_owned(),
            token: token.to_owned(),
            tenant,
            http,
        })
    }

    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let mut r = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(t) = &self.tenant {
            r = r.query(&[("tenant", t)]);
        }
        r
    }

    /// Sends `request` and reads its answer as `T`.
    fn call<T: DeserializeOwned>(&self, what: &str, request: RequestBuilder) -> Result<T> {
        let body = self.send(what, request)?;
        serde_json::from_value(body).with_context(|| {
            format!(
                "{what}: the host's answer is not what this weir expects (a different version?)"
            )
        })
    }

    fn send(&self, what: &str, request: RequestBuilder) -> Result<Value> {
        let response = request
            .send()
            .with_context(|| format!("{what}: calling {}", self.base))?;
        let status = response.status();
        let text = response.text().unwrap_or_default();
        let body: Value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        if !status.is_success() {
            let message = body
                .get("error")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .unwrap_or_else(|| body.to_string());
            bail!("{what}: {status}: {message}");
        }
        Ok(body)
    }

    /// Uploads a module (compiled and checked by the host).
    pub fn upload(&self, bytes: Vec<u8>) -> Result<Uploaded> {
        self.call(
            "uploading the module",
            self.request(Method::PUT, "/v1/modules").body(bytes),
        )
    }

    /// Deploys `request`: the fields of a `[deployments.NAME]` table, with
    /// `module` (an uploaded module's sha256) instead of `plugin`.
    pub fn deploy(&self, name: &str, request: &Value) -> Result<View> {
        self.call(
            &format!("deploying `{name}`"),
            self.request(Method::POST, &format!("/v1/deployments/{name}"))
                .json(request),
        )
    }

    pub fn upgrade(&self, name: &str, request: &Value) -> Result<View> {
        self.call(
            &format!("upgrading `{name}`"),
            self.request(Method::PUT, &format!("/v1/deployments/{name}"))
                .json(request),
        )
    }

    pub fn list(&self) -> Result<Vec<View>> {
        self.call(
            "listing deployments",
            self.request(Method::GET, "/v1/deployments"),
        )
    }

    pub fn status(&self, name: &str) -> Result<View> {
        self.call(
            &format!("`{name}`"),
            self.request(Method::GET, &format!("/v1/deployments/{name}")),
        )
    }

    pub fn pause(&self, name: &str, paused: bool) -> Result<View> {
        let verb = if paused { "pause" } else { "resume" };
        self.call(
            &format!("{verb} `{name}`"),
            self.request(Method::POST, &format!("/v1/deployments/{name}/{verb}")),
        )
    }

    pub fn undeploy(&self, name: &str, drop_state: bool) -> Result<()> {
        let r = self
            .request(Method::DELETE, &format!("/v1/deployments/{name}"))
            .query(&[("drop_state", drop_state)]);
        self.send(&format!("undeploying `{name}`"), r).map(|_| ())
    }

    pub fn logs(&self, name: &str, lines: usize) -> Result<Vec<LogLine>> {
        self.call(
            &format!("logs of `{name}`"),
            self.request(Method::GET, &format!("/v1/deployments/{name}/logs"))
                .query(&[("lines", lines)]),
        )
    }

    pub fn rollback(&self, name: &str) -> Result<View> {
        self.call(
            &format!("rolling back `{name}`"),
            self.request(Method::POST, &format!("/v1/deployments/{name}/rollback")),
        )
    }

    pub fn state(&self, name: &str, query: &StateQuery) -> Result<Answer> {
        self.call(
            &format!("state of `{name}`"),
            self.request(Method::GET, &format!("/v1/deployments/{name}/state"))
                .query(query),
        )
    }

    pub fn reset(&self, name: &str, request: &ResetRequest) -> Result<ResetDone> {
        self.call(
            &format!("resetting `{name}`"),
            self.request(Method::POST, &format!("/v1/deployments/{name}/reset"))
                .json(request),
        )
    }
}
