//! A schema registry with Confluent's REST API on loopback
//! (`scripts/registry`: Apicurio Registry, fetched once from Maven Central
//! into the cache), at [`Registry::url`].
//!
//! Its JVM takes seconds to start, so the tests of one binary share one
//! ([`registry`]) and keep apart by subject name (a [`crate::kafka::Scope`]'s
//! topics give subjects of their own). Tests that stop or restart a
//! registry start their own ([`Registry::start`], [`Registry::durable`]).
//!
//! Processes are spawned as the brokers of [`crate::kafka`] are (they die
//! with the test binary), stopped by pid when their handle drops (the
//! shared registry when the binary exits).
//!
//! Apicurio's Confluent API, as 3.3.3 answers it:
//! - `POST /subjects/S/versions` `{"schema": ..}` gives `{"id": N}`; the
//!   same schema under another subject gets the same id. An incompatible
//!   schema is `409` `{"error_code": 409, "message": ..}`, an unparsable
//!   one `422` with `error_code` 42201.
//! - `GET /schemas/ids/N` gives `{"schema": ..}` for Avro, with
//!   `"schemaType"` only for JSON and PROTOBUF (a missing one means AVRO);
//!   `GET /schemas/ids/N/versions` gives `[{"subject": S, "version": V}]`;
//!   an unknown id is `404` `{"error_code": 40403, "message": "Schema N not
//!   found."}`.
//! - `POST /compatibility/subjects/S/versions/latest` gives
//!   `{"is_compatible": bool}` (no messages, even with `?verbose=true`).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::kafka::{free_port, spawn};

/// How long a registry may take to answer after its JVM starts (about 4 s
/// on an idle machine, 8 s on a busy one).
const START_TIMEOUT: Duration = Duration::from_secs(120);

/// How long fetching the registry (about 160 MB) once may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(600);

/// A running schema registry.
pub struct Registry {
    child: Option<Child>,
    pub port: u16,
    management_port: u16,
    /// Its log, and its database when durable.
    dir: tempfile::TempDir,
    /// Schemas are kept in an H2 database in `dir` that outlives the
    /// process, not in memory.
    durable: bool,
}

/// This test binary's registry: started on first use, stopped (by pid)
/// when the binary exits.
pub fn registry() -> &'static Registry {
    Registry::shared()
}

