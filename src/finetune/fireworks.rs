//! Fireworks' side of the client: a dataset created and uploaded (`datasets/ID:upload`) and waited on until
//! READY, supervised fine-tuning jobs read by their `JOB_STATE_*`, a job stopped by deleting it, and the LoRA
//! loaded onto a deployment (`deployedModels`) and waited on until DEPLOYED — the step before a lane can ask it.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::client::{Client, Job};

/// How long a dataset or a deployment may take to become ready.
const READY_WITHIN: Duration = Duration::from_secs(900);

/// A job from Fireworks' `gatewaySupervisedFineTuningJob`.
pub fn job(v: &Value, id: &str) -> Job {
    let state = v["state"].as_str().unwrap_or("JOB_STATE_UNSPECIFIED");
    let status = match state {
        "JOB_STATE_COMPLETED" | "JOB_STATE_EARLY_STOPPED" => "succeeded",
        "JOB_STATE_FAILED" | "JOB_STATE_EXPIRED" => "failed",
        "JOB_STATE_CANCELLED" => "cancelled",
        other => other.strip_prefix("JOB_STATE_").unwrap_or(other),
    };
    let error = v["status"]["message"].as_str().filter(|m| !m.is_empty() && status == "failed").map(String::from);
    Job {
        id: id.to_string(),
        status: status.to_ascii_lowercase(),
        fine_tuned_model: v["outputModel"].as_str().filter(|m| !m.is_empty()).map(String::from),
        trained_tokens: None,
        error,
    }
}

/// A dataset id Fireworks takes (lowercase letters, digits, hyphens) for `name` and these bytes.
fn dataset_id(name: &str, bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    let stem: String = name
        .trim_end_matches(".jsonl")
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' })
        .collect();
    let hash: String = Sha256::digest(bytes).iter().take(6).map(|b| format!("{b:02x}")).collect();
    format!("tunebench-{stem}-{hash}")
}

impl Client {
    fn json_post(&self, url: &str, body: &Value) -> reqwest::RequestBuilder {
        self.http.post(url).header(reqwest::header::CONTENT_TYPE, "application/json").body(body.to_string())
    }

    /// Creates the dataset, uploads the file into it and waits until it is READY; its resource name.
    pub(super) async fn upload_dataset(&self, name: &str, bytes: &[u8], examples: usize) -> Result<String, String> {
        let id = dataset_id(name, bytes);
        let datasets = format!("{}/datasets", self.account_path());
        let body = json!({"datasetId": id, "dataset": {"userUploaded": {}, "exampleCount": examples.to_string(), "format": "CHAT"}});
        self.send(&format!("creating dataset {id}"), || self.json_post(&datasets, &body)).await?;
        let upload = format!("{datasets}/{id}:upload");
        self.send(&format!("uploading {name}"), || {
            let part = reqwest::multipart::Part::bytes(bytes.to_vec()).file_name(name.to_string());
            self.http.post(&upload).multipart(reqwest::multipart::Form::new().part("file", part))
        })
        .await?;
        let url = format!("{datasets}/{id}");
        let started = Instant::now();
        loop {
            let v = self.send(&format!("reading dataset {id}"), || self.http.get(&url)).await?;
            match v["state"].as_str() {
                Some("READY") => {
                    return Ok(v["name"].as_str().map_or_else(
                        || format!("accounts/{}/datasets/{id}", self.account.as_deref().unwrap_or_default()),
                        String::from,
                    ));
                }
                _ if v["status"]["code"].as_str().is_some_and(|c| c != "OK") => {
                    return Err(format!("dataset {id}: {}", v["status"]["message"].as_str().unwrap_or("refused")));
                }
                _ if started.elapsed() > READY_WITHIN => {
                    return Err(format!("dataset {id} was not READY within 15 minutes"));
                }
                _ => tokio::time::sleep(Duration::from_millis(500)).await,
            }
        }
    }

    /// Stops a job the only way Fireworks documents: deleting it.
    pub(super) async fn delete_job(&self, id: &str) -> Result<Job, String> {
        let url = format!("{}/supervisedFineTuningJobs/{id}", self.account_path());
        self.send("cancelling (deleting) the job", || self.http.delete(&url)).await?;
        Ok(Job {
            id: id.to_string(),
            status: "cancelled".into(),
            fine_tuned_model: None,
            trained_tokens: None,
            error: None,
        })
    }

    /// Loads the fine-tuned `model` onto `deployment` and waits until it is DEPLOYED; the model string a chat
    /// request names (`MODEL#DEPLOYMENT`).
    pub async fn deploy(&self, model: &str, deployment: &str) -> Result<String, String> {
        let url = format!("{}/deployedModels", self.account_path());
        let body = json!({"model": model, "deployment": deployment, "displayName": "tunebench"});
        let v = self.send("loading the LoRA onto the deployment", || self.json_post(&url, &body)).await?;
        let name = v["name"].as_str().ok_or("loading the LoRA: no deployed model named in the reply")?.to_string();
        let id = name.rsplit('/').next().unwrap_or_default().to_string();
        let started = Instant::now();
        loop {
            let v = self.send("reading the deployed model", || self.http.get(format!("{url}/{id}"))).await?;
            match v["state"].as_str() {
                Some("DEPLOYED") => return Ok(format!("{model}#{deployment}")),
                _ if started.elapsed() > READY_WITHIN => {
                    return Err(format!("{name} was not DEPLOYED within 15 minutes"));
                }
                _ => tokio::time::sleep(Duration::from_millis(500)).await,
            }
        }
    }
}

/// Fireworks' job request: LoRA at tunebench's rank, the validation dataset as its evaluation set.
pub fn body(
    model: &str,
    dataset: &str,
    evaluation: Option<&str>,
    output: Option<&str>,
    epochs: Option<u32>,
    rank: usize,
) -> Value {
    let mut b = json!({"dataset": dataset, "baseModel": model, "loraRank": rank, "displayName": "tunebench train --on fireworks"});
    if let Some(e) = evaluation {
        b["evaluationDataset"] = json!(e);
    }
    if let Some(o) = output {
        b["outputModel"] = json!(o);
    }
    if let Some(e) = epochs {
        b["epochs"] = json!(e);
    }
    b
}
