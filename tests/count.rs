//! Prompt token counts: OpenAI's chat accounting against the API's own figures, local counts against runs.

use std::path::Path;

use tunebench::metrics::Counters;
use tunebench::metrics::count::{bpe, encoding_for, openai_chat_tokens};
use tunebench::workspace;

#[test]
fn openai_chat_counts_match_the_api_on_the_recorded_example() {
    let fx: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/openai_prompt_tokens.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let msgs = fx["messages"].as_array().unwrap();
    let messages: Vec<(&str, &str)> =
        msgs.iter().map(|m| (m["role"].as_str().unwrap(), m["content"].as_str().unwrap())).collect();
    let names: Vec<Option<&str>> = msgs.iter().map(|m| m["name"].as_str()).collect();
    for (model, want) in fx["usage_prompt_tokens"].as_object().unwrap() {
        let enc = encoding_for(model).unwrap_or_else(|| panic!("{model}"));
        assert_eq!(openai_chat_tokens(bpe(enc), &messages, &names), want.as_u64().unwrap(), "{model}");
    }
}

#[test]
fn known_ids_for_tiktoken_encodings() {
    // tiktoken's own examples: "hello world" is [15339, 1917] in cl100k_base and [24912, 2375] in o200k_base.
    let cl = bpe(encoding_for("gpt-4").unwrap());
    let o2 = bpe(encoding_for("gpt-4o-mini").unwrap());
    assert_eq!(cl.encode_ordinary("hello world"), [15339, 1917]);
    assert_eq!(o2.encode_ordinary("hello world"), [24912, 2375]);
    for m in ["gpt-5", "o3-mini", "openai/gpt-4.1", "gpt-4o-2024-08-06"] {
        assert!(encoding_for(m).is_some(), "{m}");
    }
    assert_eq!(encoding_for("llama3.1:8b"), None);
}

#[test]
fn each_backend_counts_its_own_way() {
    let dir = tempfile::tempdir().unwrap();
    let toml = r#"name = "c"
[prompts.p]
text = "Be brief."
[[lanes]]
id = "gpt"
backend = "openai"
model = "gpt-4o-mini"
prompt = "p"
[[lanes]]
id = "local-server"
backend = "openai"
base_url = "http://127.0.0.1:8080/v1"
api_key_env = ""
model = "qwen2.5-7b"
prompt = "p"
[[lanes]]
id = "claude"
backend = "anthropic"
model = "claude-sonnet-4-5"
prompt = "p"
"#;
    std::fs::write(dir.path().join("workspace.toml"), toml).unwrap();
    let ws = workspace::load(dir.path()).unwrap();
    let counts: Vec<_> = Counters::new().count_all(&ws, "hello world").into_iter().map(Result::unwrap).collect();
    // system "Be brief." (3 o200k tokens) + user "hello world" (2) + 2 roles + 2×3 framing + 3 priming.
    assert_eq!((counts[0].tokens, counts[0].estimated, counts[0].how.as_str()), (16, false, "o200k_base"));
    assert_eq!((counts[1].tokens, counts[1].estimated), (16, true), "an unknown model name is an estimate");
    assert!(counts[2].estimated && counts[2].how.starts_with('≈'));
}

