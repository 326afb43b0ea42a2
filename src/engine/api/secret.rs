//! An API key held in memory: never printed, and scrubbed from any text that might echo it.

use std::fmt;

/// Shown as `[redacted]` by Debug and Display; only `expose` gives the value, for the request header.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

pub const REDACTED: &str = "[redacted]";

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Replaces every occurrence of the key in `text` (servers and URLs can echo it back).
    pub fn redact(&self, text: &str) -> String {
        if self.0.is_empty() { text.to_string() } else { text.replace(&self.0, REDACTED) }
    }

    /// A header value marked sensitive, so HTTP-layer debug output leaves it out.
    pub fn header(&self, prefix: &str) -> Result<reqwest::header::HeaderValue, String> {
        let mut v = reqwest::header::HeaderValue::from_str(&format!("{prefix}{}", self.0))
            .map_err(|_| "the API key holds characters an HTTP header cannot carry".to_string())?;
        v.set_sensitive(true);
        Ok(v)
    }
}

/// `text` with the key (if any) replaced; untouched, without copying, when the key is not in it.
pub fn scrub(key: Option<&Secret>, text: String) -> String {
    match key {
        Some(k) if !k.0.is_empty() && text.contains(k.expose()) => k.redact(&text),
        _ => text,
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_shown() {
        let k = Secret::new("sk-test-123");
        assert_eq!(format!("{k} {k:?}"), "[redacted] [redacted]");
        assert_eq!(k.redact("bad key sk-test-123 (sk-test-123)"), "bad key [redacted] ([redacted])");
        assert!(k.header("Bearer ").unwrap().is_sensitive());
        assert!(Secret::new("a\nb").header("").is_err());
    }
}
