//! An OpenID Connect provider on loopback for OAUTHBEARER: a token
//! endpoint that grants the client credentials grant to one client, and
//! the JWKS the broker checks tokens with (Kafka's own
//! `OAuthBearerValidatorCallbackHandler`). Tokens are RS256 JWTs signed by
//! a key it makes; it keeps every token it issued, so tests can look for
//! them where they must not be. Client `rogue` (same secret) gets tokens
//! signed by a key the JWKS does not hold, which the broker must refuse.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use openssl::sign::Signer;

pub struct Oidc {
    /// Where clients ask for tokens (`POST`, client credentials).
    pub token_endpoint: String,
    /// The keys that sign tokens, as a JSON Web Key Set.
    pub jwks_endpoint: String,
    pub client_id: String,
    pub client_secret: String,
    /// The `sub` of every token: the broker's principal is `User:<subject>`.
    pub subject: String,
    /// The `aud` of every token.
    pub audience: String,
    issued: Arc<Mutex<Vec<String>>>,
}

/// What the server thread needs.
struct Provider {
    key: PKey<Private>,
    rogue_key: PKey<Private>,
    client_id: String,
    client_secret: String,
    subject: String,
    audience: String,
    issued: Arc<Mutex<Vec<String>>>,
}

const KEY_ID: &str = "weir-test-key";

impl Oidc {
    /// Starts the provider on a thread that serves as long as the test
    /// binary runs.
    pub fn start(subject: &str, audience: &str) -> Oidc {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let issued = Arc::new(Mutex::new(Vec::new()));
        let client_secret = format!("oidc-{}-{}", std::process::id(), crate::kafka::now_ms());
        let provider = Arc::new(Provider {
            key: PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap(),
            rogue_key: PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap(),
            client_id: "weir".into(),
            client_secret: client_secret.clone(),
            subject: subject.into(),
            audience: audience.into(),
            issued: issued.clone(),
        });
        std::thread::Builder::new()
            .name("oidc-provider".into())
            .spawn(move || {
                for stream in listener.incoming().flatten() {
                    let provider = provider.clone();
                    std::thread::spawn(move || {
                        let _ = provider.serve(stream);
                    });
                }
            })
            .unwrap();
        Oidc {
            token_endpoint: format!("{base}/token"),
            jwks_endpoint: format!("{base}/jwks"),
            client_id: "weir".into(),
            client_secret,
            subject: subject.into(),
            audience: audience.into(),
            issued,
        }
    }

    /// Every access token issued so far.
    pub fn issued(&self) -> Vec<String> {
        self.issued.lock().unwrap().clone()
    }
}

fn b64url(bytes: &[u8]) -> String {
    openssl::base64::encode_block(bytes)
        .trim_end_matches('=')
        .replace('+', "-")
        .replace('/', "_")
}

impl Provider {
    /// Answers one request on `stream`.
    fn serve(&self, stream: TcpStream) -> std::io::Result<()> {
        let mut reader = BufReader::new(stream.try_clone()?);
        let mut request_line = String::new();
        reader.read_line(&mut request_line)?;
        let (mut length, mut authorization) = (0usize, String::new());
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line)? == 0 || line == "\r\n" {
                break;
            }
            let (name, value) = line.split_once(':').unwrap_or((&line, ""));
            match name.trim().to_ascii_lowercase().as_str() {
                "content-length" => length = value.trim().parse().unwrap_or(0),
                "authorization" => authorization = value.trim().to_owned(),
                _ => {}
            }
        }
        let mut body = vec![0; length.min(64 << 10)];
        reader.read_exact(&mut body)?;
        let body = String::from_utf8_lossy(&body);
        let mut words = request_line.split_whitespace();
        let (status, answer) = match (words.next(), words.next()) {
            (Some("GET"), Some("/jwks")) => ("200 OK", self.jwks()),
            (Some("POST"), Some("/token")) => self.token(&authorization, &body),
            _ => ("404 Not Found", r#"{"error":"not_found"}"#.to_owned()),
        };
        let mut stream = stream;
        write!(
            stream,
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
            answer.len()
        )?;
        stream.flush()
    }

    fn jwks(&self) -> String {
        let rsa = self.key.rsa().unwrap();
        serde_json::json!({ "keys": [{
            "kty": "RSA", "use": "sig", "alg": "RS256", "kid": KEY_ID,
            "n": b64url(&rsa.n().to_vec()), "e": b64url(&rsa.e().to_vec()),
        }] })
        .to_string()
    }

    /// The client credentials grant, the client authenticated by HTTP
    /// Basic (as librdkafka does) or by the form's fields.
    fn token(&self, authorization: &str, form: &str) -> (&'static str, String) {
        let field = |name: &str| {
            form.split('&')
                .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
                .unwrap_or_default()
                .to_owned()
        };
        let basic = authorization
            .strip_prefix("Basic ")
            .and_then(|b| openssl::base64::decode_block(b).ok())
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        let (id, secret) = basic
            .split_once(':')
            .map(|(i, s)| (i.to_owned(), s.to_owned()))
            .unwrap_or_else(|| (field("client_id"), field("client_secret")));
        let key = if id == "rogue" {
            &self.rogue_key
        } else {
            &self.key
        };
        if field("grant_type") != "client_credentials"
            || (id != self.client_id && id != "rogue")
            || secret != self.client_secret
        {
            return (
                "401 Unauthorized",
                r#"{"error":"invalid_client"}"#.to_owned(),
            );
        }
        let now = crate::kafka::now_ms() / 1000;
        let header = serde_json::json!({ "alg": "RS256", "typ": "JWT", "kid": KEY_ID });
        let claims = serde_json::json!({
            "sub": self.subject, "aud": self.audience, "iss": "weir-test-oidc",
            "iat": now, "nbf": now, "exp": now + 3600, "scope": "kafka",
        });
        let signed = format!(
            "{}.{}",
            b64url(header.to_string().as_bytes()),
            b64url(claims.to_string().as_bytes())
        );
        let mut signer = Signer::new(MessageDigest::sha256(), key).unwrap();
        signer.update(signed.as_bytes()).unwrap();
        let token = format!("{signed}.{}", b64url(&signer.sign_to_vec().unwrap()));
        self.issued.lock().unwrap().push(token.clone());
        ("200 OK", serde_json::json!({ "access_token": token, "token_type": "Bearer", "expires_in": 3600 }).to_string())
    }
}
