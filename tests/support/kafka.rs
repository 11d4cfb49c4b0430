//! Apache Kafka on loopback (`scripts/kafka`, a single-node KRaft broker
//! from the jars `scripts/setup --test` caches), an independent rdkafka
//! client to produce and read records, and `weir run` as a separate
//! process.
//!
//! A broker's JVM takes seconds to start, so the tests of one binary share
//! one ([`Broker::shared`]) and keep apart by name: each test works in a
//! [`Scope`], which prefixes every topic and consumer group it names with
//! the test's own name. Tests that stop or restart a broker start their own
//! ([`Broker::dedicated`]).
//!
//! Every process started here is spawned by one thread that lives as long
//! as the test binary, with `PR_SET_PDEATHSIG`: the kernel kills them all if
//! the binary dies, and they are stopped by pid when their handle drops (the
//! shared broker when the binary exits).
//!
//! (Over 400 lines: the harness every end-to-end test shares (brokers, secured listeners, the
//! independent client, `weir run` processes), so that test files read as scenarios.)

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Sender, channel};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

/// A free loopback port.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

type SpawnRequest = (Command, Sender<std::io::Result<Child>>);

/// Spawns `cmd` so that it dies with this process: from a thread that never
/// exits (the parent-death signal fires when the spawning *thread* ends).
pub fn spawn(cmd: Command) -> Child {
    static SPAWNER: OnceLock<Mutex<Sender<SpawnRequest>>> = OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (tx, rx) = channel::<SpawnRequest>();
        std::thread::Builder::new()
            .name("process-spawner".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    use std::os::unix::process::CommandExt;
                    // SAFETY: prctl is async-signal-safe; nothing else runs
                    // between fork and exec.
                    unsafe {
                        cmd.pre_exec(|| {
                            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                            Ok(())
                        });
                    }
                    let _ = reply.send(cmd.spawn());
                }
                // The sender lives in a static: never reached.
                loop {
                    std::thread::park();
                }
            })
            .unwrap();
        Mutex::new(tx)
    });
    let (tx, rx) = channel();
    let program = cmd.get_program().to_owned();
    spawner.lock().unwrap().send((cmd, tx)).unwrap();
    rx.recv()
        .unwrap()
        .unwrap_or_else(|e| panic!("starting {}: {e}", program.display()))
}

/// Sends SIGKILL (or SIGTERM) to a child by pid; reaps it after SIGKILL.
fn signal(child: &mut Child, sig: i32) {
    // SAFETY: kill(2) takes plain integers; the child is ours, not yet reaped.
    unsafe { libc::kill(child.id() as i32, sig) };
    if sig == libc::SIGKILL {
        let _ = child.wait();
    }
}

/// A running Apache Kafka broker.
pub struct Broker {
    child: Option<Child>,
    pub port: u16,
    controller_port: u16,
    pub bootstrap: String,
    dir: tempfile::TempDir,
    /// Broker settings beyond `scripts/kafka`'s.
    settings: Vec<String>,
    /// SCRAM users added when its data is formatted.
    scram: Vec<String>,
    /// Java system properties (`key=value`) of its JVM.
    system: Vec<String>,
}

/// A broker's secured listeners: certificates a CA of the test's own
/// signs (made with `keytool`). SASL_SSL knows one user under SCRAM-SHA-512,
/// SCRAM-SHA-256 and PLAIN, and one limited by ACLs under SCRAM-SHA-512;
/// SSL asks every client for a certificate of the same CA (mutual TLS).
/// Kafka's standard authorizer checks every request.
pub struct Secure {
    /// The SASL_SSL listener.
    pub bootstrap: String,
    /// The mutual TLS listener.
    pub mtls: String,
    /// The CA's certificate, PEM.
    pub ca: PathBuf,
    /// A CA the broker's certificate is not signed by, PEM.
    pub other_ca: PathBuf,
    pub user: String,
    pub password: String,
    /// A client certificate of the CA: a PKCS#12 keystore, and the same as
    /// PEM files (the key encrypted with the keystore's password).
    pub client_keystore: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    pub keystore_password: String,
    /// A client certificate of the CA that expired yesterday, PKCS#12.
    pub expired_keystore: PathBuf,
    /// A SCRAM-SHA-512 user the broker's authorizer allows only what ACLs
    /// grant (`user` and the client certificate are super users).
    pub limited_user: String,
    pub limited_password: String,
    /// The SASL_SSL listener that takes OAUTHBEARER tokens of `oidc`.
    pub oauth: String,
    pub oidc: crate::oidc::Oidc,
    /// The SASL_SSL listener that takes GSSAPI of `kerberos`'s realm.
    pub kerberos_bootstrap: String,
    pub kerberos: crate::kerberos::Kerberos,
}

