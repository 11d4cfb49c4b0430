//! A client of a registry that speaks the Confluent Schema Registry API
//! (Confluent's, Apicurio's `ccompat`, Karapace), with a bounded cache of
//! schemas by id.
//!
//! Workers never wait for the registry: [`Registry::lookup`] answers from
//! the cache, or hands the id to the client's fetch thread and says the
//! caller must wait. A registry that is down or slow is not the record's
//! fault, so nothing fails for it; an id the registry does not know is.
//!
//! (Over 400 lines: the API's calls, the cache and the fetch thread share the one connection.)

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use base64::Engine;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use weir_kafka::security::Secret;

use crate::avro::AvroSchema;
use crate::json_schema::JsonSchema;
use crate::protobuf::ProtoSchema;

/// `[schema_registry]`: where the registry is and how to reach it.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryConfig {
    /// The API's base URL, e.g. `https://registry:8081` or Apicurio's
    /// `http://registry:8080/apis/ccompat/v7`.
    pub url: String,
    /// HTTP basic auth (Confluent Cloud's API key and secret).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<Secret>,
    /// A bearer token, instead of basic auth.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<Secret>,
    /// PEM file of the CA that signed the registry's certificate (default:
    /// the system's roots). Verification is never turned off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// Per request, ms.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Schemas kept in memory, at most (each parsed once).
    #[serde(default = "default_cached")]
    pub cached_schemas: usize,
}

fn default_timeout_ms() -> u64 {
    5_000
}

fn default_cached() -> usize {
    1_000
}

/// Largest schema (or answer) read from the registry: a schema is
/// untrusted input, and parsing it costs memory and time in its size.
pub const MAX_SCHEMA_BYTES: u64 = 1 << 20;

/// How long the registry's "no such id" is believed: ids are allocated
/// once, so an unknown one is a bad record, but a registry restored from a
/// backup may learn it later.
const UNKNOWN_FOR: Duration = Duration::from_secs(60);

/// A schema, parsed: what records of it are read and written with.
#[derive(Clone, Debug)]
pub enum Parsed {
    Avro(Arc<AvroSchema>),
    Json(Arc<JsonSchema>),
    Protobuf(Arc<ProtoSchema>),
}

impl Parsed {
    /// Parses `text` as a schema of the registry's `kind` (`AVRO`,
    /// `JSON`, `PROTOBUF`).
    pub fn parse(kind: &str, text: &str) -> Result<Parsed, String> {
        match kind {
            "AVRO" => AvroSchema::parse(text).map(|s| Parsed::Avro(Arc::new(s))),
            "JSON" => JsonSchema::parse(text).map(|s| Parsed::Json(Arc::new(s))),
            "PROTOBUF" => ProtoSchema::parse(text).map(|s| Parsed::Protobuf(Arc::new(s))),
            other => Err(format!("a schema of a type Weir does not know: {other:?}")),
        }
    }

    /// The registry's name of its kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Parsed::Avro(_) => "AVRO",
            Parsed::Json(_) => "JSON",
            Parsed::Protobuf(_) => "PROTOBUF",
        }
    }
}

/// A schema the registry gave.
#[derive(Debug)]
pub struct Registered {
    pub id: u32,
    /// The subjects it is registered under (for tenant checks and the
    /// record's metadata).
    pub subjects: Vec<String>,
    /// Parsed, or why it cannot be used.
    pub parsed: Result<Parsed, String>,
}

/// Where schemas come from: a registry ([`Registry`]), or files
/// ([`crate::files::SchemaFiles`], for `weir test`).
pub trait Schemas: Send + Sync {
    /// The schema of `id` if at hand; never blocks on the network.
    fn lookup(&self, id: u32) -> Lookup;
    /// The schema of `id`, waiting for it if need be (start-up, tools).
    fn fetch(&self, id: u32) -> Result<Arc<Registered>>;
    /// The id of `schema` (written `text`) under `subject`: registered
    /// now if the subject lacks it and `may_register`; refused, with the
    /// registry's reason, if the subject's compatibility rule does not
    /// accept it.
    fn register(
        &self,
        subject: &str,
        schema: &Parsed,
        text: &str,
        may_register: bool,
    ) -> Result<u32>;
    /// The id of the latest schema of `subject`.
    fn latest(&self, subject: &str) -> Result<u32>;
    /// Asks for `id` again for a record of `topic` that is not under its
    /// subjects, which may have grown since it was fetched (the registry
    /// gives a schema registered under a second subject the same id):
    /// whether it did. At most once in [`REFETCH_AFTER`] per id and topic,
    /// so a record naming another topic's schema costs a request a while,
    /// not one each, and topics registering one schema at once do not
    /// spend each other's.
    fn refetch(&self, _id: u32, _topic: &str) -> bool {
        false
    }
}

