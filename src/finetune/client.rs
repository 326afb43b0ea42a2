//! The providers' fine-tuning endpoints — OpenAI's (`files`, `fine_tuning/jobs`), Together's (`files/upload`,
//! `fine-tunes`) and Fireworks' (datasets and supervisedFineTuningJobs under `accounts/ID`, in fireworks.rs):
//! upload (multipart), create, read, events, cancel — each
//! request retried on 429 and 5xx (the server's Retry-After, else backoff), the key only in the header and
//! scrubbed from every error.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::engine::api::fault::{self, backoff, retry_after};
use crate::engine::api::secret::{Secret, scrub};

/// Whose API a client speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    OpenAi,
    Together,
    Fireworks,
}

/// A job as the provider reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    pub id: String,
    /// The provider's own word: OpenAI's validating_files, queued, running, succeeded, failed, cancelled;
    /// Together's pending, queued, running, compressing, uploading, cancel_requested, cancelled, error,
    /// completed. Unknown ones are taken as running.
    pub status: String,
    pub fine_tuned_model: Option<String>,
    pub trained_tokens: Option<u64>,
    pub error: Option<String>,
}

impl Job {
    fn from(v: &Value, dialect: Dialect) -> Result<Job, String> {
        // Fireworks names a job by its resource path.
        let id = v["id"]
            .as_str()
            .or_else(|| v["name"].as_str().and_then(|n| n.rsplit('/').next()))
            .ok_or_else(|| format!("a job without an id: {}", fault::excerpt(&v.to_string())))?;
        let error = match &v["error"] {
            Value::Object(e) => e.get("message").and_then(Value::as_str).map(String::from),
            Value::String(m) => Some(m.clone()),
            _ => None,
        };
        let (model, tokens) = match dialect {
            Dialect::OpenAi => (v["fine_tuned_model"].as_str(), v["trained_tokens"].as_u64()),
            Dialect::Together => (v["output_name"].as_str(), v["token_count"].as_u64()),
            Dialect::Fireworks => return Ok(super::fireworks::job(v, id)),
        };
        Ok(Job {
            id: id.to_string(),
            status: v["status"].as_str().unwrap_or("unknown").to_ascii_lowercase(),
            fine_tuned_model: model.map(String::from),
            trained_tokens: tokens,
            error,
        })
    }

    pub fn succeeded(&self) -> bool {
        matches!(self.status.as_str(), "succeeded" | "completed")
    }

