//! A host with an admin and two tenants, `acme` and `evil`, and its admin
//! API called as they would call it.

use std::path::Path;
use std::time::Duration;

use reqwest::blocking::Client as Http;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use weir_control::tenants::token_hash;

use crate::kafka::{Scope, Weir};

pub const ROOT: &str = "root-token";
pub const ACME: &str = "acme-token";
pub const EVIL: &str = "evil-token";

/// A host config (placeholders filled in by [`Weir::start`]) with the
/// admin and the two tenants, each limited to topics of its own prefix.
/// `host` and `engine` are extra lines of those sections; `evil_quota` is
/// the inline table of `evil`'s quota, or empty for the defaults.
pub fn config(host: &str, engine: &str, evil_quota: &str) -> String {
    let evil_quota = if evil_quota.is_empty() {
        String::new()
    } else {
        format!("quota = {evil_quota}\n")
    };
    format!(
        r#"
[kafka]
brokers = "{{brokers}}"
group_prefix = "{{p}}weir"
properties = {{ "session.timeout.ms" = "6000" }}
[host]
state_dir = "{{state}}"
listen = "{{listen}}"
commit_interval_ms = 200
{host}
[engine]
{engine}
[admin]
token_sha256 = "{root}"
[tenants.acme]
token_sha256 = "{acme}"
input_prefixes = ["{{p}}acme."]
output_prefixes = ["{{p}}acme."]
[tenants.evil]
token_sha256 = "{evil}"
input_prefixes = ["{{p}}evil."]
output_prefixes = ["{{p}}evil."]
{evil_quota}"#,
        root = token_hash(ROOT),
        acme = token_hash(ACME),
        evil = token_hash(EVIL)
    )
}

/// Starts a host on `config` and waits until it is healthy.
pub fn start_host(dir: &Path, k: &Scope, config: &str) -> Weir {
    let mut w = Weir::start(dir, k, config);
    w.authorize(ROOT);
    w.wait_healthy();
    w
}

/// Calls the host's API with `token` (none if empty); the answer's body as
/// JSON, or as a string if it is not JSON.
pub fn call(
    host: &Weir,
    method: Method,
    path: &str,
    token: &str,
    body: Option<Vec<u8>>,
) -> (StatusCode, Value) {
    let mut r = Http::new()
        .request(method, format!("http://{}{path}", host.listen))
        .timeout(Duration::from_secs(180));
    if !token.is_empty() {
        r = r.bearer_auth(token);
    }
    if let Some(b) = body {
        r = r.body(b);
    }
    let resp = r.send().unwrap();
    let status = resp.status();
    let text = resp.text().unwrap_or_default();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}
