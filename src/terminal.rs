//! Terminal hygiene: enter raw/alt-screen/mouse/paste/keyboard modes and restore every one on quit, error, panic
//! and the signals that end the process (SIGTERM, SIGINT, SIGHUP).

use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};

use ratatui::crossterm::event::{
    DisableBracketedPaste, DisableMouseCapture, EnableBracketedPaste, EnableMouseCapture, KeyboardEnhancementFlags,
    PopKeyboardEnhancementFlags, PushKeyboardEnhancementFlags,
};
use ratatui::crossterm::terminal::{self, EnterAlternateScreen, LeaveAlternateScreen};
use ratatui::crossterm::{cursor, execute};
use ratatui::{Terminal, backend::CrosstermBackend};

pub type Tui = Terminal<CrosstermBackend<io::Stdout>>;

static ACTIVE: AtomicBool = AtomicBool::new(false);
static KEYBOARD_FLAGS: AtomicBool = AtomicBool::new(false);

/// Owns the terminal modes; dropping it restores them.
pub struct TerminalGuard {
    pub terminal: Tui,
}

impl TerminalGuard {
    pub fn enter() -> io::Result<Self> {
        install_panic_hook();
        install_signal_handler();
        terminal::enable_raw_mode()?;
        ACTIVE.store(true, Ordering::SeqCst);
        // Any later step failing must not leave the terminal raw: undo what was done so far.
        Self::set_modes().inspect_err(|_| restore())
    }

    fn set_modes() -> io::Result<Self> {
        let mut out = io::stdout();
        execute!(out, EnterAlternateScreen, EnableMouseCapture, EnableBracketedPaste)?;
        // Ctrl+Enter is only distinguishable with the kitty protocol; F5 works everywhere.
        if terminal::supports_keyboard_enhancement().unwrap_or(false) {
            execute!(out, PushKeyboardEnhancementFlags(KeyboardEnhancementFlags::DISAMBIGUATE_ESCAPE_CODES))?;
            KEYBOARD_FLAGS.store(true, Ordering::SeqCst);
        }
        let terminal = Terminal::new(CrosstermBackend::new(io::stdout()))?;
        Ok(Self { terminal })
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        restore();
    }
}

/// Undoes every mode `enter` set; idempotent, safe from a panic hook.
pub fn restore() {
    if !ACTIVE.swap(false, Ordering::SeqCst) {
        return;
    }
    let mut out = io::stdout();
    if KEYBOARD_FLAGS.swap(false, Ordering::SeqCst) {
        let _ = execute!(out, PopKeyboardEnhancementFlags);
    }
    let _ = execute!(out, DisableBracketedPaste, DisableMouseCapture, LeaveAlternateScreen, cursor::Show);
    let _ = terminal::disable_raw_mode();
    let _ = out.flush();
}

/// A panic on the UI thread restores the terminal before the report prints. Panics elsewhere (backend
/// threads, whose panics become a lane's `Failed`) go to the log only, so they never scribble on the screen.
fn install_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let on_ui = std::thread::current().name() == Some("main");
            tracing::error!(thread = ?std::thread::current().name(), "panic: {info}");
            if on_ui || !ACTIVE.load(Ordering::SeqCst) {
                restore();
                previous(info);
            }
        }));
    });
}

/// SIGTERM, SIGINT and SIGHUP restore the terminal, then end the process the way the signal would have, so
/// the exit status stays 128+n for shells and supervisors. The handler only wakes a thread: restoring writes to
/// stdout and takes locks, which a signal handler itself must not do. Raw mode clears ISIG, so Ctrl+C reaches
/// the TUI as a key; SIGINT here comes from `kill`.
#[cfg(unix)]
fn install_signal_handler() {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let mut signals = match signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP]) {
            Ok(s) => s,
            Err(e) => return tracing::warn!("cannot watch termination signals: {e}"),
        };
        let watcher = std::thread::Builder::new().name("signals".into()).spawn(move || {
            if let Some(signal) = signals.forever().next() {
                tracing::info!(signal, "ending on a signal");
                restore();
                // Resets the default action and raises the signal again: the process ends by it.
                let _ = signal_hook::low_level::emulate_default_handler(signal);
                std::process::exit(128 + signal);
            }
        });
        if let Err(e) = watcher {
            tracing::warn!("cannot watch termination signals: {e}");
        }
    });
}

#[cfg(not(unix))]
fn install_signal_handler() {}

/// Puts `text` on the system clipboard through the terminal (OSC 52), which works over SSH and tmux.
pub fn osc52_copy(text: &str) -> io::Result<()> {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(text);
    let mut out = io::stdout();
    write!(out, "\x1b]52;c;{b64}\x07")?;
    out.flush()
}
