//! Workspace files: every validation rule has a fixture whose error names file, line and key; saves keep comments.

mod support;

use std::path::Path;

use tunebench::workspace::{self, BackendKind, LaneEdit, PromptSource, WorkspaceError};

/// (fixture, line, key, words the message must contain)
const INVALID: &[(&str, usize, &str, &str)] = &[
    ("syntax", 1, "(syntax)", "invalid basic string"),
    ("bad_type", 14, "lanes[0].max_tokens", "expected u32"),
    ("unknown_key", 14, "lanes[0].temprature", "unknown field `temprature`"),
    ("unknown_top_level", 2, "colour", "unknown field `colour`"),
    ("unknown_backend", 17, "lanes[1].backend", "unknown backend `opneai`"),
    ("missing_prompt", 13, "lanes[0].prompt", "prompt variant `medium` is not defined"),
    ("duplicate_lane", 16, "lanes[1].id", "duplicate lane id `base`"),
    ("unknown_model", 12, "lanes[0].model", "`smollm3` is not one"),
    ("prompt_both", 3, "prompts.long", "not both"),
    ("prompt_neither", 3, "prompts.long", "needs `file` or `text`"),
    ("prompt_file_missing", 4, "prompts.long.file", "prompts/nope.md"),
    ("no_lanes", 1, "lanes", "at least one [[lanes]]"),
    ("bad_device", 8, "models.m.device", "unknown device `gpu`"),
    ("bad_kv_cache", 9, "models.m.kv_cache", "unknown KV cache element `q8` (expected f32 or f16)"),
    ("temperature_range", 14, "lanes[0].temperature", "between 0 and 2"),
    ("top_p_range", 14, "lanes[0].top_p", "(0, 1]"),
    ("max_tokens_zero", 14, "lanes[0].max_tokens", "at least 1"),
    ("top_k_zero", 14, "lanes[0].top_k", "at least 1"),
    ("repetition_penalty_negative", 14, "lanes[0].repetition_penalty", "> 0"),
    ("bad_lane_id", 10, "lanes[0].id", "`base lane`"),
    ("adapter_on_api", 14, "lanes[0].adapter", "local lanes only"),
    ("base_url_on_local", 14, "lanes[0].base_url", "only API lanes"),
    ("negative_price", 16, "pricing.\"gpt-4o-mini\".input_per_mtok", "≥ 0"),
    ("missing_lane_field", 9, "lanes[0]", "missing field `prompt`"),
    ("missing_name", 1, "(root)", "missing field `name`"),
    ("timeout_range", 14, "lanes[0].connect_timeout_s", "seconds in (0, 3600]"),
    ("max_retries_range", 14, "lanes[0].max_retries", "at most 10"),
    ("concurrency_range", 14, "lanes[0].concurrency", "must be 1 to 64"),
    ("concurrency_on_local", 14, "lanes[0].concurrency", "only API lanes"),
    ("response_format_unknown", 14, "lanes[0].response_format", "unknown response_format `yaml`"),
    ("json_schema_missing", 14, "lanes[0].json_schema", "schemas/nope.json"),
    ("json_schema_without_format", 14, "lanes[0].response_format", "needs `json_schema"),
    ("top_k_on_openai", 14, "lanes[0].top_k", "has no top_k"),
    ("api_key_env_pasted_key", 14, "lanes[0].api_key_env", "if a key was pasted here"),
    ("base_url_scheme", 14, "lanes[0].base_url", "http:// or https://"),
    ("stop_too_many", 14, "lanes[0].stop", "at most 4 stop"),
    ("repetition_penalty_on_api", 14, "lanes[0].repetition_penalty", "local lanes only"),
    ("seed_on_anthropic", 14, "lanes[0].seed", "has no seed"),
    ("response_format_on_anthropic", 14, "lanes[0].response_format", "no response_format"),
    ("anthropic_temperature", 14, "lanes[0].temperature", "between 0 and 1"),
    ("timeout_on_local", 14, "lanes[0].idle_timeout_s", "only API lanes"),
    ("base_url_without_key_env", 14, "lanes[0].base_url", "OPENAI_API_KEY goes only to api.openai.com"),
    ("dataset_unknown_prompt", 22, "dataset.system_prompt", "no prompt variant `short` (variants: long)"),
    ("dataset_unknown_lane", 22, "dataset.lane", "no lane `tuned` (lanes: base, api)"),
    ("dataset_api_lane", 22, "dataset.lane", "is an API lane; name a local lane"),
    ("chat_template_missing", 8, "models.m.chat_template", "cannot read"),
    ("chat_template_syntax", 8, "models.m.chat_template", "the inline template, line 2: not a Jinja template"),
    ("enable_thinking_on_api", 11, "lanes[0].enable_thinking", "local lanes only"),
];

