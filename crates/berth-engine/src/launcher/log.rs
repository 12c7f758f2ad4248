//! `dockerd.log`: one file per run, the previous run kept as `dockerd.log.1`.
//!
//! Rotation happens only when berth spawns dockerd, so the log is bounded by what one
//! run writes (dockerd at the default `info` level writes little). An adopted dockerd
//! keeps writing to the file it was given.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom};
use std::path::PathBuf;

/// How much of the end of the log `tail` reads: plenty for 20 dockerd lines.
const TAIL_WINDOW: u64 = 64 * 1024;

/// The log file of one machine's dockerd.
#[derive(Debug, Clone)]
pub(crate) struct DockerdLog {
    path: PathBuf,
}

impl DockerdLog {
    pub(crate) fn new(path: PathBuf) -> Self {
        Self { path }
    }

    pub(crate) fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// Moves a non-empty log to `<log>.1`, replacing the one before.
    pub(crate) fn rotate(&self) -> io::Result<()> {
        match std::fs::metadata(&self.path) {
            Ok(m) if m.len() > 0 => std::fs::rename(&self.path, self.previous()),
            Ok(_) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Opens (creating) the log for appending: `O_APPEND`, so concurrent writers (a
    /// dying dockerd and a new one) never overwrite each other.
    pub(crate) fn open_append(&self) -> io::Result<File> {
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
    }

    /// The last `lines` lines, or an empty string when there is no log.
    pub(crate) fn tail(&self, lines: usize) -> String {
        read_tail(&self.path, lines).unwrap_or_default()
    }

    fn previous(&self) -> PathBuf {
        let mut name = self.path.clone().into_os_string();
        name.push(".1");
        PathBuf::from(name)
    }
}

fn read_tail(path: &std::path::Path, lines: usize) -> io::Result<String> {
    if lines == 0 {
        return Ok(String::new());
    }
    let mut file = File::open(path)?;
    let len = file.metadata()?.len();
    let start = len.saturating_sub(TAIL_WINDOW);
    file.seek(SeekFrom::Start(start))?;
    let mut bytes = Vec::with_capacity((len - start) as usize);
    file.read_to_end(&mut bytes)?;
    let text = String::from_utf8_lossy(&bytes);
    let mut all: Vec<&str> = text.lines().collect();
    if start > 0 && !all.is_empty() {
        // The first line is cut by the window.
        all.remove(0);
    }
    let from = all.len().saturating_sub(lines);
    Ok(all[from..].join("\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_returns_the_last_lines() {
        let dir = tempfile::tempdir().unwrap();
        let log = DockerdLog::new(dir.path().join("dockerd.log"));
        assert_eq!(log.tail(20), "");
        let text: String = (1..=30).map(|i| format!("line {i}\n")).collect();
        std::fs::write(dir.path().join("dockerd.log"), text).unwrap();
        let tail = log.tail(3);
        assert_eq!(tail, "line 28\nline 29\nline 30");
        assert_eq!(log.tail(100).lines().count(), 30);
        assert_eq!(log.tail(0), "");
    }

    #[test]
    fn tail_of_a_big_log_skips_the_cut_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dockerd.log");
        let text: String = (0..20_000).map(|i| format!("line {i:05}\n")).collect();
        std::fs::write(&path, text).unwrap();
        let tail = DockerdLog::new(path).tail(usize::MAX);
        assert!(tail.lines().all(|l| l.len() == 10), "no partial line");
        assert!(tail.ends_with("line 19999"));
    }

    #[test]
    fn rotate_keeps_one_previous_run() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dockerd.log");
        let log = DockerdLog::new(path.clone());
        log.rotate().unwrap();
        std::fs::write(&path, "run 1\n").unwrap();
        log.rotate().unwrap();
        std::fs::write(&path, "run 2\n").unwrap();
        log.rotate().unwrap();
        assert!(!path.exists());
        let previous = std::fs::read_to_string(dir.path().join("dockerd.log.1")).unwrap();
        assert_eq!(previous, "run 2\n");
    }
}
