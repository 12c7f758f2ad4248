//! The initramfs archive: the kernel's `newc` cpio format, uncompressed (the kernel
//! unpacks it without a decompressor, and it is small: busybox and a few modules).

use std::io::{self, Write};

/// Writes `newc` entries; [`finish`](Self::finish) adds the trailer.
pub(crate) struct CpioWriter<W: Write> {
    out: W,
    ino: u32,
    written: u64,
}

impl<W: Write> CpioWriter<W> {
    pub(crate) fn new(out: W) -> Self {
        Self {
            out,
            ino: 1,
            written: 0,
        }
    }

    /// A directory.
    pub(crate) fn dir(&mut self, name: &str) -> io::Result<()> {
        self.entry(name, 0o040_755, 0, &[])
    }

    /// A regular file with `mode`'s permission bits.
    pub(crate) fn file(&mut self, name: &str, mode: u32, data: &[u8]) -> io::Result<()> {
        self.entry(name, 0o100_000 | (mode & 0o7777), 0, data)
    }

    /// A symbolic link to `target`.
    pub(crate) fn symlink(&mut self, name: &str, target: &str) -> io::Result<()> {
        self.entry(name, 0o120_777, 0, target.as_bytes())
    }

    /// A character device node.
    pub(crate) fn char_device(&mut self, name: &str, major: u32, minor: u32) -> io::Result<()> {
        self.entry(name, 0o020_600, (major << 16) | minor, &[])
    }

    /// Writes the trailer and returns the writer.
    pub(crate) fn finish(mut self) -> io::Result<W> {
        self.entry("TRAILER!!!", 0, 0, &[])?;
        self.out.flush()?;
        Ok(self.out)
    }

    /// `rdev` packs major << 16 | minor.
    fn entry(&mut self, name: &str, mode: u32, rdev: u32, data: &[u8]) -> io::Result<()> {
        let ino = self.ino;
        self.ino += 1;
        let size = u32::try_from(data.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "file over 4 GiB"))?;
        let name_len = name.len() + 1;
        let header = format!(
            "070701{ino:08x}{mode:08x}{:08x}{:08x}{nlink:08x}{:08x}{size:08x}{:08x}{:08x}{:08x}{:08x}{name_len:08x}{:08x}",
            0,
            0,
            0,
            0,
            0,
            rdev >> 16,
            rdev & 0xffff,
            0,
            nlink = if mode & 0o170_000 == 0o040_000 { 2 } else { 1 },
        );
        self.put(header.as_bytes())?;
        self.put(name.as_bytes())?;
        self.put(&[0])?;
        self.pad()?;
        self.put(data)?;
        self.pad()
    }

    fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.out.write_all(bytes)?;
        self.written += bytes.len() as u64;
        Ok(())
    }

    /// Pads to a multiple of 4 bytes.
    fn pad(&mut self) -> io::Result<()> {
        let pad = (4 - (self.written % 4) as usize) % 4;
        self.put(&[0; 3][..pad])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_newc_headers_padded_to_four_bytes() {
        let mut w = CpioWriter::new(Vec::new());
        w.dir("bin").unwrap();
        w.file("init", 0o755, b"#!/bin/sh\n").unwrap();
        let out = w.finish().unwrap();
        assert!(out.starts_with(b"070701"));
        // Header (110) + "bin\0" (4) = 114, padded to 116.
        assert_eq!(&out[116..122], b"070701");
        let text = String::from_utf8_lossy(&out);
        assert!(text.contains("init\0"));
        assert!(text.contains("#!/bin/sh\n"));
        assert!(text.contains("TRAILER!!!\0"));
        assert_eq!(out.len() % 4, 0);
    }
}
