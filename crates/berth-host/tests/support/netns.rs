//! A private network namespace for the test process, without a name under
//! /var/run/netns: one parked thread unshares it and keeps it alive, and it disappears
//! with the process, so a killed test leaves nothing behind.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The namespace's path (`/proc/<pid>/task/<tid>/ns/net`), with `lo` up.
pub(crate) fn path() -> &'static Path {
    static NETNS: OnceLock<PathBuf> = OnceLock::new();
    NETNS.get_or_init(|| {
        assert!(
            nix::unistd::geteuid().is_root(),
            "these tests create network namespaces and need root"
        );
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let path = nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
                .map(|()| {
                    PathBuf::from(format!(
                        "/proc/{}/task/{}/ns/net",
                        std::process::id(),
                        nix::unistd::gettid()
                    ))
                })
                .map_err(|e| e.to_string());
            tx.send(path).unwrap();
            loop {
                std::thread::park();
            }
        });
        let path = rx.recv().unwrap().expect("unshare(CLONE_NEWNET)");
        let net = format!("--net={}", path.display());
        let status = Command::new("nsenter")
            .args([net.as_str(), "ip", "link", "set", "lo", "up"])
            .status()
            .expect("nsenter (util-linux) and ip (iproute2) are needed");
        assert!(status.success(), "bringing lo up in the test namespace");
        path
    })
}

/// Runs `f` on a thread inside the namespace: sockets it creates stay in it.
pub(crate) fn inside<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    let path = path();
    std::thread::scope(|s| {
        s.spawn(|| {
            let ns = std::fs::File::open(path).unwrap();
            nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            f()
        })
        .join()
        .unwrap()
    })
}
