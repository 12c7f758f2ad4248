//! What makes a [`TestEngine`] a remote machine: certificates made with `openssl` for a
//! mutual-TLS listener, and a real `sshd` (Debian's openssh-server) in the engine's
//! namespace with keys and a `known_hosts` made at test time.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{watchdog, TestEngine};

/// A CA and the certificates it signed, in a directory: `ca.pem`, the server's
/// `server-cert.pem`/`server-key.pem` (naming `server_ip`), and a client's
/// `cert.pem`/`key.pem` (so the directory has the `DOCKER_CERT_PATH` layout).
#[derive(Debug)]
pub struct TestCerts {
    dir: PathBuf,
}

impl TestCerts {
    /// Makes a fresh CA and its certificates in `dir` (created).
    pub fn make(dir: &Path, server_ip: Ipv4Addr) -> io::Result<TestCerts> {
        watchdog::require(&[("openssl", "openssl")])?;
        std::fs::create_dir_all(dir)?;
        let script = r#"set -e
key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }
key ca-key.pem
openssl req -x509 -new -key ca-key.pem -out ca.pem -days 2 -subj /CN=berth-test-ca \
  -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign
sign() { # name subject extensions
  key "$1-key.pem"
  openssl req -new -key "$1-key.pem" -out "$1.csr" -subj "/CN=$2"
  printf '%b' "$3" > "$1.ext"
  openssl x509 -req -in "$1.csr" -CA ca.pem -CAkey ca-key.pem -CAcreateserial -days 2 \
    -out "$1-cert.pem" -extfile "$1.ext" 2>/dev/null
}
sign server engine "subjectAltName=IP:$SERVER_IP\nextendedKeyUsage=serverAuth\n"
sign client berth "extendedKeyUsage=clientAuth\n"
mv client-cert.pem cert.pem; mv client-key.pem key.pem
"#;
        let out = Command::new("sh")
            .args(["-c", script])
            .current_dir(dir)
            .env("SERVER_IP", server_ip.to_string())
            .stdin(Stdio::null())
            .output()?;
        if !out.status.success() {
            return Err(io::Error::other(format!(
                "making certificates: {}",
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        Ok(TestCerts {
            dir: dir.to_owned(),
        })
    }

    /// The directory (`ca.pem`, `cert.pem`, `key.pem`, `server-*.pem`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A file of the directory.
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// dockerd's arguments for a mutual-TLS listener on port 2376 of every address.
    pub fn dockerd_args(&self) -> Vec<String> {
        vec![
            "--tlsverify".into(),
            format!("--tlscacert={}", self.file("ca.pem").display()),
            format!("--tlscert={}", self.file("server-cert.pem").display()),
            format!("--tlskey={}", self.file("server-key.pem").display()),
            "-H".into(),
            "tcp://0.0.0.0:2376".into(),
        ]
    }
}

/// An sshd in an engine's network namespace, on port 22 of its link address, letting
/// root in with one key only. Its files sit in `<engine dir>/data-sshd`, so the engine's
/// cleanup (which kills what names `<dir>/data` on its command line) ends it too.
#[derive(Debug)]
pub struct TestSshd {
    dir: PathBuf,
    netns: String,
    addr: Ipv4Addr,
    child: Option<Child>,
}

impl TestSshd {
    /// Makes a host key, a client key (`id_ed25519`), `authorized_keys`, a
    /// `known_hosts` naming `addr`, and starts sshd; returns once it accepts.
    /// `DOCKER_HOST` is set for sessions, so `docker system dial-stdio` finds the engine.
    pub fn start(engine: &TestEngine, addr: Ipv4Addr) -> io::Result<TestSshd> {
        watchdog::require(&[("ssh-keygen", "openssh-client"), ("ssh", "openssh-client")])?;
        if !Path::new("/usr/sbin/sshd").exists() {
            return Err(io::Error::other(
                "/usr/sbin/sshd is missing: install openssh-server (scripts/deps.sh)",
            ));
        }
        // sshd's privilege separation directory.
        std::fs::create_dir_all("/run/sshd")?;
        let dir = engine.dir().join("data-sshd");
        std::fs::create_dir_all(&dir)?;
        for (key, comment) in [("host_ed25519", "host"), ("id_ed25519", "berth")] {
            let _ = std::fs::remove_file(dir.join(key));
            let out = Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
                .arg(dir.join(key))
                .output()?;
            if !out.status.success() {
                return Err(io::Error::other(format!(
                    "ssh-keygen: {}",
                    String::from_utf8_lossy(&out.stderr)
                )));
            }
        }
        std::fs::copy(dir.join("id_ed25519.pub"), dir.join("authorized_keys"))?;
        let host_pub = std::fs::read_to_string(dir.join("host_ed25519.pub"))?;
        std::fs::write(dir.join("known_hosts"), format!("{addr} {host_pub}"))?;
        std::fs::write(
            dir.join("sshd_config"),
            format!(
                "ListenAddress {addr}:22
HostKey {dir}/host_ed25519
PidFile {dir}/sshd.pid
AuthorizedKeysFile {dir}/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
AllowStreamLocalForwarding yes
AllowTcpForwarding local
X11Forwarding no
MaxSessions 200
MaxStartups 200
SetEnv DOCKER_HOST={docker_host} PATH=/usr/local/bin:/usr/bin:/bin
",
                dir = dir.display(),
                docker_host = engine.host(),
            ),
        )?;
        let mut sshd = TestSshd {
            dir,
            netns: engine.netns().to_owned(),
            addr,
            child: None,
        };
        sshd.restart()?;
        Ok(sshd)
    }

    /// Starts sshd again (after [`TestSshd::kill`]); returns once it accepts.
    pub fn restart(&mut self) -> io::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("sshd.log"))?;
        let child = Command::new("nsenter")
            .arg(format!("--net=/var/run/netns/{}", self.netns))
            .args(["/usr/sbin/sshd", "-D", "-e", "-f"])
            .arg(self.dir.join("sshd_config"))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        self.child = Some(child);
        let started = Instant::now();
        while TcpStream::connect_timeout(
            &SocketAddr::from((self.addr, 22)),
            Duration::from_millis(200),
        )
        .is_err()
        {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                return Err(io::Error::other(format!(
                    "sshd exited ({status}): {}",
                    crate::engine::tail(&self.dir.join("sshd.log"), 10)
                )));
            }
            if started.elapsed() > Duration::from_secs(10) {
                return Err(io::Error::other("sshd did not accept within 10 s"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// Kills every sshd of the namespace: the listener and the per-connection ones,
    /// so open SSH connections drop as when the host goes away.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let Ok(ns) = std::fs::metadata(format!("/var/run/netns/{}", self.netns)) else {
            return;
        };
        use std::os::unix::fs::MetadataExt;
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            let same_ns = std::fs::metadata(format!("/proc/{pid}/ns/net"))
                .is_ok_and(|m| m.ino() == ns.ino() && m.dev() == ns.dev());
            let is_sshd = std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|c| c.trim() == "sshd");
            if same_ns && is_sshd {
                watchdog::signal(pid, nix::sys::signal::Signal::SIGKILL);
            }
        }
    }

    /// `root@<addr>`'s endpoint.
    pub fn endpoint(&self) -> String {
        format!("ssh://root@{}", self.addr)
    }

    /// The client's private key.
    pub fn identity_file(&self) -> PathBuf {
        self.dir.join("id_ed25519")
    }

    /// A known_hosts file holding the host's key.
    pub fn known_hosts(&self) -> PathBuf {
        self.dir.join("known_hosts")
    }

    /// Where sshd keeps its files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for TestSshd {
    fn drop(&mut self) {
        self.kill();
    }
}
