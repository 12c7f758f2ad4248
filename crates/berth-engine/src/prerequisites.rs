//! The programs a managed engine needs, found once in `EngineSupervisor::new`.
//!
//! dockerd itself finds `containerd`, `runc` and `iptables` on its `PATH`, so the
//! search path we check is also the `PATH` dockerd gets: berth's own `PATH` with the
//! standard sbin directories appended (a non-login root shell may lack them).

use std::ffi::{OsStr, OsString};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::EngineError;

/// Directories appended to `PATH` when missing: Debian puts dockerd, runc and ip in sbin.
const STANDARD_DIRS: &[&str] = &[
    "/usr/local/sbin",
    "/usr/local/bin",
    "/usr/sbin",
    "/usr/bin",
    "/sbin",
    "/bin",
];

/// Programs dockerd runs by itself (not by path from us), with their Debian packages.
const HELPERS: &[(&str, &str)] = &[("containerd", "containerd"), ("runc", "runc")];

/// Absolute paths of the programs berth runs, and the `PATH` dockerd gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Programs {
    /// dockerd, resolved.
    pub(crate) dockerd: PathBuf,
    /// nsenter (util-linux): enters the machine's network namespace only.
    pub(crate) nsenter: PathBuf,
    /// ip (iproute2): creates the network namespace.
    pub(crate) ip: PathBuf,
    /// The `PATH` dockerd runs with.
    pub(crate) search_path: OsString,
}

impl Programs {
    /// Finds every program, or names the first missing one with its Debian package.
    /// `path_var` is berth's `PATH` (a parameter so tests need not change the
    /// environment).
    pub(crate) fn find(dockerd: &Path, path_var: Option<&OsStr>) -> Result<Self, EngineError> {
        Self::find_in(dockerd, search_path(path_var))
    }

    /// Finds every program in exactly `search_path`.
    fn find_in(dockerd: &Path, search_path: OsString) -> Result<Self, EngineError> {
        let dirs: Vec<PathBuf> = std::env::split_paths(&search_path).collect();
        let searched = search_path.to_string_lossy().into_owned();
        let locate = |program: &Path, package: &'static str| {
            resolve(program, &dirs).ok_or_else(|| EngineError::MissingPrerequisite {
                program: program.display().to_string(),
                searched: if program.components().count() > 1 {
                    program.display().to_string()
                } else {
                    searched.clone()
                },
                package,
            })
        };
        let dockerd = locate(dockerd, "docker.io")?;
        for (helper, package) in HELPERS {
            locate(Path::new(helper), package)?;
        }
        Ok(Self {
            dockerd,
            nsenter: locate(Path::new("nsenter"), "util-linux")?,
            ip: locate(Path::new("ip"), "iproute2")?,
            search_path,
        })
    }
}

impl Programs {
    /// Finds one more program on the same search path, or names its Debian package.
    pub(crate) fn find_extra(
        &self,
        program: &str,
        package: &'static str,
    ) -> Result<PathBuf, EngineError> {
        let dirs: Vec<PathBuf> = std::env::split_paths(&self.search_path).collect();
        resolve(Path::new(program), &dirs).ok_or_else(|| EngineError::MissingPrerequisite {
            program: program.to_owned(),
            searched: self.search_path.to_string_lossy().into_owned(),
            package,
        })
    }
}

/// `path_var` with the standard directories appended when absent.
fn search_path(path_var: Option<&OsStr>) -> OsString {
    let mut dirs: Vec<PathBuf> = path_var
        .map(|p| std::env::split_paths(p).collect())
        .unwrap_or_default();
    for dir in STANDARD_DIRS {
        if !dirs.iter().any(|d| d == Path::new(dir)) {
            dirs.push(PathBuf::from(dir));
        }
    }
    std::env::join_paths(dirs).unwrap_or_else(|_| OsString::from(STANDARD_DIRS.join(":")))
}

/// A path with a directory part is taken as is; a bare name is searched in `dirs`.
fn resolve(program: &Path, dirs: &[PathBuf]) -> Option<PathBuf> {
    if program.components().count() > 1 {
        return is_executable(program).then(|| program.to_path_buf());
    }
    dirs.iter()
        .map(|dir| dir.join(program))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_bin(dir: &Path, names: &[&str]) {
        for name in names {
            let path = dir.join(name);
            std::fs::write(&path, "#!/bin/sh\n").unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
    }

    #[test]
    fn absolute_dockerd_that_does_not_exist_names_docker_io() {
        let err = Programs::find(Path::new("/nonexistent/dockerd"), None).unwrap_err();
        let message = err.to_string();
        assert!(err.is_missing_prerequisite());
        assert!(message.contains("docker.io"), "{message}");
        assert!(message.contains("/nonexistent/dockerd"), "{message}");
    }

    #[test]
    fn search_path_gains_the_sbin_directories() {
        let path = search_path(Some(OsStr::new("/opt/x")));
        let dirs: Vec<PathBuf> = std::env::split_paths(&path).collect();
        assert_eq!(dirs[0], PathBuf::from("/opt/x"));
        assert!(dirs.contains(&PathBuf::from("/usr/sbin")));
    }

    #[test]
    fn programs_found_first_in_path_win() {
        let dir = tempfile::tempdir().unwrap();
        fake_bin(
            dir.path(),
            &["dockerd", "containerd", "runc", "nsenter", "ip"],
        );
        let programs = Programs::find(Path::new("dockerd"), Some(dir.path().as_os_str())).unwrap();
        assert_eq!(programs.dockerd, dir.path().join("dockerd"));
        assert_eq!(programs.ip, dir.path().join("ip"));
    }

    #[test]
    fn each_missing_program_names_its_debian_package() {
        let all = ["dockerd", "containerd", "runc", "nsenter", "ip"];
        let packages = ["docker.io", "containerd", "runc", "util-linux", "iproute2"];
        for (missing, package) in all.iter().zip(packages) {
            let dir = tempfile::tempdir().unwrap();
            let present: Vec<&str> = all.iter().copied().filter(|p| p != missing).collect();
            fake_bin(dir.path(), &present);
            let err = Programs::find_in(Path::new("dockerd"), dir.path().as_os_str().to_owned())
                .unwrap_err();
            let message = err.to_string();
            assert!(
                message.starts_with(&format!("{missing} not found")),
                "{message}"
            );
            assert!(
                message.contains(&format!("apt-get install {package}")),
                "{message}"
            );
        }
    }

    #[test]
    fn non_executable_files_do_not_count() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dockerd");
        std::fs::write(&path, "").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(resolve(&path, &[]).is_none());
        assert!(resolve(Path::new("dockerd"), &[dir.path().to_path_buf()]).is_none());
    }
}
