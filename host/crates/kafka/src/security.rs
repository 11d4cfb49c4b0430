//! How every client Weir makes proves who it is to the cluster and checks
//! the cluster is who it says: the `[kafka.security]` table, turned into
//! librdkafka's settings once, when the configuration is read. Secrets come
//! from a file private to the user, an environment variable, or the file
//! itself; they are never shown (`Debug` and `Serialize` print where they
//! come from, or `<redacted>`).
//!
//! (Over 400 lines: every security mode and the checks that refuse a bad one at start-up, in one
//! place.)

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize, Serializer};

/// `[kafka.security]`: TLS (server verification, mutual TLS) and SASL.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Security {
    /// `PLAINTEXT`, `SSL`, `SASL_PLAINTEXT` or `SASL_SSL`; default: SASL_SSL
    /// with a `mechanism`, SSL with TLS settings, else librdkafka's
    /// (`kafka.properties` may still set it).
    pub protocol: Option<String>,
    /// PEM bundle of the CAs that sign the brokers' certificates (default:
    /// the system's). Broker host names are always checked.
    pub ca_file: Option<PathBuf>,
    /// Mutual TLS with PEM files: the client's certificate and its key.
    pub certificate_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub key_password: Option<Secret>,
    /// Mutual TLS with a PKCS#12 keystore instead.
    pub keystore_file: Option<PathBuf>,
    pub keystore_password: Option<Secret>,
    /// SASL: `PLAIN`, `SCRAM-SHA-256`, `SCRAM-SHA-512`, `OAUTHBEARER` or
    /// `GSSAPI`.
    pub mechanism: Option<String>,
    /// PLAIN and SCRAM.
    pub username: Option<String>,
    pub password: Option<Secret>,
    /// OAUTHBEARER with OIDC client credentials: librdkafka fetches and
    /// refreshes the tokens.
    pub oauth: Option<OAuth>,
    /// GSSAPI (Kerberos).
    pub kerberos: Option<Kerberos>,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OAuth {
    pub token_endpoint: String,
    pub client_id: String,
    pub client_secret: Secret,
    pub scope: Option<String>,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Kerberos {
    /// The brokers' Kerberos service name (default `kafka`).
    #[serde(default = "kafka_service")]
    pub service_name: String,
    pub principal: String,
    pub keytab: PathBuf,
}

fn kafka_service() -> String {
    "kafka".into()
}

/// A secret, written `{ file = "/run/secrets/x" }` (a file no one but its
/// owner may read), `{ env = "VAR" }`, or as the value itself.
#[derive(Clone, Deserialize)]
#[serde(untagged, deny_unknown_fields)]
pub enum Secret {
    File { file: PathBuf },
    Env { env: String },
    Value(String),
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Secret::File { file } => write!(f, "{{ file = {file:?} }}"),
            Secret::Env { env } => write!(f, "{{ env = {env:?} }}"),
            Secret::Value(_) => f.write_str(REDACTED),
        }
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Secret::File { file } => s.collect_map([("file", file.display().to_string())]),
            Secret::Env { env } => s.collect_map([("env", env.clone())]),
            Secret::Value(_) => s.serialize_str(REDACTED),
        }
    }
}

pub const REDACTED: &str = "<redacted>";

impl Secret {
    /// The secret's value; `what` names the setting in errors.
    pub fn read(&self, what: &str) -> Result<String> {
        let value = match self {
            Secret::Value(v) => v.clone(),
            Secret::Env { env } => std::env::var(env)
                .with_context(|| format!("{what}: environment variable `{env}` is not set"))?,
            Secret::File { file } => {
                check_private(file).with_context(|| what.to_owned())?;
                let text = std::fs::read_to_string(file)
                    .with_context(|| format!("{what}: reading {}", file.display()))?;
                // A trailing newline is the editor's, not the secret's.
                text.strip_suffix('\n')
                    .map(|t| t.strip_suffix('\r').unwrap_or(t))
                    .unwrap_or(&text)
                    .to_owned()
            }
        };
        // C libraries take it as a C string: OpenSSL's bindings would
        // panic on a NUL, printing the secret's bytes.
        if value.contains('\0') {
            bail!("{what}: the secret holds a NUL byte, which no Kafka client can send");
        }
        Ok(value)
    }
}

