//! `tunebench train --on openai|together` against a loopback fake of the providers' files and fine-tuning jobs
//! endpoints:
//! the example's dataset uploaded once (train and valid, purpose fine-tune, earlier answers at weight 0),
//! the job created with supervised hyperparameters, followed through its states and events, resumed after a
//! restart without a second upload, retried through 429 and 5xx, cancelled, failed; refusals before any
//! upload; on success the `ft-` lane with the fine-tuned model and its price; the key in no file.

mod support;

use std::path::Path;
use std::process::Output;

use support::finetune::FakeOpenAi;

const KEY: &str = "sk-test-finetune-key-123";
const MODEL: &str = "ft:gpt-4o-mini-2024-07-18:org:triage:abc123";

/// `tunebench train WS --on PROVIDER` against `fake`, the key in `key_env` (no terminal: stdin is empty).
async fn train_on(ws: &Path, provider: &str, key_env: &str, fake: &FakeOpenAi, extra: &[&str]) -> Output {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_tunebench"));
    cmd.arg("train")
        .arg(ws)
        .args(["--on", provider, "--base-url", &fake.url, "--poll", "0.01"])
        .args(extra)
        .env(key_env, KEY)
        .stdin(std::process::Stdio::null());
    tokio::task::spawn_blocking(move || cmd.output().unwrap()).await.unwrap()
}

/// `--on openai` with the dated base model.
async fn train(ws: &Path, fake: &FakeOpenAi, extra: &[&str]) -> Output {
    let mut args = vec!["--base", "gpt-4o-mini-2024-07-18"];
    args.extend_from_slice(extra);
    train_on(ws, "openai", "OPENAI_API_KEY", fake, &args).await
}

/// Appends an OpenAI-compatible lane on a provider's endpoint, as a user adds one.
fn add_lane(ws: &Path, id: &str, base_url: &str, key_env: &str, model: &str) {
    let mut toml = std::fs::read_to_string(ws.join("workspace.toml")).unwrap();
    toml.push_str(&format!(
        "\n[[lanes]]\nid = {id:?}\nbackend = \"openai\"\nbase_url = {base_url:?}\napi_key_env = {key_env:?}\nmodel = {model:?}\nprompt = \"long\"\n"
    ));
    std::fs::write(ws.join("workspace.toml"), toml).unwrap();
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// Every file under `dir`, read as text where it is text.
fn no_file_holds(dir: &Path, secret: &str) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            no_file_holds(&p, secret);
        } else if let Ok(t) = std::fs::read_to_string(&p) {
            assert!(!t.contains(secret), "{} holds the key", p.display());
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_example_goes_from_dataset_to_a_fine_tuned_lane() {
    let (_tmp, ws) = support::example_copy();
    let losses = [(1, 1.9, 2.0), (2, 1.2, 1.4), (3, 0.8, 1.1)];
    let fake =
        FakeOpenAi::start(&["validating_files", "queued", "running", "running", "succeeded"], MODEL, &losses).await;
    let o = train(&ws, &fake, &["--yes", "--suffix", "triage"]).await;
    let t = text(&o);
    assert_eq!(o.status.code(), Some(0), "{t}");
    assert!(t.contains("615 training example(s), 110 validation"), "{t}");
    assert!(t.contains("training cost $") && t.contains("epochs: the provider's choice"), "{t}");
    assert!(t.contains("step 3/3 · train loss 0.8000 · valid loss 1.1000"), "{t}");
    assert_eq!(t.matches("step 1/3 · train loss").count(), 1, "each event shown once: {t}");
    assert!(
        t.contains(&format!("job ftjob-abc123 succeeded: {MODEL}; lane `ft-triage` asks it (with its price)")),
        "{t}"
    );
    let f = fake.fake.lock().unwrap();
    assert_eq!(f.uploads.len(), 2);
    assert_eq!((f.uploads[0].0.as_str(), f.uploads[0].1.as_str()), ("train.jsonl", "fine-tune"));
    assert_eq!(f.uploads[1].0, "valid.jsonl");
    let lines: Vec<serde_json::Value> = f.uploads[0].2.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 615);
    assert!(lines.iter().all(|l| l.get("meta").is_none() && l["messages"].is_array()));
    let job = &f.created[0];
    assert_eq!(job["model"], "gpt-4o-mini-2024-07-18");
    assert_eq!((job["training_file"].as_str(), job["validation_file"].as_str()), (Some("file-1"), Some("file-2")));
    assert_eq!(job["suffix"], "triage");
    assert_eq!(job["method"]["supervised"]["hyperparameters"]["n_epochs"], "auto");
    assert!(f.requests.iter().all(|(_, auth)| auth.as_deref() == Some(&format!("Bearer {KEY}"))));
    drop(f);
    // The lane, with the fine-tuned price, loads with the workspace; the job's record moved to the history.
    let loaded = tunebench::workspace::load(&ws).unwrap();
    let lane = loaded.lane("ft-triage").expect("the ft lane");
    assert_eq!(lane.model, MODEL);
    assert_eq!(lane.prompt, loaded.dataset.system_prompt);
    assert_eq!(lane.api_key_env.as_deref(), Some("OPENAI_API_KEY"));
    assert_eq!(loaded.pricing[MODEL].input_per_mtok, 0.30);
    assert!(!ws.join("finetune-job.json").exists());
    assert!(std::fs::read_to_string(ws.join("finetune-history.jsonl")).unwrap().contains(MODEL));
    no_file_holds(&ws, KEY);
}

