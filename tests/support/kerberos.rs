//! A Kerberos realm on loopback (MIT krb5's KDC from Debian's `krb5-kdc`,
//! principals and keytabs made with `kadmin.local`): the broker's service
//! principal `kafka/localhost` and the client principal `weir`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const REALM: &str = "WEIR.TEST";

pub struct Kerberos {
    /// The realm's `krb5.conf`, for every client and the broker's JVM.
    pub krb5_conf: PathBuf,
    /// The broker's keytab (`kafka/localhost@WEIR.TEST`).
    pub broker_keytab: PathBuf,
    /// The client's keytab (`weir@WEIR.TEST`), private to its owner.
    pub client_keytab: PathBuf,
    pub client_principal: String,
    kdc: Child,
}

impl Kerberos {
    /// Makes the realm in `dir` and starts its KDC.
    pub fn start(dir: &Path) -> Kerberos {
        std::fs::create_dir_all(dir).unwrap();
        let port = crate::kafka::free_port();
        let krb5_conf = dir.join("krb5.conf");
        std::fs::write(
            &krb5_conf,
            format!(
                "[libdefaults]\n default_realm = {REALM}\n dns_lookup_realm = false\n dns_lookup_kdc = false\n rdns = false\n \
                 udp_preference_limit = 1\n\n[realms]\n {REALM} = {{\n  kdc = 127.0.0.1:{port}\n }}\n\n[domain_realm]\n localhost = {REALM}\n"
            ),
        )
        .unwrap();
        let kdc_conf = dir.join("kdc.conf");
        std::fs::write(
            &kdc_conf,
            format!(
                "[kdcdefaults]\n kdc_ports = {port}\n kdc_tcp_ports = {port}\n\n[realms]\n {REALM} = {{\n  database_name = {db}\n  \
                 key_stash_file = {stash}\n  acl_file = {acl}\n  supported_enctypes = aes256-cts-hmac-sha1-96:normal aes128-cts-hmac-sha1-96:normal\n }}\n",
                db = dir.join("principal").display(),
                stash = dir.join("stash").display(),
                acl = dir.join("kadm5.acl").display(),
            ),
        )
        .unwrap();
        std::fs::write(dir.join("kadm5.acl"), "").unwrap();
        let tool = |program: &str, args: &[&str]| {
            let out = Command::new(program)
                .args(args)
                .env("KRB5_CONFIG", &krb5_conf)
                .env("KRB5_KDC_PROFILE", &kdc_conf)
                .stdin(Stdio::null())
                .output()
                .unwrap_or_else(|e| panic!("running {program} (Debian's krb5-kdc and krb5-admin-server; scripts/setup --test): {e}"));
            assert!(
                out.status.success(),
                "{program} {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let master = format!("master-{}", std::process::id());
        tool("kdb5_util", &["create", "-s", "-r", REALM, "-P", &master]);
        let (broker_keytab, client_keytab) = (dir.join("kafka.keytab"), dir.join("weir.keytab"));
        for (principal, keytab) in [
            ("kafka/localhost", &broker_keytab),
            ("weir", &client_keytab),
        ] {
            tool(
                "kadmin.local",
                &[
                    "-r",
                    REALM,
                    "-q",
                    &format!("addprinc -randkey {principal}@{REALM}"),
                ],
            );
            tool(
                "kadmin.local",
                &[
                    "-r",
                    REALM,
                    "-q",
                    &format!("ktadd -k {} {principal}@{REALM}", keytab.display()),
                ],
            );
            // Weir refuses a keytab others may read.
            std::fs::set_permissions(keytab, std::os::unix::fs::PermissionsExt::from_mode(0o600))
                .unwrap();
        }
        let mut kdc = Command::new("krb5kdc");
        kdc.args(["-n", "-r", REALM])
            .env("KRB5_CONFIG", &krb5_conf)
            .env("KRB5_KDC_PROFILE", &kdc_conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut kdc = crate::kafka::spawn(kdc);
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                kdc.try_wait().unwrap().is_none(),
                "the KDC exited while starting"
            );
            assert!(
                Instant::now() < deadline,
                "the KDC did not listen on port {port} within 30 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Kerberos {
            krb5_conf,
            broker_keytab,
            client_keytab,
            client_principal: format!("weir@{REALM}"),
            kdc,
        }
    }
}

impl Kerberos {
    /// The environment that points a process's Kerberos clients
    /// (librdkafka's `kinit`) at the realm, with tickets kept in `ccache`.
    pub fn env(&self, ccache: &Path) -> [(&'static str, String); 2] {
        [
            ("KRB5_CONFIG", self.krb5_conf.display().to_string()),
            ("KRB5CCNAME", format!("FILE:{}", ccache.display())),
        ]
    }
}

impl Drop for Kerberos {
    fn drop(&mut self) {
        let _ = self.kdc.kill();
        let _ = self.kdc.wait();
    }
}
