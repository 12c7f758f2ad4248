//! End to end: berth's TCP listener with TLS and client certificates (dockerd's
//! `--tlsverify` flags), driven by the real docker CLI with `--tlsverify`, and policy
//! rules by certificate subject. Certificates are made with `openssl` at test time: a
//! CA, a server certificate for 127.0.0.1, clients `CN=admin` and `CN=reader`, and a
//! client signed by a CA berth does not trust.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use berth_test::{procfs, BerthProcess, DockerCli, TestEngine};

const IMAGE: &str = "busybox:latest";
const BERTH: &str = env!("CARGO_BIN_EXE_berth");

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("running openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA (`NAME.pem`, `NAME-key.pem`).
fn make_ca(dir: &Path, name: &str) {
    let key = format!("{name}-key.pem");
    let cert = format!("{name}.pem");
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &cert,
            "-days",
            "2",
            "-subj",
            &format!("/CN={name}"),
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    );
}

/// A certificate `NAME.pem` / `NAME-key.pem` for `/CN=NAME`, signed by `ca`.
fn make_cert(dir: &Path, ca: &str, name: &str, ext: &str) {
    let key = format!("{name}-key.pem");
    let csr = format!("{name}.csr");
    let cert = format!("{name}.pem");
    let extfile = format!("{name}.ext");
    std::fs::write(dir.join(&extfile), ext).unwrap();
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &csr,
            "-subj",
            &format!("/CN={name}"),
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &format!("{ca}.pem"),
            "-CAkey",
            &format!("{ca}-key.pem"),
            "-CAcreateserial",
            "-out",
            &cert,
            "-days",
            "2",
            "-extfile",
            &extfile,
        ],
    );
}

struct Setup {
    _engine: TestEngine,
    berth: BerthProcess,
    certs: tempfile::TempDir,
    addr: String,
}

const POLICY: &str = r#"
default = "allow"

[[rule]]
name = "reader-reads-only"
action = "deny"
clients = ["tls:CN=reader"]
methods = ["POST", "PUT", "DELETE"]
"#;

fn setup() -> Setup {
    let engine = TestEngine::with_busybox(&format!("bt-tls-{}", std::process::id()), IMAGE)
        .unwrap_or_else(|e| panic!("{e}"));
    let certs = tempfile::tempdir().unwrap();
    let dir = certs.path();
    make_ca(dir, "ca");
    make_ca(dir, "rogue-ca");
    make_cert(
        dir,
        "ca",
        "server",
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
    );
    for (ca, name) in [("ca", "admin"), ("ca", "reader"), ("rogue-ca", "rogue")] {
        make_cert(dir, ca, name, "extendedKeyUsage=clientAuth\n");
    }
    std::fs::write(dir.join("policy.toml"), POLICY).unwrap();
    // A free port: bound, read, released (no fixed ports).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let path = |f: &str| dir.join(f).display().to_string();
    let tcp = format!("tcp://{addr}");
    let (ca, cert, key, policy, state, audit) = (
        path("ca.pem"),
        path("server.pem"),
        path("server-key.pem"),
        path("policy.toml"),
        path("state"),
        path("audit.log"),
    );
    let berth = BerthProcess::start(
        Path::new(BERTH),
        &engine.host(),
        &[
            "-H",
            &tcp,
            "--tlsverify",
            "--tlscacert",
            &ca,
            "--tlscert",
            &cert,
            "--tlskey",
            &key,
            "--policy",
            &policy,
            "--state-dir",
            &state,
            "--audit-log",
            &audit,
        ],
    )
    .unwrap_or_else(|e| panic!("starting berth: {e}"));
    Setup {
        _engine: engine,
        berth,
        certs,
        addr,
    }
}

impl Setup {
    fn cert(&self, name: &str) -> PathBuf {
        self.certs.path().join(name)
    }

    /// `docker --tlsverify --tlscacert ca.pem [--tlscert C --tlskey K] -H tcp://… args…`
    fn docker(&self, client: Option<&str>, args: &[&str]) -> Output {
        assert!(
            procfs::alive(self.berth.pid()),
            "{}",
            self.berth.stderr_log()
        );
        let config = self.certs.path().join("docker-config");
        let mut cmd = Command::new(DockerCli::binary());
        cmd.env_remove("DOCKER_HOST")
            .env_remove("DOCKER_CONTEXT")
            .env_remove("DOCKER_TLS_VERIFY")
            .env("DOCKER_CONFIG", &config)
            .arg("--tlsverify")
            .arg("--tlscacert")
            .arg(self.cert("ca.pem"));
        if let Some(name) = client {
            cmd.arg("--tlscert")
                .arg(self.cert(&format!("{name}.pem")))
                .arg("--tlskey")
                .arg(self.cert(&format!("{name}-key.pem")));
        }
        cmd.arg("-H")
            .arg(format!("tcp://{}", self.addr))
            .args(args)
            .output()
            .expect("running docker")
    }
}

fn text(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn tls_clients_need_a_certificate_from_the_ca_and_rules_follow_the_subject() {
    let s = setup();

    // A valid client certificate: the docker CLI works over TLS.
    let out = s.docker(
        Some("admin"),
        &["version", "--format", "{{.Server.Version}}"],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(!String::from_utf8_lossy(&out.stdout).trim().is_empty());
    let out = s.docker(Some("admin"), &["create", "--name", "bt-tls-admin", IMAGE]);
    assert!(out.status.success(), "{}", text(&out));
    let out = s.docker(Some("admin"), &["rm", "bt-tls-admin"]);
    assert!(out.status.success(), "{}", text(&out));

    // Rules by certificate subject: the reader reads, and may not create.
    let out = s.docker(Some("reader"), &["ps", "-a"]);
    assert!(out.status.success(), "{}", text(&out));
    let out = s.docker(
        Some("reader"),
        &["create", "--name", "bt-tls-reader", IMAGE],
    );
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("berth policy: rule \"reader-reads-only\" denies POST /containers/create"),
        "{}",
        text(&out)
    );

    // No client certificate, or one from a CA berth does not trust: refused.
    let out = s.docker(None, &["version"]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("Server:"),
        "{}",
        text(&out)
    );
    let out = s.docker(Some("rogue"), &["ps"]);
    assert!(!out.status.success(), "{}", text(&out));

    // The audit log names the TLS subject with the decision.
    let audit = std::fs::read_to_string(s.certs.path().join("audit.log")).unwrap();
    let lines: Vec<serde_json::Value> = audit
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        lines.iter().any(|l| l["decision"] == "deny"
            && l["rule"] == "reader-reads-only"
            && l["client"].as_str().unwrap().ends_with(":CN=reader")),
        "{audit}"
    );
    assert!(
        lines.iter().any(|l| l["decision"] == "allow"
            && l["status"] == 201
            && l["client"].as_str().unwrap().ends_with(":CN=admin")),
        "{audit}"
    );
}