#[test]
fn every_invalid_fixture_names_file_line_and_key() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/invalid");
    let on_disk = std::fs::read_dir(&dir).unwrap().count();
    assert_eq!(on_disk, INVALID.len(), "each fixture needs a row in INVALID");
    for &(name, want_line, want_key, words) in INVALID {
        let path = dir.join(format!("{name}.toml"));
        let err = workspace::load(&path).expect_err(name);
        let WorkspaceError::Invalid { file, line, key, message, .. } = &err else { panic!("{name}: {err}") };
        assert_eq!(file, &path, "{name}");
        assert_eq!((*line, key.as_str()), (want_line, want_key), "{name}: {err}");
        assert!(message.contains(words), "{name}: `{message}` lacks `{words}`");
        let shown = err.to_string();
        assert!(shown.starts_with(&format!("{}:{want_line}:", path.display())), "{name}: {shown}");
    }
}

#[test]
fn the_example_workspace_loads_with_three_classic_lanes() {
    let ws = workspace::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("workspaces/ticket-triage")).unwrap();
    assert_eq!(ws.name, "ticket-triage");
    let ids: Vec<_> = ws.lanes.iter().map(|l| (l.id.as_str(), l.backend, l.prompt.as_str())).collect();
    assert_eq!(
        ids,
        [
            ("base", BackendKind::Local, "long"),
            ("tuned", BackendKind::Local, "short"),
            ("api", BackendKind::OpenAi, "long")
        ]
    );
    assert_eq!(ws.lanes[1].adapter.as_deref(), Some("adapters/ticket-lora-v2"));
    assert_eq!(ws.lanes[2].api_key_env.as_deref(), Some("OPENAI_API_KEY"));
    assert!(ws.models["smollm2"].path.ends_with("models/SmolLM2-135M-Instruct.Q4_1.gguf"));
    let long = &ws.prompts["long"];
    assert!(matches!(long.source, PromptSource::File(_)));
    // ~800+ tokens: at roughly 4 characters a token, that is well over 3,200 characters.
    assert!(long.text.len() > 4000, "long prompt is {} bytes", long.text.len());
    assert!(long.text.matches("Ticket:").count() >= 3, "3+ few-shot examples");
    assert_eq!(ws.prompts["short"].text.lines().count(), 1);
    let inputs = workspace::load_inputs(&ws.inputs_dir()).unwrap();
    assert!(inputs.len() >= 12, "{} saved inputs", inputs.len());
    assert!(inputs.iter().all(|i| i.text.len() > 20));
    assert_eq!(ws.pricing["gpt-4o-mini"].input_per_mtok, 0.15);
}

