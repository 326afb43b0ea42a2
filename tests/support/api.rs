//! Helpers for the API lane tests: a key in an injected environment, one-off workspaces of API lanes, runs.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use super::http::{MockServer, Reply};
use tunebench::cli::headless;
use tunebench::engine::Registry;
use tunebench::engine::api::{ApiBackend, Env};
use tunebench::metrics::LaneReport;
use tunebench::workspace::{self, BackendKind, Workspace};

pub const KEY: &str = "sk-tunebench-test-7f3a9c0e11";

pub fn env() -> Env {
    let vars: HashMap<String, String> = [("TB_KEY".to_string(), KEY.to_string())].into();
    Arc::new(move |name| vars.get(name).cloned())
}

pub fn registry() -> Registry {
    Registry::default()
        .with(BackendKind::OpenAi, ApiBackend::new(BackendKind::OpenAi, env()))
        .with(BackendKind::Anthropic, ApiBackend::new(BackendKind::Anthropic, env()))
}

/// An API lane; `extra` adds keys (timeouts, sampling …).
pub fn lane(id: &str, backend: &str, base_url: &str, extra: &str) -> String {
    format!(
        "[[lanes]]\nid = \"{id}\"\nbackend = \"{backend}\"\nmodel = \"test-model\"\nprompt = \"p\"\n\
         base_url = \"{base_url}\"\napi_key_env = \"TB_KEY\"\nmax_tokens = 64\nmax_retries = 2\n{extra}\n"
    )
}

pub fn workspace(dir: &Path, lanes: &[String]) -> Workspace {
    let toml = format!("name = \"api-test\"\n[prompts.p]\ntext = \"Answer briefly.\"\n\n{}", lanes.concat());
    std::fs::write(dir.join("workspace.toml"), toml).unwrap();
    workspace::load(dir).unwrap()
}

/// Runs every lane of a one-off workspace on `input`; returns the reports and warnings.
pub async fn run(lanes: &[String]) -> (Vec<LaneReport>, Vec<String>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let ws = workspace(dir.path(), lanes);
    let all = headless::select_lanes(&ws, &[]).unwrap();
    let done = headless::run(&ws, "Where is my order #1234?", &all, registry()).await;
    (done.reports, done.warnings, dir)
}

pub async fn openai_one(replies: Vec<Reply>, extra: &str) -> (LaneReport, Vec<String>, MockServer) {
    let server = MockServer::start(replies).await;
    let (mut reports, warnings, _dir) = run(&[lane("api", "openai", &format!("{}/v1", server.url), extra)]).await;
    (reports.remove(0), warnings, server)
}