/// Runs `keytool` with `args` in `dir`.
fn keytool(dir: &Path, args: &[&str]) {
    let out = Command::new("keytool")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("running keytool (from the JDK)");
    assert!(
        out.status.success(),
        "keytool {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA in `dir`: `<name>.p12` (its key) and `<name>.pem`.
fn make_ca(dir: &Path, name: &str) {
    let (p12, dname) = (format!("{name}.p12"), format!("CN={name}"));
    let ca = [
        "-keystore",
        &p12,
        "-storetype",
        "PKCS12",
        "-storepass",
        "changeit",
    ];
    keytool(
        dir,
        &[
            &[
                "-genkeypair",
                "-alias",
                "ca",
                "-dname",
                &dname,
                "-keyalg",
                "RSA",
                "-keysize",
                "2048",
                "-ext",
                "bc:c",
                "-validity",
                "3",
            ][..],
            &ca,
        ]
        .concat(),
    );
    keytool(
        dir,
        &[
            &[
                "-exportcert",
                "-rfc",
                "-alias",
                "ca",
                "-file",
                &format!("{name}.pem"),
            ][..],
            &ca,
        ]
        .concat(),
    );
}

/// A PKCS#12 keystore `store` of `dir` (password `password`) holding a key
/// and its certificate for `dname`, which the CA `ca` of `dir` signs with
/// `gencert` (validity, extensions).
fn sign(dir: &Path, store: &str, password: &str, dname: &str, gencert: &[&str]) {
    let ca = [
        "-keystore",
        "ca.p12",
        "-storetype",
        "PKCS12",
        "-storepass",
        "changeit",
    ];
    let own = [
        "-keystore",
        store,
        "-storetype",
        "PKCS12",
        "-storepass",
        password,
    ];
    let csr = format!("{store}.csr");
    let crt = format!("{store}.crt");
    keytool(
        dir,
        &[
            &[
                "-genkeypair",
                "-alias",
                "key",
                "-dname",
                dname,
                "-keyalg",
                "RSA",
                "-keysize",
                "2048",
                "-keypass",
                password,
            ][..],
            &own,
        ]
        .concat(),
    );
    keytool(
        dir,
        &[&["-certreq", "-alias", "key", "-file", &csr][..], &own].concat(),
    );
    keytool(
        dir,
        &[
            &[
                "-gencert", "-alias", "ca", "-infile", &csr, "-outfile", &crt, "-rfc",
            ][..],
            gencert,
            &ca,
        ]
        .concat(),
    );
    keytool(
        dir,
        &[
            &[
                "-importcert",
                "-noprompt",
                "-alias",
                "ca",
                "-file",
                "ca.pem",
            ][..],
            &own,
        ]
        .concat(),
    );
    keytool(
        dir,
        &[&["-importcert", "-alias", "key", "-file", &crt][..], &own].concat(),
    );
    // Weir refuses a keystore others may read.
    std::fs::set_permissions(
        dir.join(store),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
}

/// The certificate and key of keystore `store` as PEM files beside it, the
/// key encrypted with the keystore's password and private to its owner.
fn pem_pair(dir: &Path, store: &str, password: &str) -> (PathBuf, PathBuf) {
    use std::os::unix::fs::PermissionsExt;
    let parsed = openssl::pkcs12::Pkcs12::from_der(&std::fs::read(dir.join(store)).unwrap())
        .unwrap()
        .parse2(password)
        .unwrap();
    let (cert, key) = (
        dir.join(format!("{store}.cert.pem")),
        dir.join(format!("{store}.key.pem")),
    );
    std::fs::write(&cert, parsed.cert.unwrap().to_pem().unwrap()).unwrap();
    let encrypted = parsed
        .pkey
        .unwrap()
        .private_key_to_pem_pkcs8_passphrase(
            openssl::symm::Cipher::aes_256_cbc(),
            password.as_bytes(),
        )
        .unwrap();
    std::fs::write(&key, encrypted).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    (cert, key)
}

impl Broker {
    /// This test binary's broker: started on first use, stopped (by pid)
    /// when the binary exits.
    pub fn shared() -> &'static Broker {
        static SHARED: OnceLock<Broker> = OnceLock::new();
        SHARED.get_or_init(|| {
            extern "C" fn stop_shared() {
                if let Some(b) = SHARED.get() {
                    // SAFETY: kill and waitpid on our own child's pid.
                    unsafe {
                        libc::kill(b.pid() as i32, libc::SIGKILL);
                        libc::waitpid(b.pid() as i32, std::ptr::null_mut(), 0);
                    }
                    let _ = std::fs::remove_dir_all(b.dir.path());
                }
            }
            let b = Broker::dedicated();
            // SAFETY: registers a plain function; it runs once at exit.
            unsafe { libc::atexit(stop_shared) };
            b
        })
    }

    /// This test binary's secure broker (see [`Broker::secure`]): started
    /// on first use, stopped (by pid) when the binary exits.
    pub fn secure_shared() -> &'static (Broker, Secure) {
        static SECURE: OnceLock<(Broker, Secure)> = OnceLock::new();
        SECURE.get_or_init(|| {
            extern "C" fn stop_secure() {
                if let Some((b, _)) = SECURE.get() {
                    // SAFETY: kill and waitpid on our own child's pid.
                    unsafe {
                        libc::kill(b.pid() as i32, libc::SIGKILL);
                        libc::waitpid(b.pid() as i32, std::ptr::null_mut(), 0);
                    }
                    let _ = std::fs::remove_dir_all(b.dir.path());
                }
            }
            let b = Broker::secure();
            // SAFETY: registers a plain function; it runs once at exit.
            unsafe { libc::atexit(stop_secure) };
            b
        })
    }

    /// A broker of the caller's own, stopped when dropped.
    pub fn dedicated() -> Broker {
        Broker::dedicated_with(&[])
    }

    /// [`Broker::dedicated`] with broker settings (`key=value`) on top of
    /// `scripts/kafka`'s.
    pub fn dedicated_with(settings: &[&str]) -> Broker {
        let port = free_port();
        let mut controller_port = free_port();
        while controller_port == port {
            controller_port = free_port();
        }
        let dir = tempfile::Builder::new()
            .prefix("weir-kafka-")
            .tempdir()
            .unwrap();
        let settings = settings.iter().map(|s| s.to_string()).collect();
        let mut b = Broker {
            child: None,
            port,
            controller_port,
            bootstrap: format!("127.0.0.1:{port}"),
            dir,
            settings,
            scram: Vec::new(),
            system: Vec::new(),
        };
        b.launch();
        b
    }

    /// A broker of the caller's own with the secured listeners of
    /// [`Secure`] beside its plaintext one (which the tests' own clients
    /// keep using).
    pub fn secure() -> (Broker, Secure) {
        let mut ports = vec![free_port()];
        while ports.len() < 6 {
            let p = free_port();
            if !ports.contains(&p) {
                ports.push(p);
            }
        }
        let [
            port,
            controller_port,
            sasl_port,
            mtls_port,
            oauth_port,
            krb_port,
        ] = ports[..]
        else {
            unreachable!()
        };
        // Up before the broker, which fetches its keys as it starts.
        let oidc = crate::oidc::Oidc::start("weir-oidc", "kafka");
        let dir = tempfile::Builder::new()
            .prefix("weir-kafka-")
            .tempdir()
            .unwrap();
        let tls = dir.path().join("tls");
        std::fs::create_dir(&tls).unwrap();
        let kerberos = crate::kerberos::Kerberos::start(&dir.path().join("kerberos"));
        make_ca(&tls, "ca");
        make_ca(&tls, "other-ca");
        let keystore_password = format!("ks-{}-{}", std::process::id(), now_ms());
        let valid = ["-validity", "3"];
        sign(
            &tls,
            "broker.p12",
            "changeit",
            "CN=localhost",
            &["-validity", "3", "-ext", "SAN=IP:127.0.0.1,DNS:localhost"],
        );
        sign(
            &tls,
            "client.p12",
            &keystore_password,
            "CN=weir-client",
            &valid,
        );
        sign(
            &tls,
            "expired.p12",
            &keystore_password,
            "CN=weir-expired",
            &["-startdate", "-3d", "-validity", "1"],
        );
        keytool(
            &tls,
            &[
                "-importcert",
                "-noprompt",
                "-alias",
                "ca",
                "-file",
                "ca.pem",
                "-keystore",
                "truststore.p12",
                "-storetype",
                "PKCS12",
                "-storepass",
                "changeit",
            ],
        );
        let (client_cert, client_key) = pem_pair(&tls, "client.p12", &keystore_password);
        let (user, password) = (
            "weir".to_owned(),
            format!("pw-{}-{}", std::process::id(), now_ms()),
        );
        let scram_module = "org.apache.kafka.common.security.scram.ScramLoginModule required;";
        let settings = [
            format!(
                "listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port},SASL_SSL://127.0.0.1:{sasl_port},SSL://127.0.0.1:{mtls_port},\
                 OAUTH://127.0.0.1:{oauth_port},KRB://127.0.0.1:{krb_port}"
            ),
            // Kerberos names the broker's service by its host name.
            format!(
                "advertised.listeners=PLAINTEXT://127.0.0.1:{port},SASL_SSL://127.0.0.1:{sasl_port},SSL://127.0.0.1:{mtls_port},\
                 OAUTH://127.0.0.1:{oauth_port},KRB://localhost:{krb_port}"
            ),
            "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL_SSL:SASL_SSL,SSL:SSL,OAUTH:SASL_SSL,KRB:SASL_SSL".into(),
            // GSSAPI, the broker's service principal from its keytab.
            "listener.name.krb.sasl.enabled.mechanisms=GSSAPI".into(),
            "sasl.kerberos.service.name=kafka".into(),
            format!(
                "listener.name.krb.gssapi.sasl.jaas.config=com.sun.security.auth.module.Krb5LoginModule required useKeyTab=true storeKey=true keyTab=\"{}\" principal=\"kafka/localhost@{}\";",
                kerberos.broker_keytab.display(),
                crate::kerberos::REALM
            ),
            // OAUTHBEARER, tokens checked against the provider's keys.
            "listener.name.oauth.sasl.enabled.mechanisms=OAUTHBEARER".into(),
            "listener.name.oauth.oauthbearer.sasl.jaas.config=org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required;".into(),
            "listener.name.oauth.oauthbearer.sasl.server.callback.handler.class=org.apache.kafka.common.security.oauthbearer.OAuthBearerValidatorCallbackHandler"
                .into(),
            // Kafka 4.1's default validator checks no signature at all:
            // the broker's checks the JWKS (3.9 does without being told).
            "sasl.oauthbearer.jwt.validator.class=org.apache.kafka.common.security.oauthbearer.BrokerJwtValidator".into(),
            format!("sasl.oauthbearer.jwks.endpoint.url={}", oidc.jwks_endpoint),
            format!("sasl.oauthbearer.expected.audience={}", oidc.audience),
            "sasl.enabled.mechanisms=SCRAM-SHA-512,SCRAM-SHA-256,PLAIN".into(),
            format!("listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config={scram_module}"),
            format!("listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config={scram_module}"),
            format!(
                "listener.name.sasl_ssl.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_{user}=\"{password}\";"
            ),
            format!("ssl.keystore.location={}", tls.join("broker.p12").display()),
            "ssl.keystore.type=PKCS12".into(),
            "ssl.keystore.password=changeit".into(),
            "ssl.key.password=changeit".into(),
            "listener.name.ssl.ssl.client.auth=required".into(),
            format!("listener.name.ssl.ssl.truststore.location={}", tls.join("truststore.p12").display()),
            "listener.name.ssl.ssl.truststore.type=PKCS12".into(),
            "listener.name.ssl.ssl.truststore.password=changeit".into(),
            // Kafka's own authorizer: `limited` may do only what ACLs allow.
            // The tests' plaintext clients, the controller, `weir` and the
            // client certificate may do anything.
            "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer".into(),
            // `weir@WEIR.TEST` is `User:weir`.
            format!("super.users=User:ANONYMOUS;User:{user};User:CN=weir-client;User:{}", oidc.subject),
        ];
        let limited_password = format!("lim-{}-{}", std::process::id(), now_ms());
        let mut scram = ["SCRAM-SHA-512", "SCRAM-SHA-256"]
            .map(|m| format!("{m}=[name={user},password={password}]"))
            .to_vec();
        scram.push(format!(
            "SCRAM-SHA-512=[name=limited,password={limited_password}]"
        ));
        let system = vec![
            format!(
                "org.apache.kafka.sasl.oauthbearer.allowed.urls={}",
                oidc.jwks_endpoint
            ),
            format!("java.security.krb5.conf={}", kerberos.krb5_conf.display()),
        ];
        let mut b = Broker {
            child: None,
            port,
            controller_port,
            bootstrap: format!("127.0.0.1:{port}"),
            dir,
            settings: settings.into(),
            scram,
            system,
        };
        b.launch();
        let secure = Secure {
            bootstrap: format!("127.0.0.1:{sasl_port}"),
            mtls: format!("127.0.0.1:{mtls_port}"),
            ca: tls.join("ca.pem"),
            other_ca: tls.join("other-ca.pem"),
            user,
            password,
            client_keystore: tls.join("client.p12"),
            client_cert,
            client_key,
            keystore_password,
            expired_keystore: tls.join("expired.p12"),
            limited_user: "limited".into(),
            limited_password,
            oauth: format!("127.0.0.1:{oauth_port}"),
            oidc,
            kerberos_bootstrap: format!("localhost:{krb_port}"),
            kerberos,
        };
        (b, secure)
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("broker.log")).unwrap_or_default()
    }

    fn launch(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("broker.log"))
            .unwrap();
        let mut cmd = Command::new(crate::repo().join("scripts/kafka"));
        cmd.args([
            "--port",
            &self.port.to_string(),
            "--controller-port",
            &self.controller_port.to_string(),
            "--data",
        ])
        .arg(self.dir.path().join("data"))
        .args(self.settings.iter().flat_map(|s| ["--set", s.as_str()]))
        .args(self.scram.iter().flat_map(|s| ["--scram", s.as_str()]))
        .args(self.system.iter().flat_map(|s| ["--system", s.as_str()]))
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log);
        self.child = Some(spawn(cmd));
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "the Kafka broker exited ({status}) while starting; log:\n{}",
                    self.log_text()
                );
            }
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "Kafka did not listen on port {} within 90 s; log:\n{}",
                self.port,
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        // Ready when it answers metadata with itself as a broker.
        let c: BaseConsumer = self.scope_with_prefix("").client().create().unwrap();
        while c
            .fetch_metadata(None, Duration::from_secs(5))
            .map_or(true, |md| md.brokers().is_empty())
        {
            assert!(
                Instant::now() < deadline,
                "Kafka did not answer metadata within 90 s; log:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        // scripts/kafka runs the version WEIR_KAFKA_VERSION names: the
        // subset scripts/test runs on an older Kafka really does.
        if let Ok(version) = std::env::var("WEIR_KAFKA_VERSION") {
            let said = format!("Kafka version: {version}");
            assert!(
                self.log_text().contains(&said),
                "the broker did not say `{said}`; log:\n{}",
                self.log_text()
            );
        }
    }

    /// The first log segment of `topic` (a full name) partition
    /// `partition`, where the broker stores its records.
    pub fn segment(&self, topic: &str, partition: i32) -> PathBuf {
        self.dir
            .path()
            .join("data/log")
            .join(format!("{topic}-{partition}"))
            .join("00000000000000000000.log")
    }

    /// Kills the broker process (SIGKILL).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            signal(&mut c, libc::SIGKILL);
        }
    }

    /// Freezes the broker (SIGSTOP): connections stay open and nothing is
    /// answered, as a broker that hangs, until [`Broker::thaw`].
    pub fn freeze(&mut self) {
        signal(self.child.as_mut().expect("running"), libc::SIGSTOP);
    }

    pub fn thaw(&mut self) {
        signal(self.child.as_mut().expect("running"), libc::SIGCONT);
    }

    /// Starts the broker again on the same ports and data.
    pub fn restart(&mut self) {
        self.kill();
        self.launch();
    }

    /// The calling test's names on this broker (see [`Scope`]).
    pub fn scope(&self) -> Scope {
        let test = std::thread::current()
            .name()
            .filter(|n| *n != "main")
            .map(str::to_owned)
            .unwrap_or_else(|| {
                static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
                format!("t{}", N.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
            });
        // Kafka refuses a topic whose name collides with another's once
        // `.` and `_` are both read as `_`: no `_` in prefixes.
        let prefix: String = test
            .rsplit("::")
            .next()
            .unwrap()
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        self.scope_with_prefix(&format!("{prefix}."))
    }

    fn scope_with_prefix(&self, prefix: &str) -> Scope {
        Scope {
            bootstrap: self.bootstrap.clone(),
            prefix: prefix.to_owned(),
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One test's names on a broker: every topic and consumer group it names
/// through these methods is `prefix + name`, and [`Weir::start`] fills
/// `{p}` in a config with the prefix ([`host_config`] puts the hosts'
/// groups, changelogs and registry under it).
#[derive(Clone)]
pub struct Scope {
    pub bootstrap: String,
    pub prefix: String,
}

impl Scope {
    /// The full name of this test's `name`.
    pub fn name(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// A scope of its own inside this one, for one case of a test.
    pub fn within(&self, case: &str) -> Scope {
        Scope {
            bootstrap: self.bootstrap.clone(),
            prefix: format!("{}{case}.", self.prefix),
        }
    }

    /// Settings of an independent client (not Weir's code).
    pub fn client(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.bootstrap);
        c
    }

    pub fn create_topic(&self, name: &str, partitions: i32) {
        self.create_topic_with(name, partitions, &[]);
    }

    /// Allows `principal` what `acls` says, one ACL a line: `RESOURCE
    /// PATTERN NAME OPERATION` as Kafka names them (`topic literal
    /// orders read`), with `{p}` in NAME standing for this test's prefix.
    /// Through confluent-kafka (`tests/interop/acls.py`) over the
    /// plaintext listener, whose principal the broker must let manage ACLs.
    pub fn grant(&self, principal: &str, acls: &str) {
        self.acls("create", principal, acls);
    }

    /// Takes back what [`Scope::grant`] allowed.
    pub fn revoke(&self, principal: &str, acls: &str) {
        self.acls("delete", principal, acls);
    }

    fn acls(&self, action: &str, principal: &str, acls: &str) {
        use std::io::Write;
        let mut child = Command::new(crate::python())
            .arg(crate::repo().join("tests/interop/acls.py"))
            .args([&self.bootstrap, action, principal])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(acls.replace("{p}", &self.prefix).as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{action} ACLs of {principal}:\n{acls}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Changes settings `config` of topic `name`.
    pub fn alter_topic(&self, name: &str, config: &[(&str, &str)]) {
        use rdkafka::admin::{AlterConfig, ResourceSpecifier};
        let admin: AdminClient<DefaultClientContext> = self.client().create().unwrap();
        let full = self.name(name);
        let mut change = AlterConfig::new(ResourceSpecifier::Topic(&full));
        for (k, v) in config {
            change = change.set(k, v);
        }
        let r = futures::executor::block_on(admin.alter_configs(
            [&change],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
        ))
        .unwrap();
        for x in r {
            x.unwrap_or_else(|(t, e)| panic!("altering topic {t:?}: {e}"));
        }
    }

    /// Creates topic `name` with topic settings `config`.
    pub fn create_topic_with(&self, name: &str, partitions: i32, config: &[(&str, &str)]) {
        let admin: AdminClient<DefaultClientContext> = self.client().create().unwrap();
        let full = self.name(name);
        let mut t = NewTopic::new(&full, partitions, TopicReplication::Fixed(1));
        for (k, v) in config {
            t = t.set(k, v);
        }
        let r = futures::executor::block_on(admin.create_topics(
            [&t],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
        ))
        .unwrap();
        for x in r {
            x.unwrap_or_else(|(t, e)| panic!("creating topic {t}: {e}"));
        }
    }

    /// Produces records with an independent idempotent producer and waits
    /// for every acknowledgement.
    pub fn produce(&self, topic: &str, records: &[Rec]) {
        let p: BaseProducer = self
            .client()
            .set("enable.idempotence", "true")
            .set("linger.ms", "5")
            .set("queue.buffering.max.messages", "500000")
            .create()
            .unwrap();
        send_all(&p, &self.name(topic), records);
    }

    /// Opens a transaction of an independent transactional producer (id
    /// `id` in this test's names): what it produces stays invisible to
    /// read-committed readers, and holds their partitions back, until
    /// [`OpenTransaction::commit`].
    pub fn begin_transaction(&self, id: &str) -> OpenTransaction {
        let producer: BaseProducer = self
            .client()
            .set("transactional.id", self.name(id))
            .set("transaction.timeout.ms", "300000")
            .set("linger.ms", "5")
            .create()
            .unwrap();
        producer
            .init_transactions(Duration::from_secs(30))
            .expect("init_transactions");
        producer.begin_transaction().expect("begin_transaction");
        OpenTransaction {
            producer,
            scope: self.clone(),
        }
    }

    /// Produces one record whose first header's name is `name`, bytes that
    /// need not be UTF-8 (as anyone may write to a topic).
    pub fn produce_with_header_name(&self, topic: &str, value: &str, name: &[u8]) {
        let topic = self.name(topic);
        let p: BaseProducer = self.client().create().unwrap();
        // SAFETY: never used as a `str` in Rust: rdkafka hands its pointer
        // and length to librdkafka, which takes any bytes.
        let key = unsafe { std::str::from_utf8_unchecked(name) };
        let headers = OwnedHeaders::new().insert(Header {
            key,
            value: Some(&b"v"[..]),
        });
        p.send(
            BaseRecord::<str, str>::to(&topic)
                .key("k")
                .payload(value)
                .headers(headers),
        )
        .map_err(|(e, _)| e)
        .unwrap();
        p.flush(Duration::from_secs(30)).expect("acknowledged");
    }

    /// Deletes consumer group `group` (it must have no members): its
    /// committed offsets are gone, as when they expire.
    pub fn delete_group(&self, group: &str) {
        let admin: AdminClient<DefaultClientContext> = self.client().create().unwrap();
        let group = self.name(group);
        let r = futures::executor::block_on(admin.delete_groups(
            &[group.as_str()],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
        ))
        .unwrap();
        for x in r {
            x.unwrap_or_else(|(g, e)| panic!("deleting group {g}: {e}"));
        }
    }

    /// Reads every partition of `topic` from the beginning (no consumer
    /// group) until `expected` records arrived or `timeout` passed.
    pub fn read(&self, topic: &str, expected: usize, timeout: Duration) -> Vec<Rec> {
        self.read_until(topic, timeout, |out| out.len() >= expected)
    }

    /// Reads every partition of `topic` from the beginning until `done`
    /// holds for what was read so far (checked after every record and
    /// whenever none arrives for 100 ms) or `timeout` passed.
    pub fn read_until(
        &self,
        topic: &str,
        timeout: Duration,
        done: impl FnMut(&[Rec]) -> bool,
    ) -> Vec<Rec> {
        self.read_with(self.client(), topic, timeout, done)
    }

    /// [`Scope::read_until`] with the consumer settings `config`.
    pub fn read_with(
        &self,
        mut config: ClientConfig,
        topic: &str,
        timeout: Duration,
        mut done: impl FnMut(&[Rec]) -> bool,
    ) -> Vec<Rec> {
        let topic = self.name(topic);
        let c: BaseConsumer = config
            .set("group.id", "weir-test-reader")
            .set("enable.auto.commit", "false")
            .create()
            .unwrap();
        let md = c
            .fetch_metadata(Some(&topic), Duration::from_secs(10))
            .unwrap();
        let mut tpl = TopicPartitionList::new();
        for p in md.topics()[0].partitions() {
            tpl.add_partition_offset(&topic, p.id(), Offset::Beginning)
                .unwrap();
        }
        c.assign(&tpl).unwrap();
        let deadline = Instant::now() + timeout;
        let mut out = Vec::new();
        while Instant::now() < deadline {
            let Some(Ok(m)) = c.poll(Duration::from_millis(100)) else {
                if done(&out) {
                    break;
                }
                continue;
            };
            out.push(Rec {
                key: m.key().map(<[u8]>::to_vec),
                value: m.payload().map(<[u8]>::to_vec),
                headers: weir_kafka::headers_of(&m)
                    .into_iter()
                    .map(|(k, v)| {
                        (
                            String::from_utf8_lossy(k).into_owned(),
                            v.map(<[u8]>::to_vec),
                        )
                    })
                    .collect(),
                partition: Some(m.partition()),
                offset: m.offset(),
                timestamp: m.timestamp().to_millis(),
            });
            if done(&out) {
                break;
            }
        }
        out
    }

    /// Committed offsets of `group` on `topic`'s partitions (-1: none).
    pub fn committed(&self, group: &str, topic: &str, partitions: i32) -> Vec<i64> {
        let (group, topic) = (self.name(group), self.name(topic));
        let c: BaseConsumer = self.client().set("group.id", &group).create().unwrap();
        let mut tpl = TopicPartitionList::new();
        for p in 0..partitions {
            tpl.add_partition(&topic, p);
        }
        let got = c.committed_offsets(tpl, Duration::from_secs(10)).unwrap();
        got.elements()
            .iter()
            .map(|e| {
                if let Offset::Offset(o) = e.offset() {
                    o
                } else {
                    -1
                }
            })
            .collect()
    }
}

/// Sends `records` to `topic` (a full name) and waits for every
/// acknowledgement.
fn send_all(p: &BaseProducer, topic: &str, records: &[Rec]) {
    for r in records {
        let mut rec = BaseRecord::<[u8], [u8]>::to(topic);
        if let Some(k) = &r.key {
            rec = rec.key(k.as_slice());
        }
        if let Some(v) = &r.value {
            rec = rec.payload(v.as_slice());
        }
        if let Some(part) = r.partition {
            rec = rec.partition(part);
        }
        if !r.headers.is_empty() {
            let mut h = OwnedHeaders::new();
            for (k, v) in &r.headers {
                h = h.insert(Header {
                    key: k,
                    value: v.as_deref(),
                });
            }
            rec = rec.headers(h);
        }
        if let Some(ts) = r.timestamp {
            rec = rec.timestamp(ts);
        }
        while let Err((_, back)) = p.send(rec) {
            rec = back;
            p.poll(Duration::from_millis(10));
        }
        p.poll(Duration::ZERO);
    }
    p.flush(Duration::from_secs(60))
        .expect("all records acknowledged");
}

/// A transaction left open on purpose (see [`Scope::begin_transaction`]).
pub struct OpenTransaction {
    producer: BaseProducer,
    scope: Scope,
}

impl OpenTransaction {
    /// Sends `records` to `topic` within the transaction and waits until
    /// the broker has them (still uncommitted).
    pub fn produce(&self, topic: &str, records: &[Rec]) {
        send_all(&self.producer, &self.scope.name(topic), records);
    }

    pub fn commit(self) {
        self.producer
            .commit_transaction(Duration::from_secs(30))
            .expect("commit_transaction");
    }
}

/// A record as produced or read back.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Rec {
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
    pub partition: Option<i32>,
    pub offset: i64,
    pub timestamp: Option<i64>,
}

impl Rec {
    pub fn new(key: &str, value: &str) -> Rec {
        Rec {
            key: Some(key.into()),
            value: Some(value.into()),
            ..Rec::default()
        }
    }

    pub fn key_str(&self) -> &str {
        std::str::from_utf8(self.key.as_deref().unwrap_or_default()).unwrap()
    }

    pub fn value_str(&self) -> &str {
        std::str::from_utf8(self.value.as_deref().unwrap_or_default()).unwrap()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| v.as_deref())
            .map(|v| std::str::from_utf8(v).unwrap())
    }
}

/// `weir run` as a separate process, with its own state directory.
pub struct Weir {
    child: Option<Child>,
    pub listen: SocketAddr,
    pub log: PathBuf,
    config: PathBuf,
    /// Sent with `/health` and `/metrics` (hosts with tokens show them only
    /// to a token).
    token: Option<String>,
    /// Environment variables of its process beyond the test's.
    env: Vec<(String, String)>,
}

impl Weir {
    /// Writes `config` (TOML; `{brokers}`, `{p}`, `{state}`, `{listen}` and
    /// `{plugins}` are filled in) to `dir` and starts `weir run` on it.
    pub fn start(dir: &Path, scope: &Scope, config: &str) -> Weir {
        Weir::start_with_env(dir, scope, config, &[])
    }

    /// [`Weir::start`] with environment variables `env` (set here, not in
    /// the test process, whose other threads may read its environment).
    pub fn start_with_env(dir: &Path, scope: &Scope, config: &str, env: &[(&str, String)]) -> Weir {
        std::fs::create_dir_all(dir).unwrap();
        let listen = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let plugins = crate::plugin("upper").parent().unwrap().to_owned();
        let text = config
            .replace("{brokers}", &scope.bootstrap)
            .replace("{p}", &scope.prefix)
            .replace("{state}", &dir.join("state").display().to_string())
            .replace("{listen}", &listen.to_string())
            .replace("{plugins}", &plugins.display().to_string());
        let config = dir.join("weir.toml");
        std::fs::write(&config, text).unwrap();
        let mut w = Weir {
            child: None,
            listen,
            log: dir.join("weir.log"),
            config,
            token: None,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
        };
        w.launch();
        w
    }

    fn launch(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let mut cmd = Command::new(crate::weir_bin());
        cmd.args(["run", "--config"])
            .arg(&self.config)
            .env(
                "WEIR_LOG",
                std::env::var("WEIR_TEST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        self.child = Some(spawn(cmd));
    }

    /// Starts the same process again after a stop or a kill.
    pub fn restart(&mut self) {
        self.kill9();
        self.launch();
    }

    /// Stops the process gracefully (SIGTERM), then starts it again.
    pub fn restart_gracefully(&mut self) {
        let status = self.terminate();
        assert!(status.success(), "graceful exit; log:\n{}", self.log_text());
        self.launch();
    }

    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            signal(&mut c, libc::SIGKILL);
        }
    }

    /// Freezes the process (SIGSTOP), as a host that stalls without dying
    /// (a hung VM, a long pause), until [`Weir::thaw`].
    pub fn freeze(&mut self) {
        signal(self.child.as_mut().expect("running"), libc::SIGSTOP);
    }

    pub fn thaw(&mut self) {
        signal(self.child.as_mut().expect("running"), libc::SIGCONT);
    }

    /// SIGTERM, then waits for a graceful exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut c = self.child.take().expect("running");
        signal(&mut c, libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = c.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                signal(&mut c, libc::SIGKILL);
                panic!(
                    "weir did not exit within 60 s of SIGTERM; log:\n{}",
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits for the process to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let c = self.child.as_mut().expect("running");
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = c.try_wait().unwrap() {
                self.child = None;
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "weir still running after {timeout:?}; log:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// CPU seconds the host process has used (user and system).
    pub fn cpu_seconds(&self) -> f64 {
        let pid = self.child.as_ref().expect("running").id();
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        // Fields after the command name (which may hold spaces): utime and
        // stime are the 12th and 13th, in clock ticks (100 per second).
        let rest = &stat[stat.rfind(')').unwrap() + 2..];
        let fields: Vec<&str> = rest.split(' ').collect();
        (fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap()) / 100.0
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The process's peak resident memory so far, bytes.
    pub fn peak_rss(&self) -> u64 {
        let pid = self.child.as_ref().expect("running").id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches(" kB").parse::<u64>().ok())
            .unwrap_or(0)
            << 10
    }

    /// Asks `/health` and `/metrics` with `token` from now on.
    pub fn authorize(&mut self, token: &str) {
        self.token = Some(token.to_owned());
    }

    fn get(&self, path: &str) -> reqwest::Result<reqwest::blocking::Response> {
        let mut r = reqwest::blocking::Client::new().get(format!("http://{}{path}", self.listen));
        if let Some(t) = &self.token {
            r = r.bearer_auth(t);
        }
        r.send()
    }

    pub fn health(&self) -> Option<serde_json::Value> {
        self.get("/health").ok()?.json().ok()
    }

    pub fn metrics(&self) -> String {
        self.get("/metrics")
            .and_then(|r| r.text())
            .unwrap_or_default()
    }

    /// Waits until the HTTP listener answers.
    pub fn wait_healthy(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.health().is_none() {
            assert!(
                Instant::now() < deadline,
                "weir did not answer /health within 60 s; log:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Partitions `deployment` owns according to `/health`.
    pub fn partitions(&self, deployment: &str) -> Vec<i64> {
        self.health()
            .and_then(|h| {
                h["deployments"][deployment]["partitions"]
                    .as_array()
                    .map(|a| a.iter().filter_map(|v| v.as_i64()).collect())
            })
            .unwrap_or_default()
    }

    /// Waits until `deployment` owns `n` partitions.
    pub fn wait_partitions(&self, deployment: &str, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.partitions(deployment).len() != n {
            assert!(
                Instant::now() < deadline,
                "{deployment} did not get {n} partitions within 60 s; log:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Weir {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Groups records by key, keeping order.
pub fn by_key(records: &[Rec]) -> BTreeMap<String, Vec<String>> {
    let mut m: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in records {
        m.entry(r.key_str().to_owned())
            .or_default()
            .push(r.value_str().to_owned());
    }
    m
}

/// One `[deployments.NAME]` table of a `weir run` config; topic names are
/// the test's (`{p}`-prefixed), the dead-letter topic `{p}NAME.dlq` unless
/// `extra` names one.
pub fn deployment(name: &str, plugin: &str, input: &str, output: &str, extra: &str) -> String {
    let dlq = if extra.contains("dead_letter_topic") {
        String::new()
    } else {
        format!("dead_letter_topic = \"{{p}}{name}.dlq\"\n")
    };
    format!(
        r#"
[deployments.{name}]
plugin = "{{plugins}}/{plugin}.wasm"
inputs = ["{{p}}{input}"]
output = "{{p}}{output}"
{dlq}{extra}
"#
    )
}

/// A `weir run` config for the deployments given (see [`Weir::start`]);
/// the host's groups, changelogs and registry are the test's.
pub fn host_config(deployments: &str) -> String {
    format!(
        r#"
[kafka]
brokers = "{{brokers}}"
group_prefix = "{{p}}weir"
[host]
state_dir = "{{state}}"
listen = "{{listen}}"
commit_interval_ms = 200
{deployments}"#
    )
}

/// Now, in ms. Record timestamps stay recent: the broker deletes records
/// older than its retention (7 days).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Values `prefix-0 .. prefix-(n-1)` under keys `k0 .. k(keys-1)`, with a
/// sequence header and increasing timestamps.
pub fn records(prefix: &str, n: usize, keys: usize) -> Vec<Rec> {
    let base = now_ms();
    (0..n)
        .map(|i| Rec {
            key: Some(format!("k{}", i % keys).into_bytes()),
            value: Some(format!("{prefix}-{i}").into_bytes()),
            headers: vec![
                ("seq".into(), Some(i.to_string().into_bytes())),
                ("null".into(), None),
            ],
            timestamp: Some(base + i as i64),
            ..Rec::default()
        })
        .collect()
}

/// Produces `all` to `topic` over about `seconds`, on a thread.
pub fn produce_slowly(
    scope: &Scope,
    topic: &str,
    all: Vec<Rec>,
    seconds: f64,
) -> std::thread::JoinHandle<()> {
    let (scope, topic) = (scope.clone(), topic.to_owned());
    std::thread::spawn(move || {
        let chunks = 50;
        let size = all.len().div_ceil(chunks);
        for chunk in all.chunks(size) {
            scope.produce(&topic, chunk);
            std::thread::sleep(Duration::from_secs_f64(seconds / chunks as f64));
        }
    })
}
