//! State queries: `GET /v1/deployments/NAME/state` reads a deployment's
//! state by key, prefix or range on every host that owns a partition of it
//! (see [`crate::state_query`] for why every one).
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

use super::{ApiResult, ScopeQuery, err, owned_spec, scope};
use crate::pipeline::Host;
use crate::state_query::{Entry, StateQuery};

const SIGNATURE: &str = "x-weir-peer-signature";
/// How long a signed peer request stays valid (hosts' clocks may differ).
const VALID_MS: u64 = 60_000;
const PEER_TIMEOUT: Duration = Duration::from_secs(5);
/// Bytes of a peer's answer read at most.
const MAX_ANSWER_BYTES: usize = 8 << 20;

pub fn routes() -> Router<Arc<Host>> {
    Router::new().route("/v1/deployments/{name}/state", get(query))
}

/// Requests of other hosts: signed, not authenticated by a token.
pub fn peer_routes() -> Router<Arc<Host>> {
    Router::new().route("/v1/peer/state", get(peer))
}

/// The answer to a state query.
#[derive(Debug, Serialize, Deserialize)]
pub struct Answer {
    /// In key order, then partition (a key may be on several partitions).
    pub entries: Vec<Entry>,
    /// Where the next page starts (`after=`), when this one is full.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_after: Option<String>,
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

/// What one host read.
#[derive(Debug, Serialize, Deserialize)]
struct PeerAnswer {
    host: String,
    partitions: Vec<i32>,
    entries: Vec<Entry>,
}

async fn query(
    State(host): State<Arc<Host>>,
    headers: HeaderMap,
    Query(scope_q): Query<ScopeQuery>,
    Query(q): Query<StateQuery>,
    Path(name): Path<String>,
) -> ApiResult<axum::Json<Answer>> {
    let (scope, registry) = scope(&host, &headers, &scope_q)?;
    let storage = owned_spec(&registry, &scope, &name)?.storage();
    q.check().map_err(|e| err(StatusCode::BAD_REQUEST, format!("{e:#}")))?;
    let local = read_here(&host, &storage, &q).await;
    let me = host.shared().host_id.clone();
    let mut hosts = vec![HostRead { host: me.clone(), partitions: local.as_ref().map(|a| a.partitions.clone()).unwrap_or_default(), error: None }];
    let mut entries = Vec::new();
    match local {
        Ok(a) => entries.extend(a.entries),
        Err(e) => hosts[0].error = Some(e),
    }
    let members = {
        let (h, s) = (host.clone(), storage.clone());
        tokio::task::spawn_blocking(move || h.group_members(&s)).await.map_err(|e| err(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
    };
    match members {
        Err(e) => hosts.push(HostRead { host: "(the consumer group)".into(), partitions: Vec::new(), error: Some(format!("{e:#}")) }),
        Ok(members) => {
            let others =
                members.into_iter().filter(|m| m.host != me && m.partitions.iter().any(|(_, ps)| q.partition.map_or(!ps.is_empty(), |p| ps.contains(&p))));
            let asks = others.map(|m| {
                let (host, storage, q) = (host.clone(), storage.clone(), q.clone());
                async move {
                    let answer = match &m.api_url {
                        Some(url) => ask_peer(&host, url, &storage, &q).await,
                        None => Err("it advertises no API address".to_owned()),
                    };
                    (m, answer)
                }
            });
            for (m, answer) in futures::future::join_all(asks).await {
                match answer {
                    Ok(a) => {
                        hosts.push(HostRead { host: m.host, partitions: a.partitions, error: None });
                        // Entries of partitions the peer does not claim are dropped.
                        entries.extend(a.entries);
                    }
                    Err(e) => hosts.push(HostRead { host: m.host, partitions: Vec::new(), error: Some(e) }),
                }
            }
        }
    }
    let limit = q.limit();
    let full = entries.len() >= limit;
    let entries = crate::state_query::merge(entries, limit);
    let next_after = full.then(|| entries.last().map(|e| if q.hex { hex::encode(e.key_bytes()) } else { e.key.clone() })).flatten();
    Ok(axum::Json(Answer { entries, next_after, hosts }))
}

async fn read_here(host: &Arc<Host>, storage: &str, q: &StateQuery) -> Result<PeerAnswer, String> {
    let (h, s, q) = (host.clone(), storage.to_owned(), q.clone());
    let read = tokio::task::spawn_blocking(move || crate::state_query::read_local(&h.shared().state_readers, &s, &q)).await;
    match read {
        Ok(Ok((entries, partitions))) => Ok(PeerAnswer { host: host.shared().host_id.clone(), partitions, entries }),
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

async fn ask_peer(host: &Arc<Host>, url: &str, storage: &str, q: &StateQuery) -> Result<PeerAnswer, String> {
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err("its advertised API address is not an http(s) URL".into());
    }
    let key = host.tenants.peer_key().ok_or("hosts sign what they ask each other with a key from `[admin]`, which is not configured")?;
    let params = serde_urlencoded::to_string(q).map_err(|e| e.to_string())?;
    let storage_param = serde_urlencoded::to_string([("storage", storage)]).map_err(|e| e.to_string())?;
    let expires = weir_abi::now_ms() + VALID_MS;
    let path = format!("/v1/peer/state?{storage_param}&expires={expires}&{params}");
    let signature = sign(&key, &path);
    let client = reqwest::Client::builder().timeout(PEER_TIMEOUT).redirect(reqwest::redirect::Policy::none()).build().map_err(|e| e.to_string())?;
    let mut resp =
        client.get(format!("{}{path}", url.trim_end_matches('/'))).header(SIGNATURE, signature).send().await.map_err(|e| format!("asking {url}: {e}"))?;
    if !resp.status().is_success() {
        // The body is not shown: the address may not be a Weir host.
        return Err(format!("{url} answered {}", resp.status()));
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| format!("reading {url}: {e}"))? {
        if body.len() + chunk.len() > MAX_ANSWER_BYTES {
            return Err(format!("{url} answered more than {MAX_ANSWER_BYTES} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    let mut answer: PeerAnswer = serde_json::from_slice(&body).map_err(|_| format!("{url} did not answer as a Weir host"))?;
    answer.entries.retain(|e| answer.partitions.contains(&e.partition));
    answer.entries.truncate(q.limit());
    Ok(answer)
}

/// `GET /v1/peer/state?storage=S&expires=T&...`, signed by another host:
/// what this host holds of `S`.
async fn peer(
    State(host): State<Arc<Host>>,
    headers: HeaderMap,
    uri: Uri,
    Query(p): Query<PeerQuery>,
    Query(q): Query<StateQuery>,
) -> ApiResult<axum::Json<PeerAnswer>> {
    let key = host.tenants.peer_key().ok_or_else(|| err(StatusCode::NOT_FOUND, "peer requests need `[admin]` configured"))?;
    let given = headers.get(SIGNATURE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let now = weir_abi::now_ms();
    if !signed(&key, uri.path_and_query().map_or("", |pq| pq.as_str()), given) || p.expires < now || p.expires > now + 2 * VALID_MS {
        return Err(err(StatusCode::UNAUTHORIZED, "not a valid request of another host"));
    }
    q.check().map_err(|e| err(StatusCode::BAD_REQUEST, format!("{e:#}")))?;
    read_here(&host, &p.storage, &q).await.map(axum::Json).map_err(|e| err(StatusCode::INTERNAL_SERVER_ERROR, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_covers_the_whole_request() {
        let key = [7u8; 32];
        let a = sign(&key, "/v1/peer/state?storage=acme.d.1&expires=10&key=x");
        assert!(signed(&key, "/v1/peer/state?storage=acme.d.1&expires=10&key=x", &a));
        assert!(!signed(&key, "/v1/peer/state?storage=acme.d.1&expires=10&key=y", &a));
        assert_eq!(a, sign(&key, "/v1/peer/state?storage=acme.d.1&expires=10&key=x"));
        assert_ne!(a, sign(&key, "/v1/peer/state?storage=evil.d.1&expires=10&key=x"));
        assert_ne!(a, sign(&key, "/v1/peer/state?storage=acme.d.1&expires=11&key=x"));
        assert_ne!(a, sign(&[8u8; 32], "/v1/peer/state?storage=acme.d.1&expires=10&key=x"));
    }
}
