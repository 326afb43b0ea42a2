//! An API key held in memory: never printed, and scrubbed from the text that might echo it (error bodies, log
//! lines, messages), never from the model's answer or from a chunk before it is parsed.

use std::fmt;

/// Shown as `[redacted]` by Debug and Display; only `expose` gives the value, for the request header.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

pub const REDACTED: &str = "[redacted]";

/// Keys shorter than this are placeholders for local servers ("ollama", "lm-studio", "dummy"), not secrets;
/// replacing them would rewrite ordinary words in messages.
pub const MIN_SECRET_LEN: usize = 12;

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Replaces every occurrence of the key in `text` (servers and URLs can echo it back); a key too short to
    /// be a secret is left alone.
    pub fn redact(&self, text: &str) -> String {
        if self.is_secret() { text.replace(&self.0, REDACTED) } else { text.to_string() }
    }

    fn is_secret(&self) -> bool {
        self.0.chars().count() >= MIN_SECRET_LEN
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
        Some(k) if k.is_secret() && text.contains(k.expose()) => k.redact(&text),
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
        let k = Secret::new("sk-test-12345");
        assert_eq!(format!("{k} {k:?}"), "[redacted] [redacted]");
        assert_eq!(k.redact("bad key sk-test-12345 (sk-test-12345)"), "bad key [redacted] ([redacted])");
        assert!(k.header("Bearer ").unwrap().is_sensitive());
        assert!(Secret::new("a\nb").header("").is_err());
    }

    #[test]
    fn placeholder_keys_are_not_redacted() {
        for k in ["k", "fake", "tokens", "ollama", "lm-studio", "sk-12345678"] {
            let text = format!("Hello from fake: {k} tokens");
            assert_eq!(scrub(Some(&Secret::new(k)), text.clone()), text, "{k}");
        }
        assert_eq!(scrub(Some(&Secret::new("sk-123456789")), "a sk-123456789".into()), "a [redacted]");
    }
}
