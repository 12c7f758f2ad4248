//! Test images, made locally: no registry is reachable.

use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Writes `busybox.tar` (a rootfs from Debian's busybox-static with every applet linked,
/// `/www/index.html`, `/etc/passwd`) under `dir`, for `docker import`.
pub fn busybox_rootfs_tar(dir: &Path) -> io::Result<PathBuf> {
    let tar = dir.join("busybox.tar");
    if tar.exists() {
        return Ok(tar);
    }
    let root = tempfile::tempdir_in(dir)?;
    let r = root.path();
    for sub in ["bin", "etc", "tmp", "www"] {
        std::fs::create_dir_all(r.join(sub))?;
    }
    std::fs::copy("/bin/busybox", r.join("bin/busybox")).map_err(|e| {
        io::Error::other(format!(
            "/bin/busybox: {e} (apt-get install busybox-static)"
        ))
    })?;
    let list = Command::new("/bin/busybox").arg("--list").output()?;
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        if applet != "busybox" {
            let _ = std::os::unix::fs::symlink("busybox", r.join("bin").join(applet));
        }
    }
    std::fs::write(r.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n")?;
    std::fs::write(r.join("etc/group"), "root:x:0:\n")?;
    std::fs::write(r.join("www/index.html"), "hello\n")?;
    let status = Command::new("tar")
        .arg("-C")
        .arg(r)
        .arg("-cf")
        .arg(&tar)
        .arg(".")
        .status()?;
    if !status.success() {
        return Err(io::Error::other("tar failed"));
    }
    Ok(tar)
}