    pub fn finished(&self) -> bool {
        self.succeeded() || matches!(self.status.as_str(), "failed" | "error" | "cancelled")
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
    pub(super) http: reqwest::Client,
    pub(super) base: String,
    key: Option<Secret>,
    retries: u32,
    pub dialect: Dialect,
    /// Fireworks' account id (its resources live under `accounts/ID`).
    pub account: Option<String>,
}

impl Client {
    pub fn new(dialect: Dialect, base: &str, key: Option<Secret>, retries: u32) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(300))
            .user_agent(concat!("tunebench/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot set up HTTP: {e}"))?;
        Ok(Self { http, base: base.trim_end_matches('/').to_string(), key, retries, dialect, account: None })
    }

    /// Where the jobs live.
    fn jobs(&self) -> String {
        match self.dialect {
            Dialect::OpenAi => format!("{}/fine_tuning/jobs", self.base),
            Dialect::Together => format!("{}/fine-tunes", self.base),
            Dialect::Fireworks => format!("{}/supervisedFineTuningJobs", self.account_path()),
        }
    }

    /// `BASE/accounts/ID` (Fireworks).
    pub(super) fn account_path(&self) -> String {
        format!("{}/accounts/{}", self.base, self.account.as_deref().unwrap_or_default())
    }

    /// Sends the request `make` builds, again after a 429, a 5xx or a connection error; the body as JSON.
    pub(super) async fn send(&self, what: &str, make: impl Fn() -> reqwest::RequestBuilder) -> Result<Value, String> {
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

    /// Uploads `bytes` (`examples` of them) as `name` for fine-tuning; the file id (Fireworks: the dataset's
    /// name, once it is ready).
    pub async fn upload(&self, name: &str, bytes: &[u8], examples: usize) -> Result<String, String> {
        let url = match self.dialect {
            Dialect::OpenAi => format!("{}/files", self.base),
            Dialect::Together => format!("{}/files/upload", self.base),
            Dialect::Fireworks => return self.upload_dataset(name, bytes, examples).await,
        };
        let v = self
            .send(&format!("uploading {name}"), || {
                let part = reqwest::multipart::Part::bytes(bytes.to_vec())
                    .file_name(name.to_string())
                    .mime_str("application/jsonl")
                    .unwrap_or_else(|_| reqwest::multipart::Part::bytes(bytes.to_vec()));
                let mut form = reqwest::multipart::Form::new().text("purpose", "fine-tune");
                if self.dialect == Dialect::Together {
                    form = form.text("file_name", name.to_string());
                }
                self.http.post(&url).multipart(form.part("file", part))
            })
            .await?;
        v["id"].as_str().map(String::from).ok_or_else(|| format!("uploading {name}: no file id in the reply"))
    }

    pub async fn create(&self, body: &Value) -> Result<Job, String> {
        let url = self.jobs();
        let text = body.to_string();
        let v = self
            .send("creating the job", || {
                self.http.post(&url).header(reqwest::header::CONTENT_TYPE, "application/json").body(text.clone())
            })
            .await?;
        Job::from(&v, self.dialect)
    }

    pub async fn job(&self, id: &str) -> Result<Job, String> {
        let url = format!("{}/{id}", self.jobs());
        Job::from(&self.send("reading the job", || self.http.get(&url)).await?, self.dialect)
    }

    pub async fn cancel(&self, id: &str) -> Result<Job, String> {
        if self.dialect == Dialect::Fireworks {
            return self.delete_job(id).await;
        }
        let url = format!("{}/{id}/cancel", self.jobs());
        Job::from(&self.send("cancelling the job", || self.http.post(&url)).await?, self.dialect)
    }

    /// The job's latest events, oldest first (OpenAI: the newest 100 — its `after` cursor pages to older
    /// events, not newer ones; Together: the whole list). The caller keeps what it has shown by id.
    pub async fn events(&self, id: &str) -> Result<Vec<Event>, String> {
        if self.dialect == Dialect::Fireworks {
            // Fireworks publishes no event list for a job: its state changes are what is shown.
            return Ok(Vec::new());
        }
        let mut url = format!("{}/{id}/events", self.jobs());
        if self.dialect == Dialect::OpenAi {
            url.push_str("?limit=100");
        }
        let v = self.send("reading the job's events", || self.http.get(&url)).await?;
        let mut items: Vec<&Value> = v["data"].as_array().map(|a| a.iter().collect()).unwrap_or_default();
        match self.dialect {
            // Newest first.
            Dialect::OpenAi => items.reverse(),
            Dialect::Together | Dialect::Fireworks => items.sort_by_key(|e| e["created_at"].to_string()),
        }
        Ok(items.into_iter().map(event).collect())
    }
}

fn event(e: &Value) -> Event {
    // OpenAI nests a metrics event's figures under `data`; Together puts them on the event.
    let d = if e["data"].is_object() { &e["data"] } else { e };
    Event {
        id: e["id"].as_str().map_or_else(|| e["created_at"].to_string(), String::from),
        message: e["message"].as_str().unwrap_or_default().to_string(),
        step: d["step"].as_u64(),
        total_steps: d["total_steps"].as_u64(),
        train_loss: d["train_loss"].as_f64().or_else(|| d["training_loss"].as_f64()),
        valid_loss: d["valid_loss"].as_f64().or_else(|| d["full_valid_loss"].as_f64()),
    }
}

/// Together's job request: LoRA at tunebench's rank and alpha, evaluations when there is a validation file,
/// the provider's defaults where the user chose nothing.
pub fn together_body(
    model: &str,
    training_file: &str,
    validation_file: Option<&str>,
    suffix: Option<&str>,
    epochs: Option<u32>,
    rank: usize,
    alpha: f64,
) -> Value {
    let mut body = json!({
        "model": model,
        "training_file": training_file,
        "lora": true,
        "lora_r": rank,
        "lora_alpha": alpha,
        "train_on_inputs": false,
    });
    if let Some(e) = epochs {
        body["n_epochs"] = json!(e);
    }
    if let Some(v) = validation_file {
        body["validation_file"] = json!(v);
        body["n_evals"] = json!(epochs.unwrap_or(1).max(1));
    }
    if let Some(s) = suffix {
        body["suffix"] = json!(s);
    }
    body
}

/// OpenAI's job request: `method.supervised.hyperparameters`, "auto" where the user chose nothing.
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
