//! A loopback fake of OpenAI's and Together's fine-tuning endpoints (files / files/upload, fine_tuning/jobs /
//! fine-tunes, events, cancel): uploads and jobs recorded, a job walking through a scripted list of states,
//! its events, and faults (a status code for the next N requests to a path) to drive retries.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

/// What the fake saw and will say.
#[derive(Default)]
pub struct Fake {
    /// Each upload: (file name, purpose, the file's text).
    pub uploads: Vec<(String, String, String)>,
    /// Each job request's body.
    pub created: Vec<Value>,
    /// The states GET /fine_tuning/jobs/ID walks through, one per read; the last one stays.
    pub states: VecDeque<&'static str>,
    pub status: String,
    pub model: String,
    /// Events, oldest first; each job read reveals the next one.
    pub events: Vec<Value>,
    pub shown: usize,
    /// (path prefix, status, times): the next `times` requests under the prefix get `status`.
    pub faults: Vec<(String, u16, usize)>,
    /// Every request as `METHOD path`, and its Authorization header.
    pub requests: Vec<(String, Option<String>)>,
    pub cancelled: bool,
    pub error: Option<String>,
}

pub struct FakeOpenAi {
    pub url: String,
    pub fake: Arc<Mutex<Fake>>,
}

impl FakeOpenAi {
    pub async fn start(states: &[&'static str], model: &str, losses: &[(u64, f64, f64)]) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/v1", listener.local_addr().unwrap());
        let total = losses.len() as u64;
        let mut events = vec![json!({"id": "ev-0", "message": "Validating training file", "data": {}})];
        for (i, (step, train, valid)) in losses.iter().enumerate() {
            events.push(
                json!({"id": format!("ev-{}", i + 1), "message": format!("Step {step}/{total}"), "type": "metrics",
                "data": {"step": step, "total_steps": total, "train_loss": train, "valid_loss": valid}}),
            );
        }
        let fake = Arc::new(Mutex::new(Fake {
            states: states.iter().copied().collect(),
            status: "validating_files".into(),
            model: model.into(),
            events,
            ..Fake::default()
        }));
        let f = fake.clone();
        tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                tokio::spawn(serve(sock, f.clone()));
            }
        });
        Self { url, fake }
    }

    pub fn fault(&self, prefix: &str, status: u16, times: usize) {
        self.fake.lock().unwrap().faults.push((prefix.into(), status, times));
    }
}

/// Together's job object: its own status words and `output_name`.
fn together_job(f: &Fake) -> Value {
    let done = f.status == "completed";
    json!({"id": "ft-0123abcd", "status": f.status, "output_name": if done { json!(f.model) } else { Value::Null },
        "model": "Qwen/Qwen2.5-7B-Instruct"})
}

/// Together's event list: every event so far, each with its time, the figures on the event itself.
fn together_events(f: &Fake) -> Value {
    let shown: Vec<Value> = f.events[..f.shown.min(f.events.len())]
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let mut out = json!({"object": "fine-tune-event", "created_at": format!("2026-11-30T10:00:{i:02}Z"),
                "message": e["message"], "type": "job_info"});
            if let Some(step) = e["data"]["step"].as_u64() {
                out["step"] = json!(step);
                out["training_loss"] = e["data"]["train_loss"].clone();
            }
            out
        })
        .collect();
    json!({"data": shown})
}

fn job(f: &Fake) -> Value {
    let done = f.status == "succeeded";
    let error = f.error.as_ref().map(|m| json!({"message": m, "code": "invalid_training_file"})).unwrap_or(Value::Null);
    json!({"id": "ftjob-abc123", "object": "fine_tuning.job", "status": f.status,
        "fine_tuned_model": if done { json!(f.model) } else { Value::Null },
        "trained_tokens": if done { json!(12345) } else { Value::Null }, "error": error})
}

async fn serve(mut sock: TcpStream, fake: Arc<Mutex<Fake>>) {
    let Some((head, body)) = super::http::read_request(&mut sock).await else { return };
    let mut lines = head.lines();
    let first = lines.next().unwrap_or_default().to_string();
    let mut parts = first.split(' ');
    let (method, target) = (parts.next().unwrap_or_default().to_string(), parts.next().unwrap_or_default().to_string());
    let path = target.split('?').next().unwrap_or_default().trim_start_matches("/v1").to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let header = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
    let (status, reply) = {
        let mut f = fake.lock().unwrap();
        f.requests.push((format!("{method} {path}"), header("authorization")));
        if let Some(i) = f.faults.iter().position(|(p, _, n)| path.starts_with(p.as_str()) && *n > 0) {
            f.faults[i].2 -= 1;
            let code = f.faults[i].1;
            (code, json!({"error": {"message": format!("scripted {code}")}}))
        } else {
            route(&mut f, &method, &path, &body, header("content-type").unwrap_or_default())
        }
    };
    let text = reply.to_string();
    let out = format!(
        "HTTP/1.1 {status} Fake\r\nconnection: close\r\ncontent-type: application/json\r\nretry-after-ms: 5\r\ncontent-length: {}\r\n\r\n{text}",
        text.len()
    );
    let _ = sock.write_all(out.as_bytes()).await;
    let _ = sock.flush().await;
}

/// Fireworks' job object: `name`, `JOB_STATE_*`, `outputModel`.
fn fireworks_job(f: &Fake) -> Value {
    let done = f.status == "JOB_STATE_COMPLETED";
    json!({"name": "accounts/acme/supervisedFineTuningJobs/sft-1", "state": f.status,
        "outputModel": if done { json!(f.model) } else { Value::Null }, "status": {"code": "OK", "message": ""}})
}

