//! Bounded reading of untrusted files.
//!
//! Everything segloss reads (fixtures, manifests, known-failure lists, reports, an adapter's result
//! files) may come from someone careless or hostile. A file is opened without blocking, so a FIFO
//! cannot hang the open; it must then be a regular file (a FIFO, a device such as `/dev/zero`, or a
//! directory is refused); and it is read through a byte limit, so a file that is huge, or grows
//! while being read, cannot exhaust memory.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// The limit for JSON documents segloss reads whole: known-failure lists, `certify --json`
/// reports, the README the conformance matrix is spliced into. The largest of them, a report on the
/// whole corpus, is a few megabytes; 64 MiB leaves room for a corpus ten times larger.
pub const MAX_DOCUMENT_BYTES: u64 = 64 << 20;

/// Reads a whole regular file of at most `max_bytes` bytes, naming the file in every error.
///
/// The file is opened with `O_NONBLOCK` (on Unix) and checked on the opened descriptor, so what is
/// checked is what is read. At most `max_bytes + 1` bytes are ever read: a file that grows past
/// the limit after the check is still refused, never buffered whole.
pub fn read_regular_file(path: &Path, max_bytes: u64) -> Result<Vec<u8>> {
    let io_error = |error: std::io::Error| Error::Io {
        path: path.to_path_buf(),
        message: error.to_string(),
    };
    let file = open_nonblocking(path).map_err(io_error)?;
    let metadata = file.metadata().map_err(io_error)?;
    let file_type = metadata.file_type();
    if !file_type.is_file() {
        return Err(Error::NotRegularFile {
            path: path.to_path_buf(),
            found: describe(&file_type),
        });
    }
    let too_large = |size: u64| Error::FileTooLarge {
        path: path.to_path_buf(),
        size,
        limit: max_bytes,
    };
    if metadata.len() > max_bytes {
        return Err(too_large(metadata.len()));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(metadata.len()).unwrap_or(0));
    file.take(max_bytes.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(io_error)?;
    let read = bytes.len() as u64;
    if read > max_bytes {
        return Err(too_large(read));
    }
    Ok(bytes)
}

/// The lowercase hex sha256 of some bytes.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

#[cfg(unix)]
fn open_nonblocking(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
}

#[cfg(not(unix))]
fn open_nonblocking(path: &Path) -> std::io::Result<File> {
    File::open(path)
}

/// What a non-regular file is, in words.
fn describe(file_type: &std::fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if file_type.is_fifo() {
            return "FIFO";
        }
        if file_type.is_char_device() {
            return "character device";
        }
        if file_type.is_block_device() {
            return "block device";
        }
        if file_type.is_socket() {
            return "socket";
        }
    }
    if file_type.is_dir() {
        "directory"
    } else {
        "special file"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_regular_file_up_to_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ten");
        std::fs::write(&path, [7u8; 10]).unwrap();
        assert_eq!(read_regular_file(&path, 10).unwrap(), vec![7u8; 10]);
        let error = read_regular_file(&path, 9).unwrap_err();
        assert_eq!(error.kind(), "file_too_large", "{error}");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_file_larger_than_its_size_says_is_cut_at_the_limit() {
        // procfs files report size 0 and hold more: what a file growing after the check looks like.
        let error = read_regular_file(Path::new("/proc/self/status"), 16).unwrap_err();
        assert_eq!(
            error,
            Error::FileTooLarge {
                path: "/proc/self/status".into(),
                size: 17,
                limit: 16
            }
        );
    }

    #[test]
    fn refuses_directories_and_devices() {
        let dir = tempfile::tempdir().unwrap();
        let error = read_regular_file(dir.path(), 1 << 20).unwrap_err();
        assert_eq!(error.kind(), "not_regular_file", "{error}");
        assert!(error.to_string().contains("directory"), "{error}");
        #[cfg(unix)]
        {
            let error = read_regular_file(Path::new("/dev/zero"), 1 << 20).unwrap_err();
            assert!(error.to_string().contains("character device"), "{error}");
        }
    }

    #[test]
    fn a_missing_file_is_an_io_error_naming_it() {
        let error = read_regular_file(Path::new("no/such/file.npy"), 10).unwrap_err();
        assert_eq!(error.kind(), "io");
        assert!(
            error.to_string().starts_with("no/such/file.npy: "),
            "{error}"
        );
    }
}