#[test]
fn saving_keeps_comments_and_key_order() {
    let (_tmp, root) = support::example_copy();
    let before = std::fs::read_to_string(root.join("workspace.toml")).unwrap();
    let mut ws = workspace::load(&root).unwrap();
    assert!(!ws.is_dirty());
    ws.edit_lane(1, LaneEdit::MaxTokens(128)).unwrap();
    ws.edit_lane(1, LaneEdit::Temperature(0.7)).unwrap();
    ws.set_prompt_text("short", "Return the ticket as JSON.").unwrap();
    ws.set_prompt_text("long", "A new long prompt.\n").unwrap();
    assert!(ws.is_dirty());
    ws.save().unwrap();
    assert!(!ws.is_dirty());

    let after = std::fs::read_to_string(root.join("workspace.toml")).unwrap();
    // Every comment line survives, in order.
    let comments =
        |s: &str| s.lines().filter(|l| l.trim_start().starts_with('#')).map(str::to_string).collect::<Vec<_>>();
    assert_eq!(comments(&before), comments(&after));
    assert!(
        after.contains("path = \"../../models/SmolLM2-135M-Instruct.Q4_1.gguf\"   # fetched by scripts/fetch-model")
    );
    // Only the edited values changed; the lines around them stay in place.
    let changed: Vec<(&str, &str)> = before.lines().zip(after.lines()).filter(|(a, b)| a != b).collect();
    assert_eq!(
        changed,
        [
            (
                "text = \"Extract the support ticket as JSON with keys intent, product, urgency, sentiment, summary.\"",
                "text = \"Return the ticket as JSON.\""
            ),
            ("max_tokens = 256", "max_tokens = 128"),
            ("temperature = 0.0", "temperature = 0.7"),
        ]
    );
    assert_eq!(before.lines().count(), after.lines().count());

    // Inserted keys and tables land beside their kin.
    ws.edit_lane(2, LaneEdit::Seed(Some(7))).unwrap();
    ws.add_prompt_variant("medium", "Medium prompt.").unwrap();
    ws.save().unwrap();
    let after = std::fs::read_to_string(root.join("workspace.toml")).unwrap();
    assert_eq!(comments(&before), comments(&after));
    assert!(after.contains("temperature = 0.0\nseed = 7\n"), "{after}");
    assert!(after.contains("[prompts.medium]\nfile = \"prompts/medium.md\""));
    assert_eq!(std::fs::read_to_string(root.join("prompts/medium.md")).unwrap(), "Medium prompt.");
    assert_eq!(std::fs::read_to_string(root.join("prompts/long.md")).unwrap(), "A new long prompt.\n");

    // The saved workspace loads again with the edits.
    let again = workspace::load(&root).unwrap();
    assert_eq!(again.lanes[1].sampling.max_tokens, 128);
    assert_eq!(again.lanes[1].sampling.temperature, 0.7);
    assert_eq!(again.lanes[2].sampling.seed, Some(7));
    assert_eq!(again.prompts["medium"].text, "Medium prompt.");
    assert_eq!(again.prompts["short"].text, "Return the ticket as JSON.");
}

#[test]
fn edits_that_would_break_the_workspace_are_refused() {
    let (_tmp, root) = support::example_copy();
    let mut ws = workspace::load(&root).unwrap();
    let err = ws.edit_lane(0, LaneEdit::Prompt("nope".into())).unwrap_err().to_string();
    assert!(err.contains("`nope` is not defined"), "{err}");
    let err = ws.edit_lane(0, LaneEdit::Model("llama".into())).unwrap_err().to_string();
    assert!(err.contains("[models] key"), "{err}");
    let err = ws.edit_lane(2, LaneEdit::Adapter(Some("a".into()))).unwrap_err().to_string();
    assert!(err.contains("local lanes only"), "{err}");
    let err = ws.add_prompt_variant("long", "x").unwrap_err().to_string();
    assert!(err.contains("already exists"), "{err}");
    assert!(!ws.is_dirty(), "a refused edit changes nothing");
}

#[test]
fn no_op_edits_leave_the_workspace_clean_and_variant_files_are_never_clobbered() {
    let (_tmp, root) = support::example_copy();
    let mut ws = workspace::load(&root).unwrap();
    ws.edit_lane(0, LaneEdit::MaxTokens(256)).unwrap();
    ws.edit_lane(0, LaneEdit::Prompt("long".into())).unwrap();
    assert!(!ws.is_dirty(), "setting a value to what it is changes nothing");
    std::fs::write(root.join("prompts/draft.md"), "someone's notes").unwrap();
    let err = ws.add_prompt_variant("draft", "x").unwrap_err().to_string();
    assert!(err.contains("prompts/draft.md already exists"), "{err}");
    assert_eq!(std::fs::read_to_string(root.join("prompts/draft.md")).unwrap(), "someone's notes");
}

#[test]
fn a_failed_save_keeps_prompt_edits_for_the_next_try() {
    let (_tmp, root) = support::example_copy();
    let mut ws = workspace::load(&root).unwrap();
    ws.set_prompt_text("long", "edited").unwrap();
    // Make prompts/long.md unwritable: a non-empty directory in its place cannot be renamed over.
    let prompts = root.join("prompts");
    std::fs::remove_file(prompts.join("long.md")).unwrap();
    std::fs::create_dir_all(prompts.join("long.md/in-the-way")).unwrap();
    assert!(ws.save().is_err());
    assert!(ws.is_dirty());
    std::fs::remove_dir_all(prompts.join("long.md")).unwrap();
    ws.save().unwrap();
    assert_eq!(std::fs::read_to_string(prompts.join("long.md")).unwrap(), "edited");
}

