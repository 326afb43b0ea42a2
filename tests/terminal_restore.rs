//! Terminal hygiene under a real pseudo-terminal: a panic on the UI thread restores every mode the TUI set.
//! Runs itself as a child inside `script` (util-linux) to get a tty; harness = false so it is a plain program.

use std::process::Command;

use tunebench::terminal::TerminalGuard;

const CHILD: &str = "TUNEBENCH_TERMINAL_RESTORE_CHILD";

fn main() {
    if std::env::var_os(CHILD).is_some() {
        child();
        return;
    }
    let Ok(which) = Command::new("sh").args(["-c", "command -v script"]).output() else { return skip("no sh") };
    if !which.status.success() {
        return skip("`script` (util-linux) is not installed");
    }
    let me = std::env::current_exe().unwrap();
    let out = Command::new("script")
        .args(["-qec", &format!("{} --child", me.display()), "/dev/null"])
        .env(CHILD, "1")
        .env("TERM", "xterm-256color")
        .output()
        .unwrap();
    let bytes = String::from_utf8_lossy(&out.stdout).into_owned();
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
