//! Zero-copy byte relay between two sockets: `splice(2)` from one socket into a pipe
//! and from the pipe into the other, so payload never enters user space. Used by the
//! gateway's upgraded and hijacked sessions and by the host's port forwards.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

use nix::fcntl::{fcntl, splice, FcntlArg, OFlag, SpliceFFlags};

use crate::LeanSocket;

/// A pipe starts at the kernel's default capacity (64 KiB: idle and interactive
/// streams never need more) and grows to this once a splice fills it, so that a bulk
/// stream moves what the socket holds in fewer calls.
const BULK_PIPE: usize = 1024 * 1024;

/// Moves everything `src` sends into `dst` until `src` reaches EOF (the caller decides
/// what EOF means for `dst`: usually a half-close). The pipe is made on the first
/// bytes, so an idle stream holds none.
pub async fn splice_to_eof(src: &LeanSocket, dst: &LeanSocket) -> io::Result<()> {
    let flags = SpliceFFlags::SPLICE_F_MOVE | SpliceFFlags::SPLICE_F_NONBLOCK;
    let mut pipe: Option<SplicePipe> = None;
    loop {
        if pipe.is_none() {
            src.readable().await?;
        }
        let p = match &mut pipe {
            Some(p) => p,
            None => pipe.insert(SplicePipe::new()?),
        };
        let want = p.size;
        // The pipe is empty here, so a short splice means the socket was drained.
        let n = src
            .read_with_len(want, |fd| {
                Ok(splice(fd, None, &p.write, None, want, flags)?)
            })
            .await?;
        if n == 0 {
            return Ok(());
        }
        let mut in_pipe = n;
        while in_pipe > 0 {
            in_pipe -= dst
                .write_with(|fd| Ok(splice(&p.read, None, fd, None, in_pipe, flags)?))
                .await?;
        }
        if n == p.size {
            p.grow();
        }
    }
}

/// A non-blocking pipe: one direction's splice buffer.
struct SplicePipe {
    read: OwnedFd,
    write: OwnedFd,
    /// Its capacity in bytes.
    size: usize,
}

impl SplicePipe {
    fn new() -> io::Result<Self> {
        let (read, write) = nix::unistd::pipe2(OFlag::O_NONBLOCK | OFlag::O_CLOEXEC)?;
        let size = fcntl(write.as_raw_fd(), FcntlArg::F_GETPIPE_SZ)
            .ok()
            .and_then(|n| usize::try_from(n).ok())
            .unwrap_or(64 * 1024);
        Ok(Self { read, write, size })
    }

    /// To [`BULK_PIPE`] if the kernel allows (`/proc/sys/fs/pipe-max-size`, and the
    /// per-user pipe limits for an unprivileged berth); else it stays as it is.
    fn grow(&mut self) {
        if self.size >= BULK_PIPE {
            return;
        }
        if let Some(size) = i32::try_from(BULK_PIPE)
            .ok()
            .and_then(|want| fcntl(self.write.as_raw_fd(), FcntlArg::F_SETPIPE_SZ(want)).ok())
            .and_then(|got| usize::try_from(got).ok())
        {
            self.size = size;
        }
    }
}
