//! A minimal writer of the cpio "newc" format, the one the kernel unpacks as an initramfs:
//! directories, regular files, symlinks and device nodes, all owned by root.

/// An archive being built in memory.
#[derive(Default)]
pub struct Archive {
    bytes: Vec<u8>,
    next_ino: u32,
}

const DIR: u32 = 0o040_000;
const FILE: u32 = 0o100_000;
const SYMLINK: u32 = 0o120_000;
const CHAR_DEV: u32 = 0o020_000;

impl Archive {
    pub fn dir(&mut self, path: &str) {
        self.entry(path, DIR | 0o755, &[], (0, 0));
    }

    pub fn file(&mut self, path: &str, mode: u32, data: &[u8]) {
        self.entry(path, FILE | mode, data, (0, 0));
    }

    pub fn symlink(&mut self, path: &str, target: &str) {
        self.entry(path, SYMLINK | 0o777, target.as_bytes(), (0, 0));
    }

    pub fn char_dev(&mut self, path: &str, mode: u32, major: u32, minor: u32) {
        self.entry(path, CHAR_DEV | mode, &[], (major, minor));
    }

    /// The archive with its trailer.
    pub fn finish(mut self) -> Vec<u8> {
        self.entry("TRAILER!!!", 0, &[], (0, 0));
        self.bytes
    }

    fn entry(&mut self, path: &str, mode: u32, data: &[u8], (rmajor, rminor): (u32, u32)) {
        self.next_ino += 1;
        let name_len = path.len() + 1; // with its NUL
        let fields = [
            self.next_ino,
            mode,
            0, // uid
            0, // gid
            if mode & 0o170_000 == DIR { 2 } else { 1 },
            0, // mtime
            data.len() as u32,
            0, // devmajor
            0, // devminor
            rmajor,
            rminor,
            name_len as u32,
            0, // check
        ];
        self.bytes.extend_from_slice(b"070701");
        for field in fields {
            self.bytes
                .extend_from_slice(format!("{field:08x}").as_bytes());
        }
        self.bytes.extend_from_slice(path.as_bytes());
        self.bytes.push(0);
        self.pad();
        self.bytes.extend_from_slice(data);
        self.pad();
    }

    /// Header+name and data each end on a 4-byte boundary.
    fn pad(&mut self) {
        while !self.bytes.len().is_multiple_of(4) {
            self.bytes.push(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_newc_headers_padded_to_four_bytes() {
        let mut cpio = Archive::default();
        cpio.file("init", 0o755, b"#!/bin/sh\n");
        let bytes = cpio.finish();
        assert_eq!(&bytes[..6], b"070701");
        // mode, then the file size (10) and the name size ("init" and its NUL).
        assert_eq!(&bytes[14..22], b"000081ed");
        assert_eq!(&bytes[54..62], b"0000000a");
        assert_eq!(&bytes[94..102], b"00000005");
        // 110-byte header + 5-byte name, padded to 116; then the data.
        assert_eq!(&bytes[116..126], b"#!/bin/sh\n");
        assert!(bytes.len().is_multiple_of(4));
        assert!(bytes.windows(10).any(|w| w == b"TRAILER!!!"));
    }
}