#[test]
fn multi_line_inline_prompts_stay_readable_when_saved() {
    let (_tmp, root) = support::example_copy();
    let mut ws = workspace::load(&root).unwrap();
    ws.set_prompt_text("short", "Line one.\nLine two.").unwrap();
    ws.save().unwrap();
    let text = std::fs::read_to_string(root.join("workspace.toml")).unwrap();
    assert!(text.contains("Line one.\nLine two."), "written as a multi-line string: {text}");
    assert_eq!(workspace::load(&root).unwrap().prompts["short"].text, "Line one.\nLine two.");
}

#[test]
fn a_key_pasted_into_api_key_env_is_not_echoed() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/invalid/api_key_env_pasted_key.toml");
    let err = workspace::load(&path).unwrap_err().to_string();
    assert!(!err.contains("sk-proj-abc123"), "{err}");
}

#[test]
fn api_lane_options_load_with_defaults_and_schema_files() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("schemas")).unwrap();
    let bare = r#"{"type":"object","properties":{"intent":{"type":"string"}},"required":["intent"],"additionalProperties":false}"#;
    std::fs::write(dir.path().join("schemas/ticket v2.json"), bare).unwrap();
    std::fs::write(
        dir.path().join("schemas/wrapped.json"),
        format!(r#"{{"name":"ticket","strict":false,"schema":{bare}}}"#),
    )
    .unwrap();
    let toml = r#"name = "w"
[prompts.p]
text = "x"
[[lanes]]
id = "a"
backend = "openai"
model = "gpt-4o-mini"
prompt = "p"
json_schema = "schemas/ticket v2.json"
idle_timeout_s = 2.5
max_retries = 0
[[lanes]]
id = "b"
backend = "openai"
model = "gpt-4o-mini"
prompt = "p"
response_format = "json_schema"
json_schema = "schemas/wrapped.json"
[[lanes]]
id = "c"
backend = "anthropic"
model = "claude-sonnet-4-5"
prompt = "p"
[[lanes]]
id = "d"
backend = "openai"
model = "o3"
prompt = "p"
"#;
    std::fs::write(dir.path().join("workspace.toml"), toml).unwrap();
    let ws = workspace::load(dir.path()).unwrap();
    let (a, b, c) = (&ws.lanes[0].api, &ws.lanes[1].api, &ws.lanes[2].api);
    let workspace::ResponseFormat::JsonSchema { json_schema, .. } = &a.response_format else { panic!("{a:?}") };
    assert_eq!((json_schema["name"].as_str(), json_schema["strict"].as_bool()), (Some("ticket_v2"), Some(true)));
    assert_eq!(json_schema["schema"]["required"][0], "intent");
    assert_eq!((a.idle_timeout, a.max_retries), (std::time::Duration::from_millis(2500), 0));
    let workspace::ResponseFormat::JsonSchema { json_schema, .. } = &b.response_format else { panic!("{b:?}") };
    assert_eq!((json_schema["name"].as_str(), json_schema["strict"].as_bool()), (Some("ticket"), Some(false)));
    assert_eq!(c, &workspace::ApiOptions::default());
    let d = &ws.lanes[3].api;
    assert_eq!((d.first_byte_timeout.as_secs(), d.idle_timeout.as_secs()), (600, 600), "reasoning models think first");
    assert_eq!(BackendKind::Anthropic.default_key_env(), Some("ANTHROPIC_API_KEY"));
}

/// A workspace whose one local lane runs model `path`, written under `dir/ws`.
fn tiny_workspace(dir: &Path, path: &str) -> std::path::PathBuf {
    let root = dir.join("ws");
    std::fs::create_dir_all(&root).unwrap();
    let toml = format!(
        "name = \"t\"\n[prompts.p]\ntext = \"Be brief.\"\n[models.tiny]\npath = \"{path}\"\ndevice = \"cpu\"\n\
         [[lanes]]\nid = \"a\"\nbackend = \"local\"\nmodel = \"tiny\"\nprompt = \"p\"\n"
    );
    std::fs::write(root.join("workspace.toml"), toml).unwrap();
    root
}

