//! OpenAI's fine-tuning endpoints: files (multipart, purpose fine-tune), jobs, their events, cancel — each
//! request retried on 429 and 5xx (the server's Retry-After, else backoff), the key only in the header and
//! scrubbed from every error.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::engine::api::fault::{self, backoff, retry_after};
use crate::engine::api::secret::{Secret, scrub};

/// A job as the provider reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    pub id: String,
    /// validating_files, queued, running, succeeded, failed, cancelled (others are taken as running).
    pub status: String,
    pub fine_tuned_model: Option<String>,
    pub trained_tokens: Option<u64>,
    pub error: Option<String>,
}

impl Job {
    fn from(v: &Value) -> Result<Job, String> {
        let id = v["id"].as_str().ok_or_else(|| format!("a job without an id: {}", fault::excerpt(&v.to_string())))?;
        let error = match &v["error"] {
            Value::Object(e) => e.get("message").and_then(Value::as_str).map(String::from),
            _ => None,
        };
        Ok(Job {
            id: id.to_string(),
            status: v["status"].as_str().unwrap_or("unknown").to_string(),
            fine_tuned_model: v["fine_tuned_model"].as_str().map(String::from),
            trained_tokens: v["trained_tokens"].as_u64(),
            error,
        })
    }

    pub fn finished(&self) -> bool {
        matches!(self.status.as_str(), "succeeded" | "failed" | "cancelled")
    }
}

/// One entry of a job's event list (oldest first once read).
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub id: String,
    pub message: String,
    pub step: Option<u64>,
    pub total_steps: Option<u64>,
    pub train_loss: Option<f64>,
    pub valid_loss: Option<f64>,
}

pub struct Client {
    http: reqwest::Client,
    base: String,
    key: Option<Secret>,
    retries: u32,
}

impl Client {
    pub fn new(base: &str, key: Option<Secret>, retries: u32) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(300))
            .user_agent(concat!("tunebench/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot set up HTTP: {e}"))?;
        Ok(Self { http, base: base.trim_end_matches('/').to_string(), key, retries })
    }

    /// Sends the request `make` builds, again after a 429, a 5xx or a connection error; the body as JSON.
    async fn send(&self, what: &str, make: impl Fn() -> reqwest::RequestBuilder) -> Result<Value, String> {
        let mut attempt = 0;
        loop {
            let mut req = make();
            if let Some(k) = &self.key {
                req = req.header(reqwest::header::AUTHORIZATION, k.header("Bearer ")?);
            }
            let (wait, why) = match req.send().await {
                Ok(r) => {
                    let status = r.status();
                    let headers = r.headers().clone();
                    let body = r.text().await.unwrap_or_default();
                    if status.is_success() {
                        return serde_json::from_str(&body).map_err(|e| {
                            scrub(self.key.as_ref(), format!("{what}: not JSON ({e}): {}", fault::excerpt(&body)))
                        });
                    }
                    let why = format!("{what}: HTTP {status}: {}", fault::excerpt(&body));
                    if !fault::retryable_status(status) && status != StatusCode::TOO_MANY_REQUESTS {
                        return Err(scrub(self.key.as_ref(), why));
                    }
                    (retry_after(&headers).unwrap_or_else(|| backoff(attempt, 1.0)), why)
                }
                Err(e) => (backoff(attempt, 1.0), format!("{what}: {e}")),
            };
            if attempt >= self.retries {
                return Err(scrub(self.key.as_ref(), format!("{why} (after {} retries)", self.retries)));
            }
            attempt += 1;
            tracing::warn!("{} — retrying in {}", scrub(self.key.as_ref(), why), fault::fmt_wait(wait));
            tokio::time::sleep(wait).await;
        }
    }

    /// Uploads `bytes` as `name` for fine-tuning; the file id.
    pub async fn upload(&self, name: &str, bytes: &[u8]) -> Result<String, String> {
        let url = format!("{}/files", self.base);
        let v = self
            .send(&format!("uploading {name}"), || {
                let part = reqwest::multipart::Part::bytes(bytes.to_vec())
                    .file_name(name.to_string())
                    .mime_str("application/jsonl")
                    .unwrap_or_else(|_| reqwest::multipart::Part::bytes(bytes.to_vec()));
                let form = reqwest::multipart::Form::new().text("purpose", "fine-tune").part("file", part);
                self.http.post(&url).multipart(form)
            })
            .await?;
        v["id"].as_str().map(String::from).ok_or_else(|| format!("uploading {name}: no file id in the reply"))
    }

    pub async fn create(&self, body: &Value) -> Result<Job, String> {
        let url = format!("{}/fine_tuning/jobs", self.base);
        let text = body.to_string();
        Job::from(
            &self
                .send("creating the job", || {
                    self.http.post(&url).header(reqwest::header::CONTENT_TYPE, "application/json").body(text.clone())
                })
                .await?,
        )
    }

    pub async fn job(&self, id: &str) -> Result<Job, String> {
        let url = format!("{}/fine_tuning/jobs/{id}", self.base);
        Job::from(&self.send("reading the job", || self.http.get(&url)).await?)
    }

    pub async fn cancel(&self, id: &str) -> Result<Job, String> {
        let url = format!("{}/fine_tuning/jobs/{id}/cancel", self.base);
        Job::from(&self.send("cancelling the job", || self.http.post(&url)).await?)
    }

    /// The job's events after `after` (an event id), oldest first.
    pub async fn events(&self, id: &str, after: Option<&str>) -> Result<Vec<Event>, String> {
        let mut url = format!("{}/fine_tuning/jobs/{id}/events?limit=100", self.base);
        if let Some(a) = after {
            url.push_str(&format!("&after={a}"));
        }
        let v = self.send("reading the job's events", || self.http.get(&url)).await?;
        let mut out: Vec<Event> = v["data"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|e| {
                        let d = &e["data"];
                        Event {
                            id: e["id"].as_str().unwrap_or_default().to_string(),
                            message: e["message"].as_str().unwrap_or_default().to_string(),
                            step: d["step"].as_u64(),
                            total_steps: d["total_steps"].as_u64(),
                            train_loss: d["train_loss"].as_f64(),
                            valid_loss: d["valid_loss"].as_f64().or_else(|| d["full_valid_loss"].as_f64()),
                        }
                    })
                    .collect()
            })
            .unwrap_or_default();
        // The list comes newest first.
        out.reverse();
        Ok(out)
    }
}

/// The job request: `method.supervised.hyperparameters`, "auto" where the user chose nothing.
pub fn job_body(
    model: &str,
    training_file: &str,
    validation_file: Option<&str>,
    suffix: Option<&str>,
    epochs: Option<u32>,
    lr_mult: Option<f64>,
    seed: u64,
) -> Value {
    let auto = |v: Option<Value>| v.unwrap_or_else(|| json!("auto"));
    let mut body = json!({
        "model": model,
        "training_file": training_file,
        "seed": seed,
        "method": {"type": "supervised", "supervised": {"hyperparameters": {
            "n_epochs": auto(epochs.map(|e| json!(e))),
            "learning_rate_multiplier": auto(lr_mult.map(|l| json!(l))),
            "batch_size": "auto",
        }}},
    });
    if let Some(v) = validation_file {
        body["validation_file"] = json!(v);
    }
    if let Some(s) = suffix {
        body["suffix"] = json!(s);
    }
    body
}