/// Refuses a secret file others may read (or write).
fn check_private(file: &Path) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(file).with_context(|| format!("reading {}", file.display()))?;
    if meta.mode() & 0o077 != 0 {
        bail!(
            "{} may be read by others (mode {:o}): make it private to its owner (chmod 600)",
            file.display(),
            meta.mode() & 0o777
        );
    }
    Ok(())
}

const MECHANISMS: [&str; 5] = [
    "PLAIN",
    "SCRAM-SHA-256",
    "SCRAM-SHA-512",
    "OAUTHBEARER",
    "GSSAPI",
];
const PROTOCOLS: [&str; 4] = ["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"];

impl Security {
    /// librdkafka's settings for this table, secrets read.
    pub fn settings(&self) -> Result<Vec<(&'static str, String)>> {
        let mut out: Vec<(&'static str, String)> = Vec::new();
        let tls = self.ca_file.is_some()
            || self.certificate_file.is_some()
            || self.keystore_file.is_some();
        let protocol = match (&self.protocol, &self.mechanism) {
            (Some(p), _) => {
                let p = p.to_ascii_uppercase();
                if !PROTOCOLS.contains(&p.as_str()) {
                    bail!(
                        "kafka.security.protocol: `{p}` is none of {}",
                        PROTOCOLS.join(", ")
                    );
                }
                Some(p)
            }
            (None, Some(_)) => Some("SASL_SSL".to_owned()),
            (None, None) => tls.then(|| "SSL".to_owned()),
        };
        let Some(protocol) = protocol else {
            return Ok(out);
        };
        if tls && !protocol.ends_with("SSL") {
            bail!(
                "kafka.security: TLS files are set but `protocol` is {protocol}, which does not use TLS"
            );
        }
        if protocol.ends_with("SSL") {
            out.push(("ssl.endpoint.identification.algorithm", "https".into()));
        }
        out.push(("security.protocol", protocol.clone()));
        let file = |what: &str, p: &PathBuf| -> Result<String> {
            std::fs::metadata(p)
                .with_context(|| format!("kafka.security.{what}: {}", p.display()))?;
            Ok(p.display().to_string())
        };
        if let Some(ca) = &self.ca_file {
            out.push(("ssl.ca.location", file("ca_file", ca)?));
            tls_files::ca(ca)?;
        }
        match (&self.certificate_file, &self.key_file, &self.keystore_file) {
            (Some(cert), Some(key), None) => {
                out.push(("ssl.certificate.location", file("certificate_file", cert)?));
                check_private(key).context("kafka.security.key_file")?;
                out.push(("ssl.key.location", file("key_file", key)?));
                let password = self
                    .key_password
                    .as_ref()
                    .map(|p| p.read("kafka.security.key_password"))
                    .transpose()?;
                tls_files::pem_pair(cert, key, password.as_deref())?;
                if let Some(p) = password {
                    out.push(("ssl.key.password", p));
                }
            }
            (None, None, Some(store)) => {
                check_private(store).context("kafka.security.keystore_file")?;
                out.push(("ssl.keystore.location", file("keystore_file", store)?));
                let password = self
                    .keystore_password
                    .as_ref()
                    .map(|p| p.read("kafka.security.keystore_password"))
                    .transpose()?;
                tls_files::keystore(store, password.as_deref())?;
                if let Some(p) = password {
                    out.push(("ssl.keystore.password", p));
                }
            }
            (None, None, None) => {}
            _ => bail!(
                "kafka.security: mutual TLS takes `certificate_file` and `key_file` (PEM), or `keystore_file` (PKCS#12), not a mix"
            ),
        }
        let Some(mechanism) = &self.mechanism else {
            if protocol.starts_with("SASL") {
                bail!(
                    "kafka.security: protocol {protocol} needs a `mechanism` ({})",
                    MECHANISMS.join(", ")
                );
            }
            return Ok(out);
        };
        let mechanism = mechanism.to_ascii_uppercase();
        if !protocol.starts_with("SASL") {
            bail!(
                "kafka.security: a SASL `mechanism` needs protocol SASL_SSL (or SASL_PLAINTEXT), not {protocol}"
            );
        }
        out.push(("sasl.mechanism", mechanism.clone()));
        match mechanism.as_str() {
            "PLAIN" | "SCRAM-SHA-256" | "SCRAM-SHA-512" => {
                let (Some(user), Some(password)) = (&self.username, &self.password) else {
                    bail!("kafka.security: mechanism {mechanism} needs `username` and `password`")
                };
                out.push(("sasl.username", user.clone()));
                out.push(("sasl.password", password.read("kafka.security.password")?));
            }
            "OAUTHBEARER" => {
                let Some(o) = &self.oauth else {
                    bail!("kafka.security: mechanism OAUTHBEARER needs an `oauth` table")
                };
                out.push(("sasl.oauthbearer.method", "oidc".into()));
                out.push((
                    "sasl.oauthbearer.token.endpoint.url",
                    o.token_endpoint.clone(),
                ));
                out.push(("sasl.oauthbearer.client.id", o.client_id.clone()));
                out.push((
                    "sasl.oauthbearer.client.secret",
                    o.client_secret.read("kafka.security.oauth.client_secret")?,
                ));
                if let Some(scope) = &o.scope {
                    out.push(("sasl.oauthbearer.scope", scope.clone()));
                }
            }
            "GSSAPI" => {
                let Some(k) = &self.kerberos else {
                    bail!("kafka.security: mechanism GSSAPI needs a `kerberos` table")
                };
                out.push(("sasl.kerberos.service.name", k.service_name.clone()));
                out.push(("sasl.kerberos.principal", k.principal.clone()));
                check_private(&k.keytab).context("kafka.security.kerberos.keytab")?;
                out.push(("sasl.kerberos.keytab", file("kerberos.keytab", &k.keytab)?));
            }
            m => bail!(
                "kafka.security.mechanism: `{m}` is none of {}",
                MECHANISMS.join(", ")
            ),
        }
        Ok(out)
    }
}

/// Reads the TLS files as librdkafka will, so that a file it could not
/// use (not a certificate, a key that is not the certificate's, a wrong
/// password, a certificate expired or not yet valid) is refused at
/// start-up naming its setting, not as a handshake the broker drops.
mod tls_files {
    use std::path::Path;

