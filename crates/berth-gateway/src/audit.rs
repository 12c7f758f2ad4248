//! The audit trail: one JSON line per mutating request (anything but GET and HEAD),
//! with time, client identity, method, path, decision (and rule), trace id and the
//! status returned. Bodies and credentials are never written.
//!
//! Lines go through a bounded channel to a writer task, so a slow disk never holds a
//! request; if the channel is full the line is dropped and counted. The file is
//! rotated when it passes `max_bytes` (`audit.log` → `audit.log.1`), so it stays bounded.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tokio::sync::mpsc;

use crate::conn::PeerIdentity;

/// Where and how much to audit.
#[derive(Clone, Debug)]
pub struct AuditConfig {
    /// The JSON-lines file.
    pub path: PathBuf,
    /// Rotate when the file passes this size.
    pub max_bytes: u64,
}

/// One audited request.
#[derive(Debug, Serialize)]
pub struct AuditRecord {
    /// RFC 3339 time (UTC) when the answer was decided.
    pub time: String,
    /// Who asked.
    pub client: String,
    /// HTTP method.
    pub method: String,
    /// Path as sent (with its version prefix), without the query string.
    pub path: String,
    /// `allow`, `deny` (the policy refused), or `error` (a body berth could not read).
    pub decision: &'static str,
    /// The policy rule that decided, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// The request's `X-Trace-Id`.
    pub trace_id: String,
    /// The status returned (for upgrades, 101).
    pub status: u16,
}

/// A handle to the audit writer; cheap to clone.
#[derive(Clone, Debug)]
pub struct AuditLog {
    tx: mpsc::Sender<AuditRecord>,
    dropped: std::sync::Arc<AtomicU64>,
}

impl AuditLog {
    /// Opens (creating) the file and starts the writer task.
    pub fn start(config: AuditConfig) -> std::io::Result<Self> {
        if let Some(dir) = config.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = open(&config.path)?;
        let (tx, rx) = mpsc::channel(4096);
        std::thread::Builder::new()
            .name("berth-audit".into())
            .spawn(move || write_loop(config, file, rx))?;
        Ok(Self {
            tx,
            dropped: std::sync::Arc::default(),
        })
    }

    /// Queues a record; never waits.
    pub fn record(&self, record: AuditRecord) {
        if self.tx.try_send(record).is_err() {
            let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if n.is_power_of_two() {
                tracing::warn!(dropped = n, "audit log cannot keep up; records dropped");
            }
        }
    }
}

/// How a peer appears in the audit log.
pub fn describe_peer(peer: &PeerIdentity) -> String {
    match peer {
        PeerIdentity::Unix { uid, gid, pid } => format!("unix:uid={uid},gid={gid},pid={pid}"),
        PeerIdentity::Tls { addr, subject } => {
            format!("tls:{addr}:{}", subject.as_deref().unwrap_or("-"))
        }
        PeerIdentity::Tcp { addr } => format!("tcp:{addr}"),
        PeerIdentity::Unknown => "unknown".to_owned(),
        PeerIdentity::Internal => "internal".to_owned(),
        PeerIdentity::TenantSocket {
            tenant,
            uid,
            gid,
            pid,
        } => format!("tenant:{tenant}:uid={uid},gid={gid},pid={pid}"),
    }
}

/// Seconds since the epoch as RFC 3339 UTC, without pulling in a date crate.
pub(crate) fn rfc3339_now() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        now.subsec_millis()
    )
}

fn open(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
}

fn write_loop(config: AuditConfig, mut file: std::fs::File, mut rx: mpsc::Receiver<AuditRecord>) {
    let mut size = file.metadata().map(|m| m.len()).unwrap_or(0);
    while let Some(record) = rx.blocking_recv() {
        let Ok(mut line) = serde_json::to_vec(&record) else {
            continue;
        };
        line.push(b'\n');
        if size + line.len() as u64 > config.max_bytes && size > 0 {
            let mut rotated = config.path.clone().into_os_string();
            rotated.push(".1");
            let _ = std::fs::rename(&config.path, rotated);
            match open(&config.path) {
                Ok(f) => {
                    file = f;
                    size = 0;
                }
                Err(e) => tracing::warn!(error = %e, "reopening the audit log failed"),
            }
        }
        if file.write_all(&line).is_ok() {
            size += line.len() as u64;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_has_the_right_shape() {
        let t = rfc3339_now();
        assert_eq!(t.len(), 24, "{t}");
        assert!(
            t.starts_with("20") && t.ends_with('Z') && t.as_bytes()[10] == b'T',
            "{t}"
        );
    }

    #[tokio::test]
    async fn records_are_written_and_the_file_rotates() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let log = AuditLog::start(AuditConfig {
            path: path.clone(),
            max_bytes: 600,
        })
        .unwrap();
        for i in 0..10 {
            log.record(AuditRecord {
                time: rfc3339_now(),
                client: "unix:uid=0,gid=0,pid=1".into(),
                method: "POST".into(),
                path: format!("/v1.41/containers/c{i}/start"),
                decision: "allow",
                rule: None,
                trace_id: format!("{i:016x}"),
                status: 204,
            });
        }
        drop(log);
        let mut all = String::new();
        for _ in 0..50 {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            all = std::fs::read_to_string(&path).unwrap_or_default()
                + &std::fs::read_to_string(dir.path().join("audit.log.1")).unwrap_or_default();
            if all.lines().count() >= 5 && dir.path().join("audit.log.1").exists() {
                break;
            }
        }
        assert!(
            dir.path().join("audit.log.1").exists(),
            "rotated file missing"
        );
        assert!(std::fs::metadata(&path).unwrap().len() <= 600);
        let first: serde_json::Value = serde_json::from_str(all.lines().last().unwrap()).unwrap();
        assert_eq!(first["decision"], "allow");
        assert_eq!(first["status"], 204);
    }
}
