//! Text that others wrote (a server's error body, a malformed chunk, a model's answer) made safe to show on a
//! terminal: characters that would act on the terminal are shown escaped, never sent.

use std::borrow::Cow;
use std::fmt::Write as _;

/// Whether a character acts on a terminal instead of being shown: C0 controls (ESC starts every escape
/// sequence, BEL ends OSC titles), DEL, C1 controls (U+009B is a CSI on many terminals) and the bidi overrides
/// and isolates, which reorder the text after them.
pub fn is_unsafe(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// `text` with every unsafe character escaped (`\x1b`, `\x7f`, `\u{9b}`, `\u{202e}`); line breaks and tabs are
/// kept, and CRLF becomes a plain line break. Borrowed, without copying, when there is nothing to escape.
pub fn escape(text: &str) -> Cow<'_, str> {
    escape_with(text, true)
}

/// As `escape`, for text shown on one line: line breaks and tabs are escaped too.
pub fn escape_line(text: &str) -> Cow<'_, str> {
    escape_with(text, false)
}

fn escape_with(text: &str, keep_lines: bool) -> Cow<'_, str> {
    let kept = |c: char| keep_lines && (c == '\n' || c == '\t');
    if !text.chars().any(|c| is_unsafe(c) && !kept(c)) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\r' && keep_lines && chars.peek() == Some(&'\n') {
            continue;
        }
        if !is_unsafe(c) || kept(c) {
            out.push(c);
        } else if c.is_ascii() {
            let _ = write!(out, "\\x{:02x}", u32::from(c));
        } else {
            let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
        }
    }
    Cow::Owned(out)
}

/// A line of JSON with the unsafe characters serde_json leaves raw (DEL, C1 controls, bidi overrides; it escapes
/// C0 itself) written as `\uXXXX`: the same JSON value, and nothing in it acts on a terminal. Such characters
/// can only be inside strings, so no other part of the line changes.
pub fn json(line: String) -> String {
    if !line.chars().any(is_unsafe) {
        return line;
    }
    let mut out = String::with_capacity(line.len() + 16);
    for c in line.chars() {
        if is_unsafe(c) {
            let _ = write!(out, "\\u{:04x}", u32::from(c));
        } else {
            out.push(c);
        }
    }
    out
}

/// One screen cell's symbol, safe to send: an unsafe character alone in a cell becomes its visible picture
/// (`␛` for ESC, `␡` for DEL, `�` otherwise; a tab a space), and unsafe characters joined to a visible one
/// are dropped. The last line of defence under every widget; text shown on purpose is escaped before layout.
pub fn cell_symbol(symbol: &str) -> Option<String> {
    if !symbol.chars().any(is_unsafe) {
        return None;
    }
    let kept: String = symbol.chars().filter(|c| !is_unsafe(*c)).collect();
    if !kept.is_empty() {
        return Some(kept);
    }
    let c = symbol.chars().next().unwrap_or(' ');
    Some(
        match u32::from(c) {
            0x09 => ' ',
            n @ 0..=0x1f => char::from_u32(0x2400 + n).unwrap_or('\u{fffd}'),
            0x7f => '\u{2421}',
            _ => '\u{fffd}',
        }
        .to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_actions_are_shown_escaped() {
        let hostile = "ok\x1b]0;pwned\x07\x1b[2J\u{9b}31m\u{202e}txt.exe\x7f\r\nnext\tcol";
        assert_eq!(escape(hostile), "ok\\x1b]0;pwned\\x07\\x1b[2J\\u{9b}31m\\u{202e}txt.exe\\x7f\nnext\tcol");
        assert_eq!(escape_line("a\nb\tc\rd"), "a\\x0ab\\x09c\\x0dd");
        assert!(matches!(escape("plain: ünïcode, emoji 🤷, RTL text שלום"), Cow::Borrowed(_)));
        for c in ['\u{202a}', '\u{202b}', '\u{202c}', '\u{202d}', '\u{2066}', '\u{2067}', '\u{2068}', '\u{2069}'] {
            assert!(is_unsafe(c) && !escape(&c.to_string()).contains(c), "{c:?}");
        }
    }

    #[test]
    fn json_stays_the_same_value() {
        let v = serde_json::json!({"output": "a\x1b[2J\u{9b}b\u{202e}c\x7f"});
        let line = json(v.to_string());
        assert!(!line.chars().any(is_unsafe), "{line}");
        assert_eq!(serde_json::from_str::<serde_json::Value>(&line).unwrap(), v);
    }

    #[test]
    fn cells_never_carry_controls() {
        assert_eq!(cell_symbol("a"), None);
        assert_eq!(cell_symbol("\x1b").as_deref(), Some("␛"));
        assert_eq!(cell_symbol("\x07").as_deref(), Some("␇"));
        assert_eq!(cell_symbol("\x7f").as_deref(), Some("␡"));
        assert_eq!(cell_symbol("\u{9b}").as_deref(), Some("\u{fffd}"));
        assert_eq!(cell_symbol("\t").as_deref(), Some(" "));
        assert_eq!(cell_symbol("e\u{202e}").as_deref(), Some("e"));
    }
}