fn route(f: &mut Fake, method: &str, path: &str, body: &[u8], content_type: String) -> (u16, Value) {
    if let Some(rest) = path.strip_prefix("/accounts/acme/") {
        return fireworks(f, method, rest, body, &content_type);
    }
    match (method, path) {
        ("POST", "/fine-tunes") => {
            f.created.push(serde_json::from_slice(body).unwrap_or(Value::Null));
            f.status = "pending".into();
            (200, together_job(f))
        }
        ("GET", p) if p.starts_with("/fine-tunes/") && p.ends_with("/events") => (200, together_events(f)),
        ("POST", p) if p.starts_with("/fine-tunes/") && p.ends_with("/cancel") => {
            f.cancelled = true;
            f.status = "cancelled".into();
            f.states.clear();
            (200, together_job(f))
        }
        ("GET", p) if p.starts_with("/fine-tunes/") => {
            if let Some(s) = if f.states.len() > 1 { f.states.pop_front() } else { f.states.front().copied() } {
                f.status = s.into();
            }
            f.shown = (f.shown + 1).min(f.events.len());
            (200, together_job(f))
        }
        ("POST", "/files" | "/files/upload") => {
            let (name, purpose, text) = multipart(body, &content_type);
            let id = format!("file-{}", f.uploads.len() + 1);
            f.uploads.push((name, purpose, text));
            (200, json!({"id": id, "object": "file", "purpose": "fine-tune"}))
        }
        ("POST", "/fine_tuning/jobs") => {
            f.created.push(serde_json::from_slice(body).unwrap_or(Value::Null));
            f.status = "validating_files".into();
            (200, job(f))
        }
        ("GET", p) if p.ends_with("/events") => {
            let shown: Vec<Value> = f.events[..f.shown.min(f.events.len())].iter().rev().cloned().collect();
            (200, json!({"object": "list", "data": shown, "has_more": false}))
        }
        ("POST", p) if p.ends_with("/cancel") => {
            f.cancelled = true;
            f.status = "cancelled".into();
            f.states.clear();
            (200, job(f))
        }
        ("GET", p) if p.starts_with("/fine_tuning/jobs/") => {
            if let Some(s) = if f.states.len() > 1 { f.states.pop_front() } else { f.states.front().copied() } {
                f.status = s.into();
            }
            if f.status == "failed" && f.error.is_none() {
                f.error = Some("the training file has an invalid example".into());
            }
            f.shown = (f.shown + 1).min(f.events.len());
            (200, job(f))
        }
        _ => (404, json!({"error": {"message": format!("no route {method} {path}")}})),
    }
}

/// The `file` part's name and text and the `purpose` field of a multipart/form-data body.
fn multipart(body: &[u8], content_type: &str) -> (String, String, String) {
    let boundary = content_type.split("boundary=").nth(1).unwrap_or_default().trim_matches('"').to_string();
    let text = String::from_utf8_lossy(body);
    let (mut name, mut purpose, mut file) = (String::new(), String::new(), String::new());
    for part in text.split(&format!("--{boundary}")) {
        let Some((head, content)) = part.split_once("\r\n\r\n") else { continue };
        let content = content.strip_suffix("\r\n").unwrap_or(content).to_string();
        if head.contains("name=\"purpose\"") {
            purpose = content;
        } else if head.contains("name=\"file\"") {
            name = head.split("filename=\"").nth(1).and_then(|s| s.split('"').next()).unwrap_or_default().to_string();
            file = content;
        }
    }
    (name, purpose, file)
}

fn fireworks(f: &mut Fake, method: &str, rest: &str, body: &[u8], content_type: &str) -> (u16, Value) {
    match (method, rest) {
        ("POST", "datasets") => {
            let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
            f.created.push(json!({"dataset": v}));
            (
                200,
                json!({"name": format!("accounts/acme/datasets/{}", v["datasetId"].as_str().unwrap_or("")), "state": "UPLOADING"}),
            )
        }
        ("POST", p) if p.starts_with("datasets/") && p.ends_with(":upload") => {
            let (name, _, text) = multipart(body, content_type);
            f.uploads.push((name, "dataset".into(), text));
            (200, json!({"filename": "x"}))
        }
        ("GET", p) if p.starts_with("datasets/") => {
            (200, json!({"name": format!("accounts/acme/{p}"), "state": "READY", "status": {"code": "OK"}}))
        }
        ("POST", "supervisedFineTuningJobs") => {
            f.created.push(serde_json::from_slice(body).unwrap_or(Value::Null));
            f.status = "JOB_STATE_CREATING".into();
            (200, fireworks_job(f))
        }
        ("DELETE", p) if p.starts_with("supervisedFineTuningJobs/") => {
            f.cancelled = true;
            f.status = "JOB_STATE_CANCELLED".into();
            f.states.clear();
            (200, json!({}))
        }
        ("GET", p) if p.starts_with("supervisedFineTuningJobs/") => {
            if let Some(s) = if f.states.len() > 1 { f.states.pop_front() } else { f.states.front().copied() } {
                f.status = s.into();
            }
            (200, fireworks_job(f))
        }
        ("POST", "deployedModels") => {
            f.created.push(json!({"deployed": serde_json::from_slice::<Value>(body).unwrap_or(Value::Null)}));
            (200, json!({"name": "accounts/acme/deployedModels/dm-1", "state": "DEPLOYING"}))
        }
        ("GET", "deployedModels/dm-1") => {
            (200, json!({"name": "accounts/acme/deployedModels/dm-1", "state": "DEPLOYED"}))
        }
        _ => (404, json!({"error": {"message": format!("no route {method} /accounts/acme/{rest}")}})),
    }
}