    use anyhow::{Context, Result, bail};
    use openssl::asn1::Asn1Time;
    use openssl::nid::Nid;
    use openssl::pkey::{PKey, Private};
    use openssl::x509::X509;

    fn read(what: &str, path: &Path) -> Result<Vec<u8>> {
        std::fs::read(path)
            .with_context(|| format!("kafka.security.{what}: reading {}", path.display()))
    }

    fn name(cert: &X509) -> String {
        let cn = cert
            .subject_name()
            .entries_by_nid(Nid::COMMONNAME)
            .next()
            .and_then(|e| e.data().to_string().ok());
        cn.unwrap_or_else(|| "(no common name)".to_owned())
    }

    /// Whether `cert` is valid now, and if not why.
    fn invalid_now(cert: &X509) -> Result<Option<String>> {
        let now = Asn1Time::days_from_now(0)?;
        Ok(if cert.not_after().compare(&now)?.is_lt() {
            Some(format!("expired on {}", cert.not_after()))
        } else if cert.not_before().compare(&now)?.is_gt() {
            Some(format!("is not valid before {}", cert.not_before()))
        } else {
            None
        })
    }

    fn check_valid(what: &str, path: &Path, cert: &X509) -> Result<()> {
        if let Some(why) = invalid_now(cert)? {
            bail!(
                "kafka.security.{what}: the certificate `{}` in {} {why}",
                name(cert),
                path.display()
            );
        }
        Ok(())
    }