/// How long after asking for an id's subjects again a record that is not
/// under them is believed.
pub const REFETCH_AFTER: Duration = Duration::from_secs(30);

/// What the cache says of an id.
#[derive(Clone, Debug)]
pub enum Lookup {
    Found(Arc<Registered>),
    /// The registry does not have it (or it cannot be used): the record
    /// is bad.
    Unusable(String),
    /// Not known yet: asked for, try again in a moment. The reason is the
    /// last error reaching the registry, if any.
    Waiting(Option<String>),
}

enum Cached {
    Found(Arc<Registered>),
    Unusable(String, Instant),
}

struct Cache {
    entries: HashMap<u32, Cached>,
    /// Insertion order, for eviction.
    order: VecDeque<u32>,
    capacity: usize,
    /// Ids asked for and not answered yet.
    asked: HashSet<u32>,
    /// The last error reaching the registry, cleared by an answer.
    unreachable: Option<String>,
    /// When ids were last asked for again for a topic ([`Schemas::refetch`]).
    refetched: HashMap<(u32, String), Instant>,
}

impl Cache {
    fn insert(&mut self, id: u32, entry: Cached) {
        if self.entries.insert(id, entry).is_none() {
            self.order.push_back(id);
        }
        while self.entries.len() > self.capacity.max(1) {
            let Some(old) = self.order.pop_front() else {
                break;
            };
            self.entries.remove(&old);
        }
    }
}

/// A registry client, shared by every deployment of a host.
pub struct Registry {
    http: Http,
    cache: Arc<Mutex<Cache>>,
    ask: mpsc::Sender<u32>,
}

/// The HTTP side: a connection pool and the credentials, never shown.
#[derive(Clone)]
struct Http {
    agent: ureq::Agent,
    base: String,
    authorization: Option<String>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("url", &self.http.base)
            .finish_non_exhaustive()
    }
}

impl Registry {
    /// A client of the registry `config` names; reads its secrets and CA
    /// now, so a wrong one shows at start-up, not at the first record.
    pub fn new(config: &RegistryConfig) -> Result<Registry> {
        let base = config.url.trim_end_matches('/').to_owned();
        let Some(rest) = base
            .strip_prefix("https://")
            .or_else(|| base.strip_prefix("http://"))
        else {
            bail!("schema_registry.url: it is not an http:// or https:// URL");
        };
        if rest
            .split('/')
            .next()
            .is_some_and(|authority| authority.contains('@'))
        {
            bail!(
                "schema_registry.url: credentials go in `username` and `password` (or `token`), which are kept secret, not in the URL"
            );
        }
        let credentials = config.password.is_some() || config.token.is_some();
        if credentials && base.starts_with("http://") {
            bail!(
                "schema_registry: credentials would cross the network in the clear over http://; use https://"
            );
        }
        let authorization = match (&config.username, &config.password, &config.token) {
            (_, _, Some(token)) if config.username.is_none() => {
                Some(format!("Bearer {}", token.read("schema_registry.token")?))
            }
            (Some(user), Some(password), None) => {
                let pair = format!("{user}:{}", password.read("schema_registry.password")?);
                Some(format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(pair)
                ))
            }
            (None, None, None) => None,
            _ => bail!(
                "schema_registry: set `username` and `password` (basic auth) or `token` (bearer), not a part or both"
            ),
        };
        let mut tls = ureq::tls::TlsConfig::builder().provider(ureq::tls::TlsProvider::NativeTls);
        tls = match &config.ca_file {
            Some(file) => {
                let pem = std::fs::read(file).with_context(|| {
                    format!("schema_registry.ca_file: reading {}", file.display())
                })?;
                let certs = ureq::tls::parse_pem(&pem)
                    .filter_map(|item| match item {
                        Ok(ureq::tls::PemItem::Certificate(c)) => Some(Ok(c)),
                        Ok(_) => None,
                        Err(e) => Some(Err(e)),
                    })
                    .collect::<Result<Vec<_>, _>>()
                    .with_context(|| format!("schema_registry.ca_file: {}", file.display()))?;
                if certs.is_empty() {
                    bail!(
                        "schema_registry.ca_file: {} holds no certificate",
                        file.display()
                    );
                }
                tls.root_certs(ureq::tls::RootCerts::new_with_certs(&certs))
            }
            None => tls.root_certs(ureq::tls::RootCerts::PlatformVerifier),
        };
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_millis(config.timeout_ms.max(1))))
            .http_status_as_error(false)
            // Credentials go only where they were configured to.
            .max_redirects(0)
            .tls_config(tls.build())
            .build()
            .into();
        let http = Http {
            agent,
            base,
            authorization,
        };
        let cache = Arc::new(Mutex::new(Cache {
            entries: HashMap::new(),
            order: VecDeque::new(),
            capacity: config.cached_schemas,
            asked: HashSet::new(),
            unreachable: None,
            refetched: HashMap::new(),
        }));
        let (ask, asked) = mpsc::channel();
        let (fetcher, cached) = (http.clone(), Arc::downgrade(&cache));
        std::thread::Builder::new()
            .name("weir-schemas".into())
            .spawn(move || fetch_loop(fetcher, cached, asked))
            .context("starting the schema fetch thread")?;
        Ok(Registry { http, cache, ask })
    }
}