#[test]
fn an_hf_model_path_in_a_workspace_resolves_in_the_cache_as_on_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let (gguf, _) = support::tiny::write(dir.path(), None);
    let hub = dir.path().join("hub");
    let snap = hub.join("models--acme--tiny/snapshots/abc123");
    std::fs::create_dir_all(&snap).unwrap();
    std::fs::create_dir_all(hub.join("models--acme--tiny/refs")).unwrap();
    std::fs::write(hub.join("models--acme--tiny/refs/main"), "abc123").unwrap();
    std::fs::copy(&gguf, snap.join("tiny.gguf")).unwrap();
    let root = tiny_workspace(dir.path(), "hf:acme/tiny/tiny.gguf");
    let ws = workspace::load(&root).unwrap();
    assert_eq!(ws.models["tiny"].path, Path::new("hf:acme/tiny/tiny.gguf"), "not joined to the workspace folder");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tunebench"))
        .args(["count", root.to_str().unwrap(), "--input", "hello", "--json"])
        .env("HF_HUB_CACHE", &hub)
        .output()
        .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{stdout}{stderr}");
    let line: serde_json::Value = serde_json::from_str(stdout.lines().next().unwrap()).unwrap();
    assert_eq!(line["estimated"], false, "counted in the cached model's tokenizer: {line}");
    // A malformed spec is an error at its line, not a file that is never found.
    let bad = tiny_workspace(dir.path(), "hf:acme");
    let err = workspace::load(&bad).unwrap_err().to_string();
    assert!(
        err.contains("workspace.toml:5") && err.contains("models.tiny.path") && err.contains("hf:org/name"),
        "{err}"
    );
}

