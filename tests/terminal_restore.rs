//! Terminal hygiene under a real pseudo-terminal: a panic on the UI thread, and SIGTERM, SIGINT and SIGHUP,
//! restore every mode the TUI set; a signal still ends the process with status 128+n.
//! Runs itself as a child inside `script` (util-linux) to get a tty; harness = false so it is a plain program.

use std::process::Command;

use tunebench::terminal::TerminalGuard;

const CHILD: &str = "TUNEBENCH_TERMINAL_RESTORE_CHILD";

fn main() {
    match std::env::var(CHILD).as_deref() {
        Ok("panic") => return child(),
        Ok(signal) if !signal.is_empty() => return signalled_child(signal),
        _ => {}
    }
    let Ok(which) = Command::new("sh").args(["-c", "command -v script"]).output() else { return skip("no sh") };
    if !which.status.success() {
        return skip("`script` (util-linux) is not installed");
    }
    let bytes = under_script("panic", "");
    let pos = |needle: &str| bytes.find(needle).unwrap_or_else(|| panic!("missing {needle:?} in {bytes:?}"));
    // Entered: alternate screen, mouse capture, bracketed paste.
    let entered = pos("\x1b[?1049h").max(pos("\x1b[?1000h")).max(pos("\x1b[?2004h"));
    // Restored after the panic, in this order of importance.
    let rfind = |needle: &str| bytes.rfind(needle).unwrap_or_else(|| panic!("missing {needle:?} in {bytes:?}"));
    for leave in ["\x1b[?2004l", "\x1b[?1000l", "\x1b[?1049l", "\x1b[?25h"] {
        assert!(rfind(leave) > entered, "{leave:?} not sent after entering: {bytes:?}");
    }
    assert!(bytes.contains("RAW_AFTER_PANIC=false"), "raw mode still on after the panic: {bytes:?}");
    assert!(bytes.contains("boom on the UI thread"), "the panic report is printed: {bytes:?}");
    println!("terminal_restore: ok (alt screen, mouse, paste, cursor and raw mode restored on panic)");
    for (signal, n) in [("TERM", 15), ("INT", 2), ("HUP", 1)] {
        signal_restores(signal, n);
    }
}

/// The child under `script`, followed by shell commands that report on it from the same terminal.
fn under_script(mode: &str, then: &str) -> String {
    let me = std::env::current_exe().unwrap();
    let out = Command::new("script")
        .args(["-qec", &format!("{} --child{then}", me.display()), "/dev/null"])
        .env(CHILD, mode)
        .env("TERM", "xterm-256color")
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The child sends itself the signal with `kill` (raw mode clears ISIG, so no key would); the shell then
/// prints the child's exit status and the terminal's settings.
fn signal_restores(signal: &str, n: i32) {
    let bytes = under_script(signal, "; echo STATUS=$?; stty -a");
    let entered = bytes.find("\x1b[?1049h").unwrap_or_else(|| panic!("SIG{signal}: never entered: {bytes:?}"));
    for leave in ["\x1b[?2004l", "\x1b[?1000l", "\x1b[?1049l", "\x1b[?25h"] {
        assert!(bytes.rfind(leave).is_some_and(|p| p > entered), "SIG{signal}: {leave:?} not sent: {bytes:?}");
    }
    assert!(!bytes.contains("SURVIVED"), "SIG{signal} did not end the process: {bytes:?}");
    assert!(bytes.contains(&format!("STATUS={}", 128 + n)), "SIG{signal}: exit status is not {}: {bytes:?}", 128 + n);
    let modes: Vec<&str> = bytes.split_whitespace().collect();
    for mode in ["echo", "icanon", "isig"] {
        assert!(modes.contains(&mode), "SIG{signal}: the terminal is left without {mode}: {bytes:?}");
    }
    println!("terminal_restore: ok (SIG{signal}: modes restored, exit status {})", 128 + n);
}

fn signalled_child(signal: &str) {
    let _guard = TerminalGuard::enter().expect("a tty under script");
    let pid = std::process::id().to_string();
    let sent = Command::new("kill").args([&format!("-{signal}"), &pid]).status().unwrap();
    assert!(sent.success());
    std::thread::sleep(std::time::Duration::from_secs(5));
    println!("SURVIVED");
}

fn child() {
    let guard = TerminalGuard::enter().expect("a tty under script");
    let caught = std::panic::catch_unwind(|| {
        let _keep = &guard;
        panic!("boom on the UI thread");
    });
    assert!(caught.is_err());
    let raw = ratatui::crossterm::terminal::is_raw_mode_enabled().unwrap_or(true);
    println!("RAW_AFTER_PANIC={raw}");
    std::mem::forget(guard);
}

fn skip(why: &str) {
    assert!(std::env::var_os("CI").is_none(), "terminal_restore cannot run in CI: {why}");
    println!("terminal_restore: skipped outside CI: {why}");
}
