//! Reading the files users point the program at (the policy, set files, `--file` lists)
//! within bounds: only a regular file or standard input, at most [`MAX_FILE_BYTES`], no line
//! over [`MAX_LINE_BYTES`]. A device, FIFO or directory is refused before a byte is read, and
//! an over-long line stops the read where it is found, so `/dev/zero` as a set file costs
//! nothing and a 100 MB line costs a megabyte.

use std::fs::{File, FileType, OpenOptions};
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

/// The largest file read: room for several million prefixes in a set file.
pub const MAX_FILE_BYTES: u64 = 256 << 20;
/// The longest line read: a policy's inline list of tens of thousands of addresses.
pub const MAX_LINE_BYTES: usize = 1 << 20;

/// Why a file was not read. The caller names the file.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("not a regular file but {0}; give a regular file (or '-' for standard input)")]
    NotRegular(&'static str),
    #[error("larger than {} MiB, the bound for a file", MAX_FILE_BYTES >> 20)]
    TooBig,
    #[error("line {line} is longer than {} MiB, the bound for a line", MAX_LINE_BYTES >> 20)]
    LongLine { line: usize },
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Reads a regular file within the bounds.
pub fn read_file(path: &Path) -> Result<Vec<u8>, ReadError> {
    // Non-blocking, so opening a FIFO without a writer returns at once (and is refused).
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(ReadError::NotRegular(kind(meta.file_type())));
    }
    if meta.len() > MAX_FILE_BYTES {
        return Err(ReadError::TooBig);
    }
    read_bounded(file_reader(file))
}

/// Reads standard input within the bounds.
pub fn read_stdin() -> Result<Vec<u8>, ReadError> {
    read_bounded(std::io::stdin().lock())
}

fn file_reader(file: File) -> impl Read {
    // The size was checked, but a file may grow while it is read: `take` keeps the bound.
    file.take(MAX_FILE_BYTES + 1)
}

fn read_bounded(mut input: impl Read) -> Result<Vec<u8>, ReadError> {
    let mut out = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    // Bytes since the last newline, and that line's number.
    let (mut line, mut line_len) = (1usize, 0usize);
    loop {
        let n = match input.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        };
        if (out.len() + n) as u64 > MAX_FILE_BYTES {
            return Err(ReadError::TooBig);
        }
        let read = &chunk[..n];
        let mut start = 0;
        for newline in memchr::memchr_iter(b'\n', read) {
            if line_len + (newline - start) > MAX_LINE_BYTES {
                return Err(ReadError::LongLine { line });
            }
            (line, line_len, start) = (line + 1, 0, newline + 1);
        }
        line_len += n - start;
        if line_len > MAX_LINE_BYTES {
            return Err(ReadError::LongLine { line });
        }
        out.extend_from_slice(read);
    }
    Ok(out)
}

fn kind(t: FileType) -> &'static str {
    if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_socket() {
        "a socket"
    } else {
        "a special file"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bounded(bytes: &[u8]) -> Result<Vec<u8>, ReadError> {
        read_bounded(bytes)
    }

    #[test]
    fn special_files_are_refused_before_reading() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        let cases = [
            (
                Path::new("/dev/zero"),
                "not a regular file but a character device",
            ),
            (Path::new("/dev/urandom"), "a character device"),
            (fifo.as_path(), "not a regular file but a FIFO"),
            (dir.path(), "not a regular file but a directory"),
        ];
        for (path, want) in cases {
            let err = read_file(path).unwrap_err().to_string();
            assert!(err.contains(want), "{}: {err}", path.display());
        }
    }

    #[test]
    fn a_sparse_file_over_the_bound_is_refused_by_its_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sparse");
        let file = File::create(&path).unwrap();
        file.set_len(MAX_FILE_BYTES + 1).unwrap();
        assert!(matches!(read_file(&path), Err(ReadError::TooBig)));
        file.set_len(10).unwrap();
        assert_eq!(read_file(&path).unwrap(), vec![0; 10]);
    }

    #[test]
    fn lines_up_to_the_bound_are_read_and_a_longer_one_is_named() {
        let mut ok = b"first\n".to_vec();
        ok.extend(std::iter::repeat_n(b'x', MAX_LINE_BYTES));
        ok.extend_from_slice(b"\nlast");
        assert_eq!(bounded(&ok).unwrap(), ok);
        let mut long = ok.clone();
        long.insert(10, b'x');
        assert!(matches!(
            bounded(&long),
            Err(ReadError::LongLine { line: 2 })
        ));
        // A line that spans many chunks without a newline at all.
        let endless = vec![b'y'; 3 * MAX_LINE_BYTES];
        assert!(matches!(
            bounded(&endless),
            Err(ReadError::LongLine { line: 1 })
        ));
    }
}