#[cfg(unix)]
#[test]
fn a_fifo_where_a_workspace_file_belongs_is_refused_not_waited_on() {
    let dir = tempfile::tempdir().unwrap();
    let mkfifo = |p: &Path| assert!(std::process::Command::new("mkfifo").arg(p).status().unwrap().success());
    let run = |root: &Path| {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_tunebench"))
            .args(["dataset", root.to_str().unwrap(), "stats"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let start = std::time::Instant::now();
        while child.try_wait().unwrap().is_none() {
            if start.elapsed() > std::time::Duration::from_secs(20) {
                child.kill().unwrap();
                panic!("blocked on a FIFO");
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let out = child.wait_with_output().unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let root = dir.path().join("fifo");
    std::fs::create_dir_all(&root).unwrap();
    mkfifo(&root.join("workspace.toml"));
    let (code, err) = run(&root);
    assert_ne!(code, Some(0));
    assert!(err.contains("workspace.toml") && err.contains("not a regular file (a FIFO)"), "{err}");
    // The same for a split file of a valid workspace.
    let root = tiny_workspace(dir.path(), "m.gguf");
    std::fs::create_dir_all(root.join("dataset")).unwrap();
    mkfifo(&root.join("dataset/valid.jsonl"));
    let (code, err) = run(&root);
    assert_ne!(code, Some(0));
    assert!(err.contains("valid.jsonl") && err.contains("not a regular file (a FIFO)"), "{err}");
}

#[test]
fn a_bom_first_in_workspace_toml_is_skipped_and_bad_utf8_names_line_and_byte() {
    let dir = tempfile::tempdir().unwrap();
    let root = tiny_workspace(dir.path(), "m.gguf");
    let file = root.join("workspace.toml");
    let text = std::fs::read(&file).unwrap();
    std::fs::write(&file, [b"\xEF\xBB\xBF".as_slice(), &text].concat()).unwrap();
    assert_eq!(workspace::load(&root).unwrap().name, "t");
    let bad = String::from_utf8(text).unwrap().replace("Be brief.", "Be \u{1}brief.").into_bytes();
    std::fs::write(&file, bad.into_iter().map(|b| if b == 1 { 0xFF } else { b }).collect::<Vec<u8>>()).unwrap();
    let err = workspace::load(&root).unwrap_err().to_string();
    assert!(err.contains("workspace.toml") && err.contains("line 3, byte 12 (0xFF) is not UTF-8"), "{err}");
}

/// A lane another command wrote (`train --on` appends one) is never lost to a save from a workspace read
/// before it: the save refuses, saying why, and writes nothing; a workspace read after it saves.
#[test]
fn a_save_never_replaces_a_workspace_file_changed_on_disk_since_it_was_read() {
    let (_tmp, root) = support::example_copy();
    let mut ws = workspace::load(&root).unwrap();
    ws.set_prompt_text("short", "edited in the TUI").unwrap();
    let file = root.join("workspace.toml");
    let mut text = std::fs::read_to_string(&file).unwrap();
    text.push_str("\n[[lanes]]\nid = \"ft-x\"\nbackend = \"openai\"\nmodel = \"ft:gpt-4o-mini-2024-07-18:org::x\"\nprompt = \"short\"\n");
    std::fs::write(&file, &text).unwrap();
    let err = ws.save().unwrap_err();
    assert!(matches!(err, WorkspaceError::Unsavable { .. }), "{err}");
    assert!(err.to_string().contains("changed on disk since it was read"), "{err}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), text, "nothing written");
    assert!(ws.is_dirty(), "the edit is kept in memory");
    let mut fresh = workspace::load(&root).unwrap();
    fresh.set_prompt_text("short", "edited again").unwrap();
    fresh.save().unwrap();
    let saved = workspace::load(&root).unwrap();
    assert!(saved.lane("ft-x").is_some());
    assert_eq!(saved.prompts["short"].text, "edited again");
    // Its own saves do not trip it.
    fresh.set_prompt_text("short", "and again").unwrap();
    fresh.save().unwrap();
}

/// An open workspace takes lanes and prices appended on disk (a hosted job's `ft-` lane) beside its unsaved
/// edits, and a save then writes both; any other change on disk under unsaved edits is refused, nothing lost.
#[test]
fn an_open_workspace_adopts_appended_lanes_beside_its_edits_and_refuses_other_changes() {
    let (_tmp, root) = support::example_copy();
    let file = root.join("workspace.toml");
    let mut ws = workspace::load(&root).unwrap();
    ws.set_prompt_text("short", "edited in the TUI").unwrap();
    let mut text = std::fs::read_to_string(&file).unwrap();
    text.push_str(
        "\n[[lanes]]\nid = \"ft-x\"\nbackend = \"openai\"\nmodel = \"ft:m\"\nprompt = \"short\"\n\n\
         [pricing.\"ft:m\"]\ninput_per_mtok = 0.3\noutput_per_mtok = 1.2\n",
    );
    std::fs::write(&file, &text).unwrap();
    let lanes = ws.lanes.len();
    assert_eq!(ws.adopt(workspace::load(&root).unwrap()).unwrap(), 1);
    assert_eq!(ws.lanes.len(), lanes + 1);
    assert!(ws.is_dirty() && ws.pricing.contains_key("ft:m"));
    ws.save().unwrap();
    let saved = workspace::load(&root).unwrap();
    assert!(saved.lane("ft-x").is_some() && saved.pricing["ft:m"].output_per_mtok == 1.2);
    assert_eq!(saved.prompts["short"].text, "edited in the TUI");
    // Not an append (a key changed in place) under unsaved edits: refused, the edits and the file kept.
    ws.set_prompt_text("short", "edited once more").unwrap();
    let changed = std::fs::read_to_string(&file).unwrap().replace("max_tokens = 256", "max_tokens = 255");
    std::fs::write(&file, &changed).unwrap();
    let err = ws.adopt(workspace::load(&root).unwrap()).unwrap_err();
    assert!(err.contains("unsaved edits"), "{err}");
    assert_eq!(ws.prompts["short"].text, "edited once more");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), changed);
    // With nothing unsaved, all of it is taken.
    let mut clean = workspace::load(&root).unwrap();
    let mut more = changed.clone();
    more.push_str("\n[[lanes]]\nid = \"ft-y\"\nbackend = \"openai\"\nmodel = \"ft:n\"\nprompt = \"short\"\n");
    std::fs::write(&file, &more).unwrap();
    assert_eq!(clean.adopt(workspace::load(&root).unwrap()).unwrap(), 1);
    assert!(clean.lane("ft-y").is_some() && !clean.is_dirty());
}
