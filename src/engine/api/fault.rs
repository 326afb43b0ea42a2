//! What went wrong with a hosted call, whether another attempt may help, and how long to wait first.

use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::HeaderMap;

/// One failed attempt.
#[derive(Debug, Clone, PartialEq)]
pub struct Fault {
    /// Shown in the lane, e.g. "429 rate limited: Rate limit reached for gpt-4o-mini".
    pub message: String,
    /// Whether a fresh attempt may succeed (it is made only while no answer text has been shown).
    pub transient: bool,
    /// The wait the server asked for (retry-after-ms / retry-after).
    pub wait: Option<Duration>,
}

impl Fault {
    pub fn transient(message: impl Into<String>) -> Self {
        Self { message: message.into(), transient: true, wait: None }
    }

    pub fn fatal(message: impl Into<String>) -> Self {
        Self { message: message.into(), transient: false, wait: None }
    }
}

/// The longest server-requested wait honoured; a longer one ends the run with the server's reason.
pub const MAX_WAIT: Duration = Duration::from_secs(60);
const BASE_DELAY: Duration = Duration::from_millis(500);
const MAX_DELAY: Duration = Duration::from_secs(8);

/// Statuses worth another attempt: timeouts, conflicts, rate limits, server errors, Anthropic's 529 overload.
/// 501 (not implemented) and 505 (HTTP version) will answer the same way every time.
pub fn retryable_status(status: StatusCode) -> bool {
    matches!(status.as_u16(), 408 | 409 | 429) || (status.is_server_error() && !matches!(status.as_u16(), 501 | 505))
}

/// The provider's error fields, from the JSON body both APIs send (`{"error": {"message", "type", "code"}}`).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ErrorBody {
    pub message: Option<String>,
    pub kind: Option<String>,
    pub code: Option<String>,
}

impl ErrorBody {
    pub fn parse(body: &str) -> Self {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(body) else { return Self::default() };
        Self::from_value(v.get("error").unwrap_or(&v))
    }

    pub fn from_value(e: &serde_json::Value) -> Self {
        let field = |k: &str| match e.get(k) {
            Some(serde_json::Value::String(s)) => Some(s.clone()),
            Some(serde_json::Value::Number(n)) => Some(n.to_string()),
            _ => None,
        };
        Self { message: field("message"), kind: field("type"), code: field("code") }
    }

    /// Out of credit rather than out of rate: waiting will not help. Matched on the providers' codes and
    /// their exact wording, since rate-limit messages also mention quotas ("quota increase", "Quota exceeded
    /// for metric … per minute") and must stay retryable.
    pub fn quota_exhausted(&self) -> bool {
        let codes = ["insufficient_quota", "billing_hard_limit_reached", "billing_not_active", "billing_error"];
        let coded = [&self.code, &self.kind].into_iter().flatten().any(|c| codes.contains(&c.as_str()));
        let phrases =
            ["exceeded your current quota", "credit balance is too low", "spend limit", "insufficient credits"];
        let said = self.message.as_deref().is_some_and(|m| {
            let m = m.to_ascii_lowercase();
            phrases.iter().any(|p| m.contains(p))
        });
        coded || said
    }
}

/// Classifies a non-success response.
pub fn from_status(status: StatusCode, headers: &HeaderMap, body: &str) -> Fault {
    let err = ErrorBody::parse(body);
    let what = match status.as_u16() {
        400 => "bad request",
        401 => "unauthorized (the API key was refused)",
        402 => "payment required",
        403 => "forbidden",
        404 => "not found (check base_url and model)",
        408 => "request timeout",
        409 => "conflict",
        413 => "request too large",
        422 => "unprocessable request",
        429 => "rate limited",
        529 => "overloaded",
        s if s >= 500 => "server error",
        _ => "unexpected status",
    };
    let detail = err.message.clone().unwrap_or_else(|| excerpt(body));
    let mut message = format!("{} {what}", status.as_u16());
    if !detail.is_empty() {
        message.push_str(&format!(": {detail}"));
    }
    if err.quota_exhausted() {
        return Fault::fatal(format!("{message} (quota exhausted: not retried)"));
    }
    if !retryable_status(status) {
        return Fault::fatal(message);
    }
    Fault { message, transient: true, wait: retry_after(headers) }
}

/// A short, single-line excerpt of a body that was not the expected JSON.
pub fn excerpt(body: &str) -> String {
    let one_line: String = body.split_whitespace().collect::<Vec<_>>().join(" ");
    match one_line.char_indices().nth(200) {
        Some((i, _)) => format!("{}…", &one_line[..i]),
        None => one_line,
    }
}

