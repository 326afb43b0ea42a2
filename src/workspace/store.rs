//! Workspace file I/O: atomic replace (temp + fsync + rename + dir fsync), fsync'd appends, and reads that
//! refuse what is not a regular file and name the line and byte of text that is not UTF-8.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::Path;

use super::WorkspaceError;

/// The byte order mark some Windows editors write first: it carries nothing, so readers skip it.
pub const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Reads a whole file. Anything but a regular file (a FIFO, a device, a folder) is refused before it is
/// opened: reading a FIFO nobody writes to would block forever.
pub fn read_regular(path: &Path) -> std::io::Result<Vec<u8>> {
    let meta = fs::metadata(path)?;
    if !meta.is_file() {
        let what = file_kind(&meta.file_type());
        let msg = format!("not a regular file ({what}); tunebench reads workspace files whole");
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, msg));
    }
    fs::read(path)
}

/// Reads a text file: a leading BOM is skipped; bytes that are not UTF-8 are an error naming the line and
/// the byte within it.
pub fn read_text(path: &Path) -> std::io::Result<String> {
    let mut bytes = read_regular(path)?;
    if bytes.starts_with(BOM) {
        bytes.drain(..BOM.len());
    }
    String::from_utf8(bytes).map_err(|e| {
        let msg = not_utf8(e.as_bytes(), e.utf8_error().valid_up_to());
        std::io::Error::new(std::io::ErrorKind::InvalidData, msg)
    })
}

/// "line L, byte B (0xNN) is not UTF-8" for the bad byte at `offset` of `bytes` (both 1-based).
pub fn not_utf8(bytes: &[u8], offset: usize) -> String {
    let (line, byte) = line_and_byte(bytes, offset);
    let value = bytes.get(offset).map_or(String::new(), |b| format!(" (0x{b:02X})"));
    format!("line {line}, byte {byte}{value} is not UTF-8")
}

/// 1-based line of `offset` in `bytes`, and 1-based byte within that line.
pub fn line_and_byte(bytes: &[u8], offset: usize) -> (usize, usize) {
    let before = &bytes[..offset.min(bytes.len())];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let start = before.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    (line, before.len() - start + 1)
}

fn file_kind(t: &fs::FileType) -> &'static str {
    if t.is_dir() {
        return "a folder";
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if t.is_fifo() {
            return "a FIFO";
        }
        if t.is_socket() {
            return "a socket";
        }
        if t.is_char_device() || t.is_block_device() {
            return "a device";
        }
    }
    "not a plain file"
}

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
    result.map_err(|e| WorkspaceError::io(path, e))?;
    remove_stale_temps(dir);
    Ok(())
}

/// Removes the temporary files (`.NAME.PID.N.tmp`) that writers killed mid-write left in `dir`. A file is
/// stale when its process is gone (where /proc tells) or, elsewhere, when it is an hour old; this process's
/// own are left alone (another of its threads may be writing). Best effort: a failure only leaves litter.
pub fn remove_stale_temps(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    let me = std::process::id();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = temp_owner(&name) else { continue };
        let gone = if Path::new("/proc/self").exists() {
            !Path::new(&format!("/proc/{pid}")).exists()
        } else {
            let age = entry.metadata().and_then(|m| m.modified()).ok().and_then(|t| t.elapsed().ok());
            age.is_some_and(|a| a > std::time::Duration::from_secs(3600))
        };
        if pid != me && gone {
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// The writer's process id when `name` is one of `write_atomic`'s temporary files.
fn temp_owner(name: &str) -> Option<u32> {
    let rest = name.strip_prefix('.')?.strip_suffix(".tmp")?;
    let mut parts = rest.rsplitn(3, '.');
    let (n, pid, target) = (parts.next()?, parts.next()?, parts.next()?);
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    (digits(n) && digits(pid) && !target.is_empty()).then(|| pid.parse().ok())?
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
    fn reads_skip_a_bom_name_the_bad_byte_and_refuse_a_fifo() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.toml");
        fs::write(&p, b"\xEF\xBB\xBFname = 1\n").unwrap();
        assert_eq!(read_text(&p).unwrap(), "name = 1\n");
        fs::write(&p, b"a = 1\nb = \"x\xFFy\"\n").unwrap();
        let err = read_text(&p).unwrap_err().to_string();
        assert_eq!(err, "line 2, byte 7 (0xFF) is not UTF-8");
        #[cfg(unix)]
        {
            let fifo = dir.path().join("fifo");
            let made = std::process::Command::new("mkfifo").arg(&fifo).status().unwrap();
            assert!(made.success());
            let err = read_text(&fifo).unwrap_err().to_string();
            assert!(err.contains("not a regular file (a FIFO)"), "{err}");
        }
    }

    #[test]
    fn a_write_removes_temps_a_killed_writer_left_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        // No process has pid 4194304 or more on Linux (its pid_max limit); elsewhere an old mtime would do.
        let stale = [".train.jsonl.4194305.0.tmp", ".workspace.toml.4194306.12.tmp"];
        let mine = format!(".valid.jsonl.{}.3.tmp", std::process::id());
        let keep = ["notes.tmp", ".x.tmp", "train.jsonl.1.2.tmp", mine.as_str()];
        for n in stale.iter().chain(&keep) {
            fs::write(dir.path().join(n), b"x").unwrap();
        }
        write_atomic(&dir.path().join("test.jsonl"), b"one").unwrap();
        let mut names: Vec<String> =
            fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        names.sort();
        let mut want: Vec<String> = keep.iter().map(|s| s.to_string()).chain(["test.jsonl".to_string()]).collect();
        want.sort();
        assert_eq!(names, want);
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
