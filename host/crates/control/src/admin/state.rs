//! State queries: `GET /v1/deployments/NAME/state` reads a deployment's
//! state by key, prefix or range on every host that owns a partition of it
//! (see [`weir_pipeline::state_query`] for why every one).
//!
//! The host asked reads its own partitions and asks the others at the API
//! address they advertise in the consumer group. The group is a Kafka
//! fact anyone with access to it could write, so the tenant's token is
//! never forwarded: hosts sign what they ask each other with a key derived
//! from the configured token hashes, valid for a minute, and read back
//! nothing but a bounded answer of the expected shape.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::routing::get;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use tokio::sync::Semaphore;

use super::access::{ApiResult, ScopeQuery, err, owned_spec, scope};
use crate::Control;
use weir_pipeline::state_query::{Entry, Local, StateQuery};

const PEER_PATH: &str = "/v1/peer/state";
const SIGNATURE: &str = "x-weir-peer-signature";
/// How long a signed peer request stays valid (hosts' clocks may differ).
const VALID_MS: u64 = 60_000;
const PEER_TIMEOUT: Duration = Duration::from_secs(5);
/// Bytes of a peer's answer read at most.
const MAX_ANSWER_BYTES: usize = 8 << 20;

pub fn routes() -> Router<Arc<Control>> {
    Router::new().route("/v1/deployments/{name}/state", get(query))
}

/// Requests of other hosts: signed, not authenticated by a token.
pub fn peer_routes() -> Router<Arc<Control>> {
    Router::new().route(PEER_PATH, get(peer))
}

/// State queries a host serves at once (each reads up to
/// [`weir_pipeline::state_query::MAX_BYTES`] here and asks every other owner), and
/// peers' requests it answers at once.
static QUERIES: Semaphore = Semaphore::const_new(4);
static PEER_READS: Semaphore = Semaphore::const_new(8);

