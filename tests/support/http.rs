//! A scripted HTTP/1.1 server on 127.0.0.1 for the API lanes: each request gets the next reply, streamed
//! chunk by chunk with pauses, cut, or left hanging, and every request is recorded.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Debug, Clone)]
pub enum Part {
    /// One HTTP chunk of the body.
    Bytes(Vec<u8>),
    Sleep(Duration),
    /// Close the socket without ending the chunked body: a cut stream.
    Cut,
    /// Send nothing more and wait until the client goes away.
    Hang,
}

#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub parts: Vec<Part>,
    /// Hold the response head this long (a server that is slow to answer at all).
    pub head_delay: Duration,
}

impl Reply {
    /// A 200 event stream sending each string as its own chunk.
    pub fn sse<S: AsRef<str>>(chunks: &[S]) -> Self {
        Self {
            status: 200,
            headers: vec![("content-type".into(), "text/event-stream; charset=utf-8".into())],
            parts: chunks.iter().map(|c| Part::Bytes(c.as_ref().as_bytes().to_vec())).collect(),
            head_delay: Duration::ZERO,
        }
    }

    /// An error status with a JSON body.
    pub fn status(status: u16, body: &str) -> Self {
        Self {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            parts: vec![Part::Bytes(body.as_bytes().to_vec())],
            head_delay: Duration::ZERO,
        }
    }

    pub fn header(mut self, k: &str, v: &str) -> Self {
        self.headers.push((k.into(), v.into()));
        self
    }

    pub fn then(mut self, part: Part) -> Self {
        self.parts.push(part);
        self
    }

    pub fn head_delay(mut self, d: Duration) -> Self {
        self.head_delay = d;
        self
    }
}

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: serde_json::Value,
    pub at: Instant,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

#[derive(Default)]
struct Shared {
    replies: Vec<Reply>,
    requests: Vec<Recorded>,
    /// When a hanging reply saw its client disconnect.
    hangups: Vec<Instant>,
}

#[derive(Clone)]
pub struct MockServer {
    pub url: String,
    shared: Arc<Mutex<Shared>>,
}

impl MockServer {
    /// Serves `replies` in order, one per request; requests beyond them get a 500.
    pub async fn start(replies: Vec<Reply>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let shared = Arc::new(Mutex::new(Shared { replies, ..Shared::default() }));
        let s = shared.clone();
        tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                tokio::spawn(serve(sock, s.clone()));
            }
        });
        Self { url, shared }
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.lock().unwrap().requests.clone()
    }

    pub fn hangups(&self) -> Vec<Instant> {
        self.shared.lock().unwrap().hangups.clone()
    }
}

async fn serve(mut sock: TcpStream, shared: Arc<Mutex<Shared>>) {
    let Some((head, body)) = read_request(&mut sock).await else { return };
    let mut lines = head.lines();
    let path = lines.next().unwrap_or_default().split(' ').nth(1).unwrap_or_default().to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let body = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
    let reply = {
        let mut s = shared.lock().unwrap();
        s.requests.push(Recorded { path, headers, body, at: Instant::now() });
        if s.replies.is_empty() {
            Reply::status(500, r#"{"error":{"message":"no more scripted replies"}}"#)
        } else {
            s.replies.remove(0)
        }
    };
    tokio::time::sleep(reply.head_delay).await;
    let mut out = format!("HTTP/1.1 {} Scripted\r\nconnection: close\r\n", reply.status);
    let chunked = reply.status == 200;
    for (k, v) in &reply.headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    if chunked {
        out.push_str("transfer-encoding: chunked\r\n\r\n");
    } else {
        let len: usize = reply.parts.iter().map(|p| if let Part::Bytes(b) = p { b.len() } else { 0 }).sum();
        out.push_str(&format!("content-length: {len}\r\n\r\n"));
    }
    if sock.write_all(out.as_bytes()).await.is_err() {
        return;
    }
    for part in reply.parts {
        match part {
            Part::Bytes(b) if chunked => {
                let frame = [format!("{:x}\r\n", b.len()).into_bytes(), b, b"\r\n".to_vec()].concat();
                if sock.write_all(&frame).await.is_err() {
                    return;
                }
            }
            Part::Bytes(b) => {
                if sock.write_all(&b).await.is_err() {
                    return;
                }
            }
            Part::Sleep(d) => tokio::time::sleep(d).await,
            Part::Cut => return,
            Part::Hang => {
                let mut buf = [0u8; 64];
                while matches!(sock.read(&mut buf).await, Ok(n) if n > 0) {}
                shared.lock().unwrap().hangups.push(Instant::now());
                return;
            }
        }
    }
    if chunked {
        let _ = sock.write_all(b"0\r\n\r\n").await;
    }
    let _ = sock.flush().await;
}

pub async fn read_request(sock: &mut TcpStream) -> Option<(String, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut tmp = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        let n = sock.read(&mut tmp).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&tmp[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let len = head
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < len {
        let n = sock.read(&mut tmp).await.ok()?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&tmp[..n]);
    }
    Some((head, body))
}

/// OpenAI-style chunks: one per piece of text, a finish chunk, the usage chunk (`choices: []`), `[DONE]`.
pub fn openai_stream(pieces: &[&str], usage: Option<(u64, u64, u64)>) -> Vec<String> {
    let mut out = vec![sse(
        r#"{"id":"c1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}"#,
    )];
    for p in pieces {
        let chunk = serde_json::json!({"id":"c1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":p},"finish_reason":null}]});
        out.push(sse(&chunk.to_string()));
    }
    out.push(sse(r#"{"id":"c1","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#));
    if let Some((p, c, cached)) = usage {
        let u = serde_json::json!({"id":"c1","choices":[],"usage":{"prompt_tokens":p,"completion_tokens":c,"total_tokens":p+c,"prompt_tokens_details":{"cached_tokens":cached}}});
        out.push(sse(&u.to_string()));
    }
    out.push("data: [DONE]\n\n".into());
    out
}

/// Anthropic events: message_start with the prompt's tokens, text deltas, message_delta, message_stop.
pub fn anthropic_stream(pieces: &[&str], input_tokens: u64, cache_read: u64, output_tokens: u64) -> Vec<String> {
    let start = serde_json::json!({"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","content":[],"model":"claude","stop_reason":null,"usage":{"input_tokens":input_tokens,"cache_read_input_tokens":cache_read,"cache_creation_input_tokens":0,"output_tokens":1}}});
    let mut out = vec![
        named("message_start", &start.to_string()),
        named(
            "content_block_start",
            r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
        ),
        named("ping", r#"{"type": "ping"}"#),
    ];
    for p in pieces {
        let d = serde_json::json!({"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":p}});
        out.push(named("content_block_delta", &d.to_string()));
    }
    out.push(named("content_block_stop", r#"{"type":"content_block_stop","index":0}"#));
    let delta = serde_json::json!({"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":output_tokens}});
    out.push(named("message_delta", &delta.to_string()));
    out.push(named("message_stop", r#"{"type":"message_stop"}"#));
    out
}

pub fn sse(data: &str) -> String {
    format!("data: {data}\n\n")
}

pub fn named(event: &str, data: &str) -> String {
    format!("event: {event}\ndata: {data}\n\n")
}