impl Schemas for Registry {
    /// The schema of `id` from the cache, or [`Lookup::Waiting`] after
    /// asking the fetch thread for it. Never blocks on the network.
    fn lookup(&self, id: u32) -> Lookup {
        let mut cache = self.cache.lock();
        match cache.entries.get(&id) {
            Some(Cached::Found(s)) => return Lookup::Found(s.clone()),
            Some(Cached::Unusable(why, at)) if at.elapsed() < UNKNOWN_FOR => {
                return Lookup::Unusable(why.clone());
            }
            _ => {}
        }
        // Bounded while the registry is away: past it, ids are asked for
        // when earlier ones are answered.
        if cache.asked.len() < cache.capacity.max(1) && cache.asked.insert(id) {
            // The thread only ends with the registry itself.
            let _ = self.ask.send(id);
        }
        Lookup::Waiting(cache.unreachable.clone())
    }

    /// The schema of `id`, fetched now if it is not cached (for start-up
    /// and tools, not for workers).
    fn fetch(&self, id: u32) -> Result<Arc<Registered>> {
        if let Lookup::Found(s) = self.lookup(id) {
            return Ok(s);
        }
        match self.http.schema(id)? {
            Fetched::Found(s) => {
                let s = Arc::new(s);
                self.cache.lock().insert(id, Cached::Found(s.clone()));
                Ok(s)
            }
            Fetched::Unusable(why) => bail!("schema {id}: {why}"),
        }
    }

    fn register(
        &self,
        subject: &str,
        schema: &Parsed,
        text: &str,
        may_register: bool,
    ) -> Result<u32> {
        let body = match schema.kind() {
            "AVRO" => serde_json::json!({ "schema": text }),
            kind => serde_json::json!({ "schema": text, "schemaType": kind }),
        };
        let path = format!("/subjects/{}", encode_path(subject));
        // Already there: its id.
        let (status, text) = self.http.post(&path, &body)?;
        if status == 200 {
            return Ok(parse::<IdAnswer>(&text)?.id);
        }
        if !may_register {
            bail!(
                "the schema is not registered under subject `{subject}`, and the deployment may not register it (registry: {})",
                reason(status, &text)
            );
        }
        let (status, text) = self.http.post(&format!("{path}/versions"), &body)?;
        match status {
            200 => Ok(parse::<IdAnswer>(&text)?.id),
            409 => bail!(
                "the schema is incompatible with subject `{subject}`: {}",
                reason(status, &text)
            ),
            _ => bail!(
                "registering a schema under subject `{subject}` failed: {}",
                reason(status, &text)
            ),
        }
    }

    fn refetch(&self, id: u32, topic: &str) -> bool {
        let mut cache = self.cache.lock();
        let key = (id, topic.to_owned());
        if cache
            .refetched
            .get(&key)
            .is_some_and(|at| at.elapsed() < REFETCH_AFTER)
        {
            return false;
        }
        if cache.refetched.len() >= cache.capacity.max(1) {
            cache.refetched.retain(|_, at| at.elapsed() < REFETCH_AFTER);
            if cache.refetched.len() >= cache.capacity.max(1) {
                return false;
            }
        }
        cache.refetched.insert(key, Instant::now());
        cache.entries.remove(&id);
        cache.order.retain(|&i| i != id);
        drop(cache);
        self.lookup(id);
        true
    }

