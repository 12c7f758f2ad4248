use std::ffi::OsString;
use std::path::{Path, PathBuf};

use super::*;

fn launcher(state_dir: &Path, extra: &[&str]) -> DockerdLauncher {
    let programs = Programs {
        dockerd: PathBuf::from("/usr/sbin/dockerd"),
        nsenter: PathBuf::from("/usr/bin/nsenter"),
        ip: PathBuf::from("/usr/sbin/ip"),
        search_path: OsString::from("/usr/sbin:/usr/bin"),
    };
    DockerdLauncher::new(
        "be-t",
        MachineLayout::new(state_dir),
        programs,
        PathBuf::from("/var/run/netns/berth-be-t"),
        extra.iter().map(|s| s.to_string()).collect(),
    )
}

#[test]
fn dockerd_runs_in_the_netns_with_every_root_and_socket_explicit() {
    let argv: Vec<String> = launcher(Path::new("/m"), &["--debug"])
        .argv()
        .into_iter()
        .map(|a| a.into_string().unwrap())
        .collect();
    assert_eq!(
        argv,
        [
            "/usr/bin/nsenter",
            "--net=/var/run/netns/berth-be-t",
            "--",
            "/usr/sbin/dockerd",
            "--data-root",
            "/m/data",
            "--exec-root",
            "/m/exec",
            "--pidfile",
            "/m/dockerd.pid",
            "--config-file",
            "/m/daemon.json",
            "--host",
            "unix:///m/docker.sock",
            "--debug",
        ]
    );
}

#[test]
fn long_state_dirs_are_rejected_before_any_socket_is_made() {
    assert!(
        MachineLayout::new(Path::new("/var/lib/berth/machines/default"))
            .check_socket_lengths()
            .is_ok()
    );
    let long = format!("/{}", "x".repeat(80));
    let err = MachineLayout::new(Path::new(&long))
        .check_socket_lengths()
        .unwrap_err();
    let message = err.to_string();
    assert!(message.contains("containerd.sock.ttrpc"), "{message}");
    assert!(message.contains("107"), "{message}");
}

#[test]
fn prepare_creates_private_dirs_and_an_empty_daemon_json() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("m");
    let launcher = launcher(&state, &[]);
    launcher.prepare().unwrap();
    assert!(state.join("data").is_dir());
    assert!(state.join("exec").is_dir());
    let mode = std::fs::metadata(&state).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700);
    assert_eq!(
        std::fs::read_to_string(state.join("daemon.json")).unwrap(),
        "{}\n"
    );
    // An edited daemon.json is the operator's: kept.
    std::fs::write(state.join("daemon.json"), "{\"debug\": true}").unwrap();
    launcher.prepare().unwrap();
    assert_eq!(
        std::fs::read_to_string(state.join("daemon.json")).unwrap(),
        "{\"debug\": true}"
    );
}

#[test]
fn stale_pidfile_and_socket_are_removed() {
    let dir = tempfile::tempdir().unwrap();
    let launcher = launcher(dir.path(), &[]);
    std::fs::write(dir.path().join("dockerd.pid"), "12345").unwrap();
    launcher.remove_stale_files().unwrap();
    launcher.remove_stale_files().unwrap();
    assert!(!dir.path().join("dockerd.pid").exists());
}
