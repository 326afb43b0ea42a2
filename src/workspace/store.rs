//! Durable file writes: atomic replace (temp + fsync + rename + dir fsync) and fsync'd appends.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::Path;

use super::WorkspaceError;

/// Replaces `path` with `bytes` so that a crash leaves either the old or the new file, never a mix.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), WorkspaceError> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(|e| WorkspaceError::io(dir, e))?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    // Unique per call: two writers in one process (worker threads) must not share a temporary file.
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = dir.join(format!(".{name}.{}.{n}.tmp", std::process::id()));
    let result = (|| -> std::io::Result<()> {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        // The rename itself is only durable once the directory entry is flushed.
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(|e| WorkspaceError::io(path, e))
}

/// Appends one line (a newline is added) and fsyncs before returning. A file whose last line lacks its
/// newline (a hand edit, a torn write) gets one first, so the new line never joins it; returns whether it did.
pub fn append_line(path: &Path, line: &str) -> Result<bool, WorkspaceError> {
    if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(dir).map_err(|e| WorkspaceError::io(dir, e))?;
    }
    let io = |e| WorkspaceError::io(path, e);
    let mut f = OpenOptions::new().create(true).read(true).append(true).open(path).map_err(io)?;
    let unterminated = match f.metadata().map_err(io)?.len() {
        0 => false,
        n => {
            use std::io::{Read, Seek, SeekFrom};
            let mut last = [0u8];
            f.seek(SeekFrom::Start(n - 1)).and_then(|_| f.read_exact(&mut last)).map_err(io)?;
            last[0] != b'\n'
        }
    };
    let mut buf = String::with_capacity(line.len() + 2);
    if unterminated {
        buf.push('\n');
    }
    buf.push_str(line);
    buf.push('\n');
    f.write_all(buf.as_bytes()).and_then(|()| f.sync_data()).map_err(io)?;
    Ok(unterminated)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.txt");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(fs::read_to_string(&p).unwrap(), "two");
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names.len(), 1, "temp file left behind: {names:?}");
    }

    #[test]
    fn append_adds_lines() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("runs.jsonl");
        append_line(&p, "{\"a\":1}").unwrap();
        append_line(&p, "{\"a\":2}").unwrap();
        assert_eq!(fs::read_to_string(&p).unwrap(), "{\"a\":1}\n{\"a\":2}\n");
        // A last line without its newline is ended first, never joined.
        fs::write(&p, "{\"a\":1}").unwrap();
        assert!(append_line(&p, "{\"a\":2}").unwrap());
        assert_eq!(fs::read_to_string(&p).unwrap(), "{\"a\":1}\n{\"a\":2}\n");
    }
}