    fn latest(&self, subject: &str) -> Result<u32> {
        let path = format!("/subjects/{}/versions/latest", encode_path(subject));
        let (status, text) = self.http.get(&path)?;
        if status != 200 {
            bail!("subject `{subject}`: {}", reason(status, &text));
        }
        Ok(parse::<IdAnswer>(&text)?.id)
    }
}

#[derive(Deserialize)]
struct IdAnswer {
    id: u32,
}

#[derive(Deserialize)]
struct SchemaAnswer {
    schema: String,
    #[serde(default, rename = "schemaType")]
    schema_type: Option<String>,
    #[serde(default)]
    references: Vec<serde_json::Value>,
}

#[derive(Deserialize)]
struct SubjectVersion {
    subject: String,
}

enum Fetched {
    Found(Registered),
    Unusable(String),
}

impl Http {
    fn get(&self, path: &str) -> Result<(u16, String)> {
        let mut request = self.agent.get(format!("{}{path}", self.base));
        if let Some(a) = &self.authorization {
            request = request.header("Authorization", a);
        }
        answer(request.call(), &self.base)
    }

    fn post(&self, path: &str, body: &serde_json::Value) -> Result<(u16, String)> {
        let mut request = self
            .agent
            .post(format!("{}{path}", self.base))
            .header("Content-Type", "application/vnd.schemaregistry.v1+json");
        if let Some(a) = &self.authorization {
            request = request.header("Authorization", a);
        }
        answer(request.send(body.to_string()), &self.base)
    }

    /// Schema `id` and its subjects. An error is the registry's absence,
    /// not the id's.
    fn schema(&self, id: u32) -> Result<Fetched> {
        // What the schema's owner controls (its size, its form) makes the
        // id unusable; only the registry's absence makes records wait.
        let unusable = |why: String| Ok(Fetched::Unusable(format!("schema {id}: {why}")));
        let (status, text) = self.get(&format!("/schemas/ids/{id}"))?;
        match status {
            200 => {}
            UNREADABLE => return unusable(text),
            401 | 403 => bail!(
                "the schema registry refused Weir's credentials: {}",
                reason(status, &text)
            ),
            408 | 429 | 500.. => bail!("the schema registry failed: {}", reason(status, &text)),
            _ => {
                return unusable(format!(
                    "the schema registry has no such schema: {}",
                    reason(status, &text)
                ));
            }
        }
        let Ok(answer) = parse::<SchemaAnswer>(&text) else {
            return unusable("the registry's answer is not a schema".into());
        };
        let (status, text) = self.get(&format!("/schemas/ids/{id}/versions"))?;
        match status {
            200 => {}
            UNREADABLE => return unusable(text),
            408 | 429 | 500.. => bail!(
                "the schema registry failed to list schema {id}'s subjects: {}",
                reason(status, &text)
            ),
            _ => return unusable(format!("its subjects: {}", reason(status, &text))),
        }
        let Ok(subjects) = parse::<Vec<SubjectVersion>>(&text) else {
            return unusable("the registry's list of its subjects is not one".into());
        };
        let subjects = subjects.into_iter().map(|s| s.subject).collect();
        // Schemas that import other subjects' schemas are not followed:
        // each would be another fetch, and a loop of them another attack.
        let parsed = if answer.references.is_empty() {
            Parsed::parse(
                answer.schema_type.as_deref().unwrap_or("AVRO"),
                &answer.schema,
            )
            .map_err(|e| format!("schema {id}: {e}"))
        } else {
            Err(format!(
                "schema {id} references other schemas, which Weir does not follow"
            ))
        };
        Ok(Fetched::Found(Registered {
            id,
            subjects,
            parsed,
        }))
    }
}

/// A body that could not be read: too large (a schema over
/// [`MAX_SCHEMA_BYTES`]) or cut off.
const UNREADABLE: u16 = 0;

/// Status and body (at most [`MAX_SCHEMA_BYTES`]) of an answer; status
/// [`UNREADABLE`] with the reason for a body that could not be read. A
/// transport error names the registry, never the credentials.
fn answer(
    called: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    base: &str,
) -> Result<(u16, String)> {
    let mut response =
        called.map_err(|e| anyhow::anyhow!("the schema registry at {base} is unreachable: {e}"))?;
    let status = response.status().as_u16();
    Ok(
        match response
            .body_mut()
            .with_config()
            .limit(MAX_SCHEMA_BYTES)
            .read_to_string()
        {
            Ok(text) => (status, text),
            Err(e) => (
                UNREADABLE,
                format!("its answer could not be read (at most {MAX_SCHEMA_BYTES} bytes are): {e}"),
            ),
        },
    )
}

