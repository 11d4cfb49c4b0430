//! The admin API from the command line (`weir deploy`, `weir list`, ...).

use std::time::Duration;

use anyhow::{Context, Result, bail};
use reqwest::Method;
use reqwest::blocking::{Client as Http, RequestBuilder};
use serde_json::Value;

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
        Ok(Client { base: url.trim_end_matches('/').to_owned(), token: token.to_owned(), tenant, http })
    }

    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let mut r = self.http.request(method, format!("{}{path}", self.base)).bearer_auth(&self.token);
        if let Some(t) = &self.tenant {
            r = r.query(&[("tenant", t)]);
        }
        r
    }

    fn send(&self, what: &str, request: RequestBuilder) -> Result<Value> {
        let response = request.send().with_context(|| format!("{what}: calling {}", self.base))?;
        let status = response.status();
        let text = response.text().unwrap_or_default();
        let body: Value = if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::String(text)) };
        if !status.is_success() {
            let message = body.get("error").and_then(Value::as_str).map(str::to_owned).unwrap_or_else(|| body.to_string());
            bail!("{what}: {status}: {message}");
        }
        Ok(body)
    }

    /// Uploads a module; returns its sha256.
    pub fn upload(&self, bytes: Vec<u8>) -> Result<String> {
        let body = self.send("uploading the module", self.request(Method::PUT, "/v1/modules").body(bytes))?;
        Ok(body["module"].as_str().unwrap_or_default().to_owned())
    }

    pub fn deploy(&self, name: &str, spec: &Value) -> Result<Value> {
        self.send(&format!("deploying `{name}`"), self.request(Method::POST, &format!("/v1/deployments/{name}")).json(spec))
    }

    pub fn upgrade(&self, name: &str, spec: &Value) -> Result<Value> {
        self.send(&format!("upgrading `{name}`"), self.request(Method::PUT, &format!("/v1/deployments/{name}")).json(spec))
    }

    pub fn list(&self) -> Result<Value> {
        self.send("listing deployments", self.request(Method::GET, "/v1/deployments"))
    }

    pub fn status(&self, name: &str) -> Result<Value> {
        self.send(&format!("`{name}`"), self.request(Method::GET, &format!("/v1/deployments/{name}")))
    }

    pub fn pause(&self, name: &str, paused: bool) -> Result<Value> {
        let verb = if paused { "pause" } else { "resume" };
        self.send(&format!("{verb} `{name}`"), self.request(Method::POST, &format!("/v1/deployments/{name}/{verb}")))
    }

    pub fn undeploy(&self, name: &str, drop_state: bool) -> Result<()> {
        let r = self.request(Method::DELETE, &format!("/v1/deployments/{name}")).query(&[("drop_state", drop_state)]);
        self.send(&format!("undeploying `{name}`"), r).map(|_| ())
    }

    pub fn logs(&self, name: &str, lines: usize) -> Result<Value> {
        self.send(&format!("logs of `{name}`"), self.request(Method::GET, &format!("/v1/deployments/{name}/logs")).query(&[("lines", lines)]))
    }
}