#[tokio::test(flavor = "multi_thread")]
async fn nothing_is_uploaded_without_consent_or_with_a_dataset_the_provider_refuses() {
    let (_tmp, ws) = support::example_copy();
    let fake = FakeOpenAi::start(&["succeeded"], MODEL, &[]).await;
    let o = train(&ws, &fake, &[]).await;
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("no terminal to ask on (pass --yes to upload); nothing was uploaded"));
    let train_file = ws.join("dataset/train.jsonl");
    let few: String = std::fs::read_to_string(&train_file).unwrap().lines().take(5).map(|l| format!("{l}\n")).collect();
    std::fs::write(&train_file, few).unwrap();
    let o = train(&ws, &fake, &["--yes"]).await;
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("5 usable training example(s); the provider needs at least 10"), "{}", text(&o));
    let bad = train(&ws, &fake, &["--yes", "--suffix", "no spaces allowed"]).await;
    assert_eq!(bad.status.code(), Some(2));
    assert!(text(&bad).contains("1 to 64 letters, digits, - or _"));
    let local = train(&ws, &fake, &["--yes", "--rank", "8"]).await;
    assert!(text(&local).contains("--rank is for training on this machine"), "{}", text(&local));
    assert!(fake.fake.lock().unwrap().requests.is_empty(), "no request before consent and a valid dataset");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restart_follows_the_same_job_and_never_uploads_twice_through_retries() {
    let (_tmp, ws) = support::example_copy();
    let fake = FakeOpenAi::start(&["queued", "running", "succeeded"], MODEL, &[(1, 1.0, 1.2)]).await;
    fake.fault("/files", 429, 2);
    // No --base: the example's OpenAI lane names the alias gpt-4o-mini, fine-tuned as its dated snapshot.
    let o = train_on(&ws, "openai", "OPENAI_API_KEY", &fake, &["--yes", "--no-follow"]).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("fine-tuning gpt-4o-mini-2024-07-18, the dated snapshot of lane `api`'s gpt-4o-mini"));
    assert_eq!(fake.fake.lock().unwrap().created[0]["model"], "gpt-4o-mini-2024-07-18");
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(ws.join("finetune-job.json")).unwrap()).unwrap();
    assert_eq!(state["job_id"], "ftjob-abc123");
    assert!(!state.to_string().contains(KEY));
    fake.fault("/fine_tuning/jobs/", 500, 1);
    let o = train(&ws, &fake, &[]).await;
    let t = text(&o);
    assert_eq!(o.status.code(), Some(0), "{t}");
    assert!(t.contains("resuming the openai job"), "{t}");
    let f = fake.fake.lock().unwrap();
    assert_eq!(f.uploads.len(), 2, "the restart uploaded nothing");
    assert_eq!(f.created.len(), 1);
    assert_eq!(f.requests.iter().filter(|(r, _)| r == "POST /files").count(), 4, "two 429s retried");
    // Without a suffix the lane is named after the job.
    drop(f);
    assert!(tunebench::workspace::load(&ws).unwrap().lane("ft-ftjob-abc123").is_some());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_or_cancelled_job_exits_1_and_writes_no_lane() {
    let (_tmp, ws) = support::example_copy();
    let fake = FakeOpenAi::start(&["running", "failed"], MODEL, &[]).await;
    let o = train(&ws, &fake, &["--yes"]).await;
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("the training file has an invalid example"), "{}", text(&o));
    let (_tmp2, ws2) = support::example_copy();
    let fake2 = FakeOpenAi::start(&["running"], MODEL, &[]).await;
    assert_eq!(train(&ws2, &fake2, &["--yes", "--no-follow"]).await.status.code(), Some(0));
    let o = train(&ws2, &fake2, &["--cancel"]).await;
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(fake2.fake.lock().unwrap().cancelled);
    for w in [&ws, &ws2] {
        let loaded = tunebench::workspace::load(w).unwrap();
        assert!(loaded.lanes.iter().all(|l| !l.id.starts_with("ft-")));
        assert!(!w.join("finetune-job.json").exists());
    }
    let none = train(&ws2, &fake2, &["--cancel"]).await;
    assert!(text(&none).contains("no job in progress"), "{}", text(&none));
}