fn parse<T: serde::de::DeserializeOwned>(text: &str) -> Result<T> {
    serde_json::from_str(text).context("the schema registry's answer is not what its API says")
}

/// The registry's own words for an error status.
fn reason(status: u16, text: &str) -> String {
    #[derive(Deserialize)]
    struct ErrorAnswer {
        message: String,
    }
    match serde_json::from_str::<ErrorAnswer>(text) {
        Ok(e) => format!("HTTP {status}: {}", weir_abi::truncate(&e.message, 500)),
        Err(_) => format!("HTTP {status}"),
    }
}

/// A subject as one URL path segment.
fn encode_path(subject: &str) -> String {
    subject
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Fetches the ids asked for, one at a time, until the registry client
/// is gone.
fn fetch_loop(http: Http, cache: std::sync::Weak<Mutex<Cache>>, asked: mpsc::Receiver<u32>) {
    while let Ok(id) = asked.recv() {
        let fetched = http.schema(id);
        let Some(cache) = cache.upgrade() else {
            return;
        };
        let mut cache = cache.lock();
        cache.asked.remove(&id);
        match fetched {
            Ok(Fetched::Found(s)) => {
                cache.unreachable = None;
                cache.insert(id, Cached::Found(Arc::new(s)));
            }
            Ok(Fetched::Unusable(why)) => {
                cache.unreachable = None;
                cache.insert(id, Cached::Unusable(why, Instant::now()));
            }
            Err(e) => {
                let why = format!("{e:#}");
                tracing::warn!("fetching schema {id}: {why}");
                cache.unreachable = Some(why);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_are_escaped_as_one_path_segment() {
        assert_eq!(encode_path("orders-value"), "orders-value");
        assert_eq!(encode_path("a/b c"), "a%2Fb%20c");
    }

    #[test]
    fn credentials_are_all_or_nothing_and_never_shown() {
        let config =
            |username: Option<&str>, password: Option<&str>, token: Option<&str>| RegistryConfig {
                url: "https://127.0.0.1:1".into(),
                username: username.map(str::to_owned),
                password: password.map(|p| Secret::Value(p.into())),
                token: token.map(|t| Secret::Value(t.into())),
                ca_file: None,
                timeout_ms: 100,
                cached_schemas: 10,
            };
        assert!(Registry::new(&config(Some("u"), None, None)).is_err());
        assert!(Registry::new(&config(Some("u"), Some("p"), Some("t"))).is_err());
        let registry = Registry::new(&config(Some("u"), Some("hunter2"), None)).unwrap();
        assert!(!format!("{registry:?}").contains("hunter2"));
        let shown = serde_json::to_string(&config(None, None, Some("s3cret"))).unwrap();
        assert!(!shown.contains("s3cret"), "{shown}");
        // Not in the URL, and not in the clear.
        let mut in_url = config(None, None, None);
        in_url.url = "https://u:hunter2@registry:8081".into();
        let e = Registry::new(&in_url).unwrap_err().to_string();
        assert!(
            e.contains("not in the URL") && !e.contains("hunter2"),
            "{e}"
        );
        let mut plain = config(Some("u"), Some("hunter2"), None);
        plain.url = "http://registry:8081".into();
        assert!(
            Registry::new(&plain)
                .unwrap_err()
                .to_string()
                .contains("in the clear")
        );
    }

    #[test]
    fn an_unreachable_registry_makes_callers_wait_and_says_why() {
        // Nothing listens on port 1.
        let registry = Registry::new(&RegistryConfig {
            url: "http://127.0.0.1:1".into(),
            username: None,
            password: None,
            token: None,
            ca_file: None,
            timeout_ms: 500,
            cached_schemas: 10,
        })
        .unwrap();
        assert!(matches!(registry.lookup(7), Lookup::Waiting(None)));
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match registry.lookup(7) {
                Lookup::Waiting(Some(why)) => {
                    assert!(why.contains("unreachable"), "{why}");
                    break;
                }
                Lookup::Waiting(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                other => panic!("{other:?}"),
            }
        }
    }
}