    /// A bundle of CAs: at least one certificate, and one valid now.
    pub fn ca(path: &Path) -> Result<()> {
        // A directory of CAs (`openssl rehash`) is librdkafka's to read.
        if path.is_dir() {
            return Ok(());
        }
        let certs = X509::stack_from_pem(&read("ca_file", path)?)
            .ok()
            .unwrap_or_default();
        let Some(first) = certs.first() else {
            bail!(
                "kafka.security.ca_file: {} holds no PEM certificate",
                path.display()
            )
        };
        if certs.len() == 1 {
            return check_valid("ca_file", path, first);
        }
        if certs
            .iter()
            .all(|c| invalid_now(c).ok().flatten().is_some())
        {
            bail!(
                "kafka.security.ca_file: no certificate in {} is valid now",
                path.display()
            );
        }
        Ok(())
    }

    /// A client certificate (the first of the file, its chain may follow)
    /// and its key.
    pub fn pem_pair(cert_path: &Path, key_path: &Path, key_password: Option<&str>) -> Result<()> {
        let certs = X509::stack_from_pem(&read("certificate_file", cert_path)?)
            .ok()
            .unwrap_or_default();
        let Some(cert) = certs.first() else {
            bail!(
                "kafka.security.certificate_file: {} holds no PEM certificate",
                cert_path.display()
            )
        };
        check_valid("certificate_file", cert_path, cert)?;
        let pem = read("key_file", key_path)?;
        let key: PKey<Private> = match key_password {
            Some(p) => PKey::private_key_from_pem_passphrase(&pem, p.as_bytes()),
            // Not `private_key_from_pem`: for an encrypted key, OpenSSL
            // would ask for the password on the terminal.
            None => PKey::private_key_from_pem_callback(&pem, |_| Ok(0)),
        }
        .map_err(|_| {
            let hint = if key_password.is_some() {
                "is key_password right?"
            } else {
                "an encrypted key needs key_password"
            };
            anyhow::anyhow!(
                "kafka.security.key_file: {} holds no PEM private key Weir can read ({hint})",
                key_path.display()
            )
        })?;
        if !cert.public_key()?.public_eq(&key) {
            bail!(
                "kafka.security.key_file: {} is not the key of the certificate `{}` in {}",
                key_path.display(),
                name(cert),
                cert_path.display()
            );
        }
        Ok(())
    }

    /// A PKCS#12 keystore holding a key and its certificate.
    pub fn keystore(path: &Path, password: Option<&str>) -> Result<()> {
        let store =
            openssl::pkcs12::Pkcs12::from_der(&read("keystore_file", path)?).map_err(|_| {
                anyhow::anyhow!(
                    "kafka.security.keystore_file: {} is not a PKCS#12 keystore",
                    path.display()
                )
            })?;
        let parsed = store.parse2(password.unwrap_or("")).map_err(|_| {
            anyhow::anyhow!(
                "kafka.security.keystore_password does not open the keystore {} (or it is encrypted with an algorithm OpenSSL 3 offers only in its legacy provider: convert it to AES)",
                path.display()
            )
        })?;
        let (Some(cert), Some(_)) = (parsed.cert, parsed.pkey) else {
            bail!(
                "kafka.security.keystore_file: {} holds no private key with its certificate",
                path.display()
            )
        };
        check_valid("keystore_file", path, &cert)
    }
}

/// Whether a librdkafka setting holds a secret (so its value is never
/// shown, whether it came from `[kafka.security]` or `kafka.properties`).
pub fn is_secret(name: &str) -> bool {
    ["password", "secret", "jaas", ".pem", "token"]
        .iter()
        .any(|s| name.contains(s))
        && !name.ends_with(".location")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn private_file(dir: &Path, text: &str, mode: u32) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let p = dir.join(format!("secret-{mode:o}"));
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        p
    }

