//! Listen: bind the Unix socket safely, accept connections, drain on shutdown.
//!
//! A socket file left by a crashed berth is replaced only if nothing answers on it; a
//! live one belongs to another server and binding fails with a clear error instead of
//! stealing it. The file is removed on clean shutdown, if it is still ours.

use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use tokio::net::UnixListener;

use crate::error::ListenError;

/// A bound Unix socket that removes its file when dropped.
#[derive(Debug)]
pub struct BoundSocket {
    listener: UnixListener,
    path: PathBuf,
    inode: u64,
}

impl BoundSocket {
    /// Binds `path` with `mode` (e.g. `0o660`), creating the parent directory.
    pub fn bind(path: &Path, mode: u32) -> Result<Self, ListenError> {
        let err = |what: &str, e: io::Error| ListenError::new(path, what, e);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| err("creating its directory", e))?;
        }
        if std::fs::symlink_metadata(path).is_ok() {
            match std::os::unix::net::UnixStream::connect(path) {
                Ok(_) => {
                    return Err(ListenError::in_use(path));
                }
                Err(_) => {
                    std::fs::remove_file(path).map_err(|e| err("removing a stale socket", e))?;
                }
            }
        }
        let listener = UnixListener::bind(path).map_err(|e| err("binding", e))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
            .map_err(|e| err("setting its mode", e))?;
        let inode = std::fs::metadata(path)
            .map_err(|e| err("reading it back", e))?
            .ino();
        Ok(Self {
            listener,
            path: path.to_owned(),
            inode,
        })
    }

    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn listener(&self) -> &UnixListener {
        &self.listener
    }
}

impl Drop for BoundSocket {
    fn drop(&mut self) {
        // Only remove the file if it is still the socket we bound (a second server may
        // have replaced a file that an operator deleted by hand).
        if std::fs::metadata(&self.path).is_ok_and(|m| m.ino() == self.inode) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}