/// The answer to a state query.
#[derive(Debug, Serialize, Deserialize)]
pub struct Answer {
    /// In key order, then partition (a key may be on several partitions).
    pub entries: Vec<Entry>,
    /// Where the next page starts (`after=`), when there is more: text, or
    /// hex with `hex=true`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_after: Option<String>,
    /// The same in hex, when the key is not text and the query was not in
    /// hex (ask again with `hex=true` and the query's keys in hex).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_after_hex: Option<String>,
    /// Who answered for which partitions, and who could not.
    pub hosts: Vec<HostRead>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct HostRead {
    pub host: String,
    pub partitions: Vec<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

async fn query(
    State(control): State<Arc<Control>>,
    headers: HeaderMap,
    Query(scope_q): Query<ScopeQuery>,
    Query(q): Query<StateQuery>,
    Path(name): Path<String>,
) -> ApiResult<axum::Json<Answer>> {
    let (scope, registry) = scope(&control, &headers, &scope_q)?;
    let storage = owned_spec(&registry, &scope, &name)?.storage();
    q.check()
        .map_err(|e| err(StatusCode::BAD_REQUEST, format!("{e:#}")))?;
    let Ok(_permit) = QUERIES.try_acquire() else {
        return Err(err(
            StatusCode::TOO_MANY_REQUESTS,
            "this host is answering other state queries; try again in a moment",
        ));
    };
    let me = control.host.shared().host_id.clone();
    let (mut entries, mut cuts, mut hosts) = (Vec::new(), Vec::new(), Vec::new());
    let mut take = |host: String, answer: Result<Local, String>| match answer {
        Ok(a) => {
            cuts.extend(a.cut_hex.and_then(|c| hex::decode(c).ok()));
            entries.extend(a.entries);
            hosts.push(HostRead {
                host,
                partitions: a.partitions,
                error: None,
            });
        }
        Err(e) => hosts.push(HostRead {
            host,
            partitions: Vec::new(),
            error: Some(e),
        }),
    };
    take(me.clone(), read_here(&control, &storage, &q).await);
    let members = {
        let (h, s) = (control.clone(), storage.clone());
        tokio::task::spawn_blocking(move || h.host.group_members(&s))
            .await
            .map_err(|e| err(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
    };
    match members {
        Err(e) => take("(the consumer group)".into(), Err(format!("{e:#}"))),
        Ok(members) => {
            let asks = members
                .into_iter()
                .filter(|m| m.host != me)
                .filter_map(|m| {
                    // What the group assigned it (and the query asks for): the
                    // member's address is a fact anyone in the group could write,
                    // so its answer counts for these partitions only.
                    let mut assigned: Vec<i32> = m
                        .partitions
                        .iter()
                        .flat_map(|(_, ps)| ps.iter().copied())
                        .filter(|p| q.partition.is_none_or(|q| q == *p))
                        .collect();
                    assigned.sort_unstable();
                    assigned.dedup();
                    (!assigned.is_empty()).then(|| {
                        let (control, storage, q) = (control.clone(), storage.clone(), q.clone());
                        async move {
                            let answer = match &m.api_url {
                                Some(url) => ask_peer(&control, url, &storage, &q).await,
                                None => Err("it advertises no API address".to_owned()),
                            };
                            let answer = answer.map(|mut a| {
                                a.partitions.retain(|p| assigned.contains(p));
                                a.entries.retain(|e| a.partitions.contains(&e.partition));
                                a
                            });
                            (m.host, answer)
                        }
                    })
                });
            for (member, answer) in futures::future::join_all(asks).await {
                take(member, answer);
            }
        }
    }
    let (entries, cut) = weir_pipeline::state_query::page(entries, cuts, q.limit());
    let (mut next_after, mut next_after_hex) = (None, None);
    match cut {
        Some(c) if q.hex => next_after = Some(hex::encode(c)),
        Some(c) => match String::from_utf8(c) {
            Ok(text) => next_after = Some(text),
            Err(e) => next_after_hex = Some(hex::encode(e.as_bytes())),
        },
        None => {}
    }
    Ok(axum::Json(Answer {
        entries,
        next_after,
        next_after_hex,
        hosts,
    }))
}

async fn read_here(control: &Arc<Control>, storage: &str, q: &StateQuery) -> Result<Local, String> {
    let (h, s, q) = (control.clone(), storage.to_owned(), q.clone());
    let read = tokio::task::spawn_blocking(move || {
        weir_pipeline::state_query::read_local(&h.host.shared().state_readers, &s, &q)
    })
    .await;
    match read {
        Ok(Ok(local)) => Ok(local),
        Ok(Err(e)) => Err(format!("{e:#}")),
        Err(e) => Err(e.to_string()),
    }
}

#[derive(Deserialize)]
struct PeerQuery {
    storage: String,
    expires: u64,
}

fn mac(key: &[u8; 32], path_and_query: &str) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
    mac.update(path_and_query.as_bytes());
    mac
}

fn sign(key: &[u8; 32], path_and_query: &str) -> String {
    hex::encode(mac(key, path_and_query).finalize().into_bytes())
}

/// Checks a signature in constant time.
fn signed(key: &[u8; 32], path_and_query: &str, signature: &str) -> bool {
    hex::decode(signature).is_ok_and(|s| mac(key, path_and_query).verify_slice(&s).is_ok())
}

/// The URL of `path` at a host's advertised API address: an http(s)
/// origin, nothing else (no user, path, query or fragment to smuggle
/// another request through).
fn peer_url(advertised: &str, path: &str, query: &str) -> Result<reqwest::Url, String> {
    let mut url = reqwest::Url::parse(advertised)
        .map_err(|e| format!("its advertised API address is not a URL: {e}"))?;
    let origin_only = url.username().is_empty()
        && url.password().is_none()
        && matches!(url.path(), "" | "/")
        && url.query().is_none()
        && url.fragment().is_none();
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() || !origin_only {
        return Err("its advertised API address is not an http(s) origin".into());
    }
    url.set_path(path);
    url.set_query(Some(query));
    Ok(url)
}

fn peer_client() -> &'static reqwest::Client {
    static CLIENT: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
    CLIENT.get_or_init(|| {
        reqwest::Client::builder()
            .timeout(PEER_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("a client with no TLS or proxy settings")
    })
}

async fn ask_peer(
    control: &Arc<Control>,
    advertised: &str,
    storage: &str,
    q: &StateQuery,
) -> Result<Local, String> {
    let key = control.tenants.peer_key().ok_or(
        "hosts sign what they ask each other with a key from `[admin]`, which is not configured",
    )?;
    let params = serde_urlencoded::to_string(q).map_err(|e| e.to_string())?;
    let storage_param =
        serde_urlencoded::to_string([("storage", storage)]).map_err(|e| e.to_string())?;
    let expires = weir_abi::now_ms() + VALID_MS;
    let query = format!("{storage_param}&expires={expires}&{params}");
    let url = peer_url(advertised, PEER_PATH, &query)?;
    let signature = sign(&key, &format!("{PEER_PATH}?{query}"));
    let mut resp = peer_client()
        .get(url)
        .header(SIGNATURE, signature)
        .send()
        .await
        .map_err(|e| format!("asking {advertised}: {e}"))?;
    if !resp.status().is_success() {
        // The body is not shown: the address may not be a Weir host.
        return Err(format!("{advertised} answered {}", resp.status()));
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| format!("reading {advertised}: {e}"))?
    {
        if body.len() + chunk.len() > MAX_ANSWER_BYTES {
            return Err(format!(
                "{advertised} answered more than {MAX_ANSWER_BYTES} bytes"
            ));
        }
        body.extend_from_slice(&chunk);
    }
    serde_json::from_slice(&body).map_err(|_| format!("{advertised} did not answer as a Weir host"))
}

/// `GET /v1/peer/state?storage=S&expires=T&...`, signed by another host:
/// what this host holds of `S`.
async fn peer(
    State(control): State<Arc<Control>>,
    headers: HeaderMap,
    uri: Uri,
    Query(p): Query<PeerQuery>,
    Query(q): Query<StateQuery>,
) -> ApiResult<axum::Json<Local>> {
    let key = control.tenants.peer_key().ok_or_else(|| {
        err(
            StatusCode::NOT_FOUND,
            "peer requests need `[admin]` configured",
        )
    })?;
    let given = headers
        .get(SIGNATURE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let now = weir_abi::now_ms();
    if !signed(
        &key,
        uri.path_and_query().map_or("", |pq| pq.as_str()),
        given,
    ) || p.expires < now
        || p.expires > now + 2 * VALID_MS
    {
        return Err(err(
            StatusCode::UNAUTHORIZED,
            "not a valid request of another host",
        ));
    }
    q.check()
        .map_err(|e| err(StatusCode::BAD_REQUEST, format!("{e:#}")))?;
    let Ok(_permit) = PEER_READS.try_acquire() else {
        return Err(err(
            StatusCode::TOO_MANY_REQUESTS,
            "this host is answering other state queries",
        ));
    };
    read_here(&control, &p.storage, &q)
        .await
        .map(axum::Json)
        .map_err(|e| err(StatusCode::INTERNAL_SERVER_ERROR, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_covers_the_whole_request() {
        let key = [7u8; 32];
        let a = sign(&key, "/v1/peer/state?storage=acme.d.1&expires=10&key=x");
        assert!(signed(
            &key,
            "/v1/peer/state?storage=acme.d.1&expires=10&key=x",
            &a
        ));
        assert!(!signed(
            &key,
            "/v1/peer/state?storage=acme.d.1&expires=10&key=y",
            &a
        ));
        assert_eq!(
            a,
            sign(&key, "/v1/peer/state?storage=acme.d.1&expires=10&key=x")
        );
        assert_ne!(
            a,
            sign(&key, "/v1/peer/state?storage=evil.d.1&expires=10&key=x")
        );
        assert_ne!(
            a,
            sign(&key, "/v1/peer/state?storage=acme.d.1&expires=11&key=x")
        );
        assert_ne!(
            a,
            sign(
                &[8u8; 32],
                "/v1/peer/state?storage=acme.d.1&expires=10&key=x"
            )
        );
    }

    #[test]
    fn a_peer_is_asked_at_its_origin_only() {
        let url = peer_url("http://10.0.0.2:8080/", PEER_PATH, "storage=a&key=b").unwrap();
        assert_eq!(
            url.as_str(),
            "http://10.0.0.2:8080/v1/peer/state?storage=a&key=b"
        );
        for bad in [
            "file:///etc/passwd",
            "http://u:p@h/",
            "http://h/admin?x=",
            "http://h/#f",
            "http://h/v1/",
            "gopher://h/",
            "not a url",
        ] {
            assert!(peer_url(bad, PEER_PATH, "q").is_err(), "{bad}");
        }
    }
}