/// `retry-after-ms` (OpenAI, Anthropic) first, then `retry-after` in seconds or as an HTTP date.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
    // Clamped: a server's absurd value must not overflow a Duration (it is then refused as too long a wait).
    let secs = |s: f64| (s.is_finite() && s >= 0.0).then(|| Duration::from_secs_f64(s.min(1e9)));
    if let Some(ms) = get("retry-after-ms").and_then(|v| v.parse::<f64>().ok()) {
        return secs(ms / 1000.0);
    }
    let v = get("retry-after")?;
    if let Ok(s) = v.parse::<f64>() {
        return secs(s);
    }
    let at = httpdate::parse_http_date(v).ok()?;
    Some(at.duration_since(std::time::SystemTime::now()).unwrap_or(Duration::ZERO))
}

/// Exponential backoff with jitter for retry `n` (1-based): half the step fixed, half random,
/// so lanes rate-limited together do not come back in lockstep.
pub fn backoff(n: u32, unit: f64) -> Duration {
    let step = BASE_DELAY.saturating_mul(1 << n.saturating_sub(1).min(16)).min(MAX_DELAY);
    step.mul_f64(0.5 + 0.5 * unit.clamp(0.0, 1.0))
}

/// "3s", "0.5s", "1m 30s": how long until the next attempt.
pub fn fmt_wait(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s < 10.0 && (s.fract() * 10.0).round() != 0.0 {
        format!("{s:.1}s")
    } else if s < 60.0 {
        format!("{}s", s.round() as u64)
    } else {
        let s = s.round() as u64;
        format!("{}m {}s", s / 60, s % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn statuses_are_classified() {
        let quota = r#"{"error":{"message":"You exceeded your current quota","type":"insufficient_quota","code":"insufficient_quota"}}"#;
        let f = from_status(StatusCode::TOO_MANY_REQUESTS, &headers(&[]), quota);
        assert!(!f.transient && f.message.contains("quota exhausted"), "{f:?}");
        let f = from_status(StatusCode::TOO_MANY_REQUESTS, &headers(&[("retry-after", "3")]), "{}");
        assert_eq!((f.transient, f.wait), (true, Some(Duration::from_secs(3))));
        assert!(f.message.starts_with("429 rate limited"));
        let anthropic = r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#;
        let f = from_status(StatusCode::from_u16(529).unwrap(), &headers(&[]), anthropic);
        assert_eq!(f.message, "529 overloaded: Overloaded");
        assert!(f.transient);
        for s in [400, 401, 403, 404] {
            assert!(!from_status(StatusCode::from_u16(s).unwrap(), &headers(&[]), "nope").transient, "{s}");
        }
        for s in [408, 409, 500, 502, 503] {
            assert!(from_status(StatusCode::from_u16(s).unwrap(), &headers(&[]), "").transient, "{s}");
        }
        for s in [501, 505] {
            assert!(!from_status(StatusCode::from_u16(s).unwrap(), &headers(&[]), "").transient, "{s}");
        }
        // Rate limits that mention quotas are still rate limits.
        let azure = r#"{"error":{"code":"429","message":"Requests have exceeded the call rate limit. Please retry after 2 seconds. For a quota increase go here: https://aka.ms/oai/quotaincrease"}}"#;
        let gemini = r#"{"error":{"code":429,"message":"Quota exceeded for metric: generate_content_requests per minute","status":"RESOURCE_EXHAUSTED"}}"#;
        for body in [azure, gemini] {
            assert!(from_status(StatusCode::TOO_MANY_REQUESTS, &headers(&[]), body).transient, "{body}");
        }
    }

    #[test]
    fn retry_after_forms() {
        assert_eq!(
            retry_after(&headers(&[("retry-after-ms", "250"), ("retry-after", "9")])),
            Some(Duration::from_millis(250))
        );
        assert_eq!(retry_after(&headers(&[("retry-after", "1.5")])), Some(Duration::from_millis(1500)));
        assert_eq!(retry_after(&headers(&[("retry-after", "Wed, 21 Oct 2015 07:28:00 GMT")])), Some(Duration::ZERO));
        assert_eq!(retry_after(&headers(&[("retry-after", "soon")])), None);
        assert_eq!(retry_after(&headers(&[("retry-after", "-1")])), None);
        assert_eq!(retry_after(&headers(&[("retry-after-ms", "1e30")])), Some(Duration::from_secs(1_000_000_000)));
        assert_eq!(
            retry_after(&headers(&[("retry-after", "99999999999999999999")])),
            Some(Duration::from_secs(1_000_000_000))
        );
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        assert_eq!(backoff(1, 1.0), Duration::from_millis(500));
        assert_eq!(backoff(1, 0.0), Duration::from_millis(250));
        assert_eq!(backoff(3, 1.0), Duration::from_secs(2));
        assert_eq!(backoff(40, 1.0), MAX_DELAY);
        assert_eq!(
            (fmt_wait(Duration::from_millis(500)), fmt_wait(Duration::from_secs(3))),
            ("0.5s".into(), "3s".into())
        );
        assert_eq!(fmt_wait(Duration::from_secs(90)), "1m 30s");
    }
}