    #[test]
    fn scram_over_tls_with_a_password_file() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, certificate("ca", -1, 30).0.to_pem().unwrap()).unwrap();
        let password = private_file(dir.path(), "s3cret\n", 0o600);
        let s = Security {
            ca_file: Some(ca.clone()),
            mechanism: Some("scram-sha-512".into()),
            username: Some("weir".into()),
            password: Some(Secret::File { file: password }),
            ..Security::default()
        };
        let settings = s.settings().unwrap();
        let get = |k: &str| {
            settings
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("security.protocol"), Some("SASL_SSL"));
        assert_eq!(get("sasl.mechanism"), Some("SCRAM-SHA-512"));
        assert_eq!(
            get("sasl.password"),
            Some("s3cret"),
            "the file's newline is not the secret's"
        );
        assert_eq!(get("ssl.endpoint.identification.algorithm"), Some("https"));
        assert_eq!(get("ssl.ca.location"), ca.to_str());
        assert!(!format!("{s:?}").contains("s3cret"));
    }

    #[test]
    fn secrets_others_may_read_are_refused_and_values_are_never_shown() {
        let dir = tempfile::tempdir().unwrap();
        let open = private_file(dir.path(), "s3cret", 0o644);
        let s = Security {
            mechanism: Some("PLAIN".into()),
            username: Some("u".into()),
            password: Some(Secret::File { file: open }),
            ..Security::default()
        };
        let e = format!("{:#}", s.settings().unwrap_err());
        assert!(
            e.contains("kafka.security.password") && e.contains("chmod 600"),
            "{e}"
        );
        let nul = Security {
            password: Some(Secret::Value("s3c\0ret".into())),
            ..s.clone()
        };
        let e = format!("{:#}", nul.settings().unwrap_err());
        assert!(e.contains("NUL") && !e.contains("s3c"), "{e}");
        let inline = Security {
            password: Some(Secret::Value("s3cret".into())),
            ..s
        };
        assert!(!format!("{inline:?}").contains("s3cret"));
        assert!(!serde_json::to_string(&inline).unwrap().contains("s3cret"));
        let plain = Security {
            protocol: Some("SSL".into()),
            ..inline
        };
        assert!(
            plain
                .settings()
                .unwrap_err()
                .to_string()
                .contains("needs protocol SASL_SSL")
        );
    }

    /// A self-signed certificate `cn` valid from `from` to `to` days from
    /// now, and its key.
    fn certificate(
        cn: &str,
        from: i64,
        to: i64,
    ) -> (
        openssl::x509::X509,
        openssl::pkey::PKey<openssl::pkey::Private>,
    ) {
        use openssl::{
            asn1::Asn1Time, ec::EcGroup, ec::EcKey, hash::MessageDigest, nid::Nid, pkey::PKey, x509,
        };
        let key = PKey::from_ec_key(
            EcKey::generate(&EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap()).unwrap(),
        )
        .unwrap();
        let mut name = x509::X509NameBuilder::new().unwrap();
        name.append_entry_by_nid(Nid::COMMONNAME, cn).unwrap();
        let name = name.build();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let mut b = x509::X509Builder::new().unwrap();
        b.set_version(2).unwrap();
        b.set_subject_name(&name).unwrap();
        b.set_issuer_name(&name).unwrap();
        b.set_pubkey(&key).unwrap();
        b.set_not_before(&Asn1Time::from_unix(now + from * 86_400).unwrap())
            .unwrap();
        b.set_not_after(&Asn1Time::from_unix(now + to * 86_400).unwrap())
            .unwrap();
        b.sign(&key, MessageDigest::sha256()).unwrap();
        (b.build(), key)
    }

    #[test]
    fn tls_files_are_read_at_start_up_and_what_cannot_serve_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let write = |name: &str, bytes: &[u8]| {
            use std::os::unix::fs::PermissionsExt;
            let p = d.join(name);
            std::fs::write(&p, bytes).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
            p
        };
        let (good, key) = certificate("weir", -1, 30);
        let (expired, old_key) = certificate("old", -10, -1);
        let (later, _) = certificate("later", 2, 30);
        let (_, other_key) = certificate("other", -1, 30);
        let cipher = openssl::symm::Cipher::aes_256_cbc();
        let (good_pem, key_pem) = (
            write("good.pem", &good.to_pem().unwrap()),
            write(
                "key.pem",
                &key.private_key_to_pem_pkcs8_passphrase(cipher, b"s3cret")
                    .unwrap(),
            ),
        );
        let (expired_pem, later_pem) = (
            write("expired.pem", &expired.to_pem().unwrap()),
            write("later.pem", &later.to_pem().unwrap()),
        );
        let other_key_pem = write("other.pem", &other_key.private_key_to_pem_pkcs8().unwrap());
        let store = |cert: &openssl::x509::X509,
                     key: &openssl::pkey::PKey<openssl::pkey::Private>,
                     name: &str| {
            write(
                name,
                &openssl::pkcs12::Pkcs12::builder()
                    .name("weir")
                    .pkey(key)
                    .cert(cert)
                    .build2("s3cret")
                    .unwrap()
                    .to_der()
                    .unwrap(),
            )
        };
        let (keystore, expired_keystore) = (
            store(&good, &key, "good.p12"),
            store(&expired, &old_key, "expired.p12"),
        );
        let secret = |s: &str| Some(Secret::Value(s.into()));
        let check = |s: Security| s.settings().map(|_| ()).map_err(|e| format!("{e:#}"));
        let pem = |cert: &PathBuf, key: &PathBuf, password: Option<Secret>| Security {
            certificate_file: Some(cert.clone()),
            key_file: Some(key.clone()),
            key_password: password,
            ..Security::default()
        };
        let p12 = |store: &PathBuf, password: &str| Security {
            keystore_file: Some(store.clone()),
            keystore_password: secret(password),
            ..Security::default()
        };
        let ca = |file: &PathBuf| Security {
            ca_file: Some(file.clone()),
            ..Security::default()
        };

        assert_eq!(check(ca(&good_pem)), Ok(()));
        assert_eq!(
            check(ca(&d.to_path_buf())),
            Ok(()),
            "a directory of CAs is librdkafka's to read"
        );
        assert_eq!(check(pem(&good_pem, &key_pem, secret("s3cret"))), Ok(()));
        assert_eq!(check(p12(&keystore, "s3cret")), Ok(()));
        let refused = [
            (
                ca(&expired_pem),
                "kafka.security.ca_file: the certificate `old`",
            ),
            (ca(&key_pem), "holds no PEM certificate"),
            (pem(&later_pem, &key_pem, secret("s3cret")), "`later`"),
            (
                pem(&good_pem, &other_key_pem, None),
                "is not the key of the certificate `weir`",
            ),
            (
                pem(&good_pem, &key_pem, secret("wrong")),
                "is key_password right?",
            ),
            (
                pem(&good_pem, &key_pem, None),
                "an encrypted key needs key_password",
            ),
            (
                p12(&keystore, "wrong"),
                "kafka.security.keystore_password does not open",
            ),
            (
                p12(&expired_keystore, "s3cret"),
                "kafka.security.keystore_file: the certificate `old`",
            ),
            (p12(&good_pem, "s3cret"), "is not a PKCS#12 keystore"),
        ];
        for (security, says) in refused {
            let e = check(security).unwrap_err();
            assert!(e.contains(says), "{e}\ndoes not say: {says}");
            assert!(
                !e.contains("s3cret") && !e.contains("wrong"),
                "a password is in: {e}"
            );
        }
        assert!(check(ca(&expired_pem)).unwrap_err().contains("expired on"));
        assert!(
            check(pem(&later_pem, &key_pem, secret("s3cret")))
                .unwrap_err()
                .contains("is not valid before")
        );
    }
}