#[tokio::test(flavor = "multi_thread")]
async fn together_trains_a_lora_at_tunebenchs_rank_and_its_output_model_becomes_a_lane() {
    let (_tmp, ws) = support::example_copy();
    // A lane on Together's endpoint, as a user adds one; its key variable is Together's.
    add_lane(&ws, "together", "https://api.together.xyz/v1", "TOGETHER_API_KEY", "Qwen/Qwen2.5-7B-Instruct");
    let output = "me/Qwen2.5-7B-Instruct-triage-0123abcd";
    let fake = FakeOpenAi::start(
        &["pending", "queued", "running", "uploading", "completed"],
        output,
        &[(1, 1.5, 1.6), (2, 0.9, 1.0)],
    )
    .await;
    let extra = ["--yes", "--suffix", "triage", "--epochs", "2"];
    let o = train_on(&ws, "together", "TOGETHER_API_KEY", &fake, &extra).await;
    let t = text(&o);
    assert_eq!(o.status.code(), Some(0), "{t}");
    assert!(t.contains("fine-tune Qwen/Qwen2.5-7B-Instruct on"), "{t}");
    assert!(t.contains("training cost unknown"), "Together's prices are not in the table: {t}");
    assert!(t.contains("step 2 · train loss 0.9000"), "{t}");
    assert!(
        t.contains(&format!("job ft-0123abcd completed: {output}; lane `ft-triage` asks it (price unknown")),
        "{t}"
    );
    {
        let f = fake.fake.lock().unwrap();
        assert_eq!(f.uploads.len(), 2);
        // Together takes no per-turn weight.
        assert!(!f.uploads[0].2.contains("\"weight\""));
        let job = &f.created[0];
        assert_eq!(
            (job["lora"].as_bool(), job["lora_r"].as_u64(), job["n_epochs"].as_u64()),
            (Some(true), Some(16), Some(2))
        );
        assert_eq!(job["validation_file"], "file-2");
        assert!(f.requests.iter().all(|(_, auth)| auth.as_deref() == Some(&format!("Bearer {KEY}"))));
    }
    let loaded = tunebench::workspace::load(&ws).unwrap();
    let lane = loaded.lane("ft-triage").unwrap();
    assert_eq!((lane.model.as_str(), lane.base_url.as_deref()), (output, Some("https://api.together.xyz/v1")));
    assert_eq!(lane.api_key_env.as_deref(), Some("TOGETHER_API_KEY"));
    no_file_holds(&ws, KEY);
    // A job in progress on one provider is not followed as another's.
    std::fs::write(ws.join("finetune-job.json"), r#"{"provider":"together","base_url":"x","model":"m","suffix":null,"lane":"together","api_key_env":"TOGETHER_API_KEY","dataset_sha256":"","training_file":"file-1","validation_file":null,"job_id":"ft-1","status":"running","started_at":"t"}"#).unwrap();
    let o = train(&ws, &fake, &[]).await;
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("is on together: follow it with --on together"), "{}", text(&o));
}