#[test]
fn count_json_prints_one_line_per_lane_in_contract_order() {
    let dir = tempfile::tempdir().unwrap();
    let toml = "name = \"c\"\n[prompts.p]\ntext = \"Be brief.\"\n[models.gone]\npath = \"missing.gguf\"\n\
                [[lanes]]\nid = \"gpt\"\nbackend = \"openai\"\nmodel = \"gpt-4o-mini\"\nprompt = \"p\"\n\
                [[lanes]]\nid = \"claude\"\nbackend = \"anthropic\"\nmodel = \"claude-haiku-4-5\"\nprompt = \"p\"\n\
                [[lanes]]\nid = \"local\"\nbackend = \"local\"\nmodel = \"gone\"\nprompt = \"p\"\n";
    std::fs::write(dir.path().join("workspace.toml"), toml).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tunebench"))
        .args(["count", dir.path().to_str().unwrap(), "--input", "hello world", "--json"])
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[0], r#"{"lane":"gpt","prompt_tokens":16,"estimated":false,"error":null}"#);
    assert!(lines[1].starts_with(r#"{"lane":"claude","prompt_tokens":"#) && lines[1].contains(r#""estimated":true"#));
    assert!(
        lines[2].starts_with(r#"{"lane":"local","prompt_tokens":null,"estimated":false,"error":""#),
        "{}",
        lines[2]
    );
    assert!(lines[2].contains("missing.gguf"), "the error names the file: {}", lines[2]);
    assert_eq!(out.status.code(), Some(1), "a lane that cannot be counted fails the command");
}

#[test]
fn the_token_view_shows_exactly_the_counted_tokens() {
    let ws = workspace::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("workspaces/ticket-triage")).unwrap();
    let api = ws.lane("api").unwrap();
    let system = ws.prompt_text(&api.prompt).unwrap();
    let input = "Mon casque Aero X1 est cassé 🎧 — remboursement ?";
    let counters = Counters::new();
    let (_, segs) = counters.segments(api, None, system, input).unwrap();
    let count = counters.count(api, None, system, input).unwrap();
    let text: String = segs.iter().filter(|s| !s.framing).map(|s| s.text.as_str()).collect();
    assert_eq!(text, format!("{system}{input}"), "the tokens put back together are the prompt");
    let shown: u64 = segs.iter().map(|s| u64::from(s.tokens)).sum();
    // Content and framing as shown (per-message framing, the reply's priming) add up to the count.
    assert_eq!(shown, count.tokens);
    assert!(segs.iter().any(|s| s.text.contains('🎧') && s.tokens >= 2), "the emoji is whole, over its tokens");
}

#[test]
fn prices_come_from_overrides_then_the_table_and_unknown_stays_unknown() {
    use tunebench::metrics::prices::{Rate, rate};
    let dir = tempfile::tempdir().unwrap();
    let toml = "name = \"p\"\n[prompts.p]\ntext = \"x\"\n\
                [models.hourly]\npath = \"a.gguf\"\ngpu_hour_usd = 2.4\n[models.free]\npath = \"b.gguf\"\n\
                [[lanes]]\nid = \"over\"\nbackend = \"openai\"\nmodel = \"gpt-4o-mini\"\nprompt = \"p\"\n\
                [[lanes]]\nid = \"table\"\nbackend = \"openai\"\nmodel = \"gpt-4o-2024-08-06\"\nprompt = \"p\"\n\
                [[lanes]]\nid = \"unknown\"\nbackend = \"openai\"\nmodel = \"my-finetune\"\nprompt = \"p\"\n\
                [[lanes]]\nid = \"gpu\"\nbackend = \"local\"\nmodel = \"hourly\"\nprompt = \"p\"\n\
                [[lanes]]\nid = \"unpriced\"\nbackend = \"local\"\nmodel = \"free\"\nprompt = \"p\"\n\
                [pricing.\"gpt-4o-mini\"]\ninput_per_mtok = 1.0\noutput_per_mtok = 2.0\n";
    std::fs::write(dir.path().join("workspace.toml"), toml).unwrap();
    let ws = workspace::load(dir.path()).unwrap();
    let r = |id: &str| rate(&ws, ws.lane(id).unwrap());
    assert!(matches!(r("over"), Some(Rate::Tokens(p)) if p.input_per_mtok == 1.0 && p.cached_input_per_mtok.is_none()));
    assert!(
        matches!(r("table"), Some(Rate::Tokens(p)) if p.input_per_mtok == 2.5 && p.cached_input_per_mtok == Some(1.25))
    );
    assert_eq!(r("unknown"), None);
    assert_eq!(r("gpu"), Some(Rate::GpuHour(2.4)));
    assert_eq!(r("unpriced"), None, "a local model without a price is unknown, not free");
}