impl Registry {
    /// See [`registry`].
    pub fn shared() -> &'static Registry {
        static SHARED: OnceLock<Registry> = OnceLock::new();
        SHARED.get_or_init(|| {
            extern "C" fn stop_shared() {
                if let Some(r) = SHARED.get() {
                    if let Some(c) = &r.child {
                        // SAFETY: kill and waitpid on our own child's pid.
                        unsafe {
                            libc::kill(c.id() as i32, libc::SIGKILL);
                            libc::waitpid(c.id() as i32, std::ptr::null_mut(), 0);
                        }
                    }
                    let _ = std::fs::remove_dir_all(r.dir.path());
                }
            }
            let r = Registry::start();
            // SAFETY: registers a plain function; it runs once at exit.
            unsafe { libc::atexit(stop_shared) };
            r
        })
    }

    /// A registry of the caller's own that keeps schemas in memory: a
    /// [`Registry::restart`] starts it empty (ids count from 1 again).
    /// Stopped when dropped.
    pub fn start() -> Registry {
        Registry::new(false)
    }

    /// A registry of the caller's own that keeps schemas in a database
    /// on disk: a [`Registry::restart`], even after SIGKILL, serves every
    /// schema, id and version registered before. Stopped when dropped.
    pub fn durable() -> Registry {
        Registry::new(true)
    }

    fn new(durable: bool) -> Registry {
        fetch();
        let port = free_port();
        let mut management_port = free_port();
        while management_port == port {
            management_port = free_port();
        }
        let dir = tempfile::Builder::new()
            .prefix("weir-registry-")
            .tempdir()
            .unwrap();
        let mut r = Registry {
            child: None,
            port,
            management_port,
            dir,
            durable,
        };
        r.launch();
        r
    }

    /// The base URL of its Confluent-compatible API, as clients take it
    /// (`http://127.0.0.1:PORT/apis/ccompat/v7`).
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/apis/ccompat/v7", self.port)
    }

    /// Kills the registry (SIGKILL) and waits for it: its port refuses
    /// connections until [`Registry::restart`].
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: kill(2) takes plain integers; the child is ours, not
            // yet reaped.
            unsafe { libc::kill(c.id() as i32, libc::SIGKILL) };
            let _ = c.wait();
        }
    }

    /// Stops the registry if it runs and starts it again on the same port,
    /// and waits until it answers. An in-memory registry
    /// ([`Registry::start`]) comes back empty; a [`Registry::durable`] one
    /// with its schemas.
    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }

    /// Freezes the registry (SIGSTOP): connections are accepted and nothing
    /// is answered, as a registry that hangs, until [`Registry::thaw`].
    pub fn freeze(&mut self) {
        let c = self.child.as_ref().expect("running");
        // SAFETY: kill(2) on our own, unreaped child.
        unsafe { libc::kill(c.id() as i32, libc::SIGSTOP) };
    }

    pub fn thaw(&mut self) {
        let c = self.child.as_ref().expect("running");
        // SAFETY: kill(2) on our own, unreaped child.
        unsafe { libc::kill(c.id() as i32, libc::SIGCONT) };
    }

    /// Everything the registry has logged (across restarts).
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    fn launch(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("registry.log"))
            .unwrap();
        let mut cmd = Command::new(crate::repo().join("scripts/registry"));
        cmd.args([
            "--port",
            &self.port.to_string(),
            "--management-port",
            &self.management_port.to_string(),
            "--compatibility",
            "BACKWARD",
        ]);
        if self.durable {
            cmd.arg("--data").arg(self.dir.path().join("data"));
        }
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        self.child = Some(spawn(cmd));
        self.wait_ready();
        // The script sets the global rule; set it again and read it back,
        // so a test never runs on Apicurio's default (no rule, while its
        // compatibility checks still refuse).
        let http = client();
        let config = format!("{}/config", self.url());
        let put = http
            .put(&config)
            .header("Content-Type", "application/vnd.schemaregistry.v1+json")
            .body(r#"{"compatibility":"BACKWARD"}"#)
            .send()
            .unwrap_or_else(|e| panic!("PUT {config}: {e}; log:\n{}", self.log_text()));
        assert!(
            put.status().is_success(),
            "PUT {config}: {}; log:\n{}",
            put.status(),
            self.log_text()
        );
        let got: serde_json::Value = http.get(&config).send().unwrap().json().unwrap();
        assert_eq!(
            got["compatibilityLevel"], "BACKWARD",
            "GET {config} after setting BACKWARD: {got}"
        );
    }

    /// Waits until `GET /subjects` answers 200.
    fn wait_ready(&mut self) {
        let http = client();
        let subjects = format!("{}/subjects", self.url());
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                self.child = None;
                panic!(
                    "the schema registry exited ({status}) while starting; log:\n{}",
                    self.log_text()
                );
            }
            if http
                .get(&subjects)
                .send()
                .is_ok_and(|r| r.status() == reqwest::StatusCode::OK)
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the schema registry did not answer {subjects} within {START_TIMEOUT:?}; log:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
    }
}

/// An HTTP client for loopback: no proxy, bounded requests.
fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// Fetches the registry into the cache (once per test binary; a no-op
/// when `scripts/setup --test` has), so its download never counts against
/// a registry's start.
fn fetch() {
    static FETCHED: OnceLock<()> = OnceLock::new();
    FETCHED.get_or_init(|| {
        let log: PathBuf =
            std::env::temp_dir().join(format!("weir-registry-fetch-{}.log", std::process::id()));
        let out = std::fs::File::create(&log).unwrap();
        let mut cmd = Command::new(crate::repo().join("scripts/registry"));
        cmd.arg("--fetch-only")
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out);
        let mut child = spawn(cmd);
        let deadline = Instant::now() + FETCH_TIMEOUT;
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                // SAFETY: kill(2) on our own, unreaped child.
                unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
                let _ = child.wait();
                panic!(
                    "scripts/registry --fetch-only took over {FETCH_TIMEOUT:?}; log:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let _ = std::fs::remove_file(&log);
        assert!(
            status.success(),
            "scripts/registry --fetch-only failed ({status}):\n{text}"
        );
    });
}