#[tokio::test(flavor = "multi_thread")]
async fn fireworks_uploads_datasets_trains_and_loads_the_lora_onto_a_deployment_before_the_lane() {
    let (_tmp, ws) = support::example_copy();
    let model = "accounts/fireworks/models/qwen2p5-7b-instruct";
    add_lane(&ws, "fw", "https://api.fireworks.ai/inference/v1", "FIREWORKS_API_KEY", model);
    let output = "accounts/acme/models/triage";
    let states = ["JOB_STATE_CREATING", "JOB_STATE_VALIDATING", "JOB_STATE_RUNNING", "JOB_STATE_COMPLETED"];
    let fake = FakeOpenAi::start(&states, output, &[]).await;
    // Without an account and a deployment nothing is uploaded: Fireworks serves customers' LoRAs on deployments.
    let o = train_on(&ws, "fireworks", "FIREWORKS_API_KEY", &fake, &["--yes", "--suffix", "triage"]).await;
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("--on fireworks needs --account ID and --deployment"), "{}", text(&o));
    assert!(fake.fake.lock().unwrap().requests.is_empty());
    let dep = "accounts/acme/deployments/lora-host";
    let extra = ["--yes", "--suffix", "triage", "--account", "acme", "--deployment", dep];
    let o = train_on(&ws, "fireworks", "FIREWORKS_API_KEY", &fake, &extra).await;
    let t = text(&o);
    assert_eq!(o.status.code(), Some(0), "{t}");
    let model = format!("{output}#{dep}");
    assert!(t.contains(&format!("deployed: {model}")), "{t}");
    {
        let f = fake.fake.lock().unwrap();
        let reqs: Vec<&str> = f.requests.iter().map(|(r, _)| r.as_str()).collect();
        assert!(
            reqs.iter()
                .any(|r| r.starts_with("POST /accounts/acme/datasets/tunebench-train-") && r.ends_with(":upload"))
        );
        assert_eq!(f.uploads.len(), 2);
        let job = f.created.iter().find(|c| c.get("baseModel").is_some()).unwrap();
        assert_eq!(job["baseModel"], "accounts/fireworks/models/qwen2p5-7b-instruct");
        assert_eq!(job["loraRank"], 16);
        assert!(job["dataset"].as_str().unwrap().starts_with("accounts/acme/datasets/tunebench-train-"));
        assert!(job["evaluationDataset"].as_str().unwrap().starts_with("accounts/acme/datasets/tunebench-valid-"));
        assert!(f.created.iter().any(|c| c["deployed"]["deployment"] == dep));
        assert!(f.requests.iter().all(|(_, auth)| auth.as_deref() == Some(&format!("Bearer {KEY}"))));
    }
    let loaded = tunebench::workspace::load(&ws).unwrap();
    let lane = loaded.lane("ft-triage").unwrap();
    assert_eq!(
        (lane.model.as_str(), lane.base_url.as_deref()),
        (model.as_str(), Some("https://api.fireworks.ai/inference/v1"))
    );
    no_file_holds(&ws, KEY);
    // A job in progress is stopped by deleting it (the way Fireworks documents).
    let (_tmp2, ws2) = support::example_copy();
    std::fs::write(ws2.join("workspace.toml"), std::fs::read_to_string(ws.join("workspace.toml")).unwrap()).unwrap();
    let fake2 = FakeOpenAi::start(&["JOB_STATE_RUNNING"], output, &[]).await;
    let extra = ["--yes", "--account", "acme", "--deployment", dep, "--no-follow"];
    let started = train_on(&ws2, "fireworks", "FIREWORKS_API_KEY", &fake2, &extra).await;
    assert_eq!(started.status.code(), Some(0), "{}", text(&started));
    let cancelled = train_on(&ws2, "fireworks", "FIREWORKS_API_KEY", &fake2, &["--cancel"]).await;
    assert_eq!(cancelled.status.code(), Some(1), "{}", text(&cancelled));
    assert!(
        fake2
            .fake
            .lock()
            .unwrap()
            .requests
            .iter()
            .any(|(r, _)| r == "DELETE /accounts/acme/supervisedFineTuningJobs/sft-1")
    );
}
