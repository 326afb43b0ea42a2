//! Each model family's own chat template rendered as transformers renders it, the system-prompt fold for
//! templates without a system role, end-of-turn stops, the folder layouts and the workspace override.

mod support;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use support::tiny;
use tokio::sync::mpsc;
use tunebench::engine::local::LocalBackend;
use tunebench::engine::local::prompt::PromptTokenizer;
use tunebench::engine::local::template::{ChatTemplate, FOLD_NOTE, RenderOptions};
use tunebench::engine::local::tokenizer::{Model, TokenType, Vocab};
use tunebench::engine::{Engine, EngineEvent, EventKind, Registry, RunRequest};
use tunebench::workspace::{self, BackendKind};

fn fixtures() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/templates")
}

fn template(name: &str) -> String {
    std::fs::read_to_string(fixtures().join(format!("{name}.jinja"))).unwrap()
}

/// Llama 3.x prints today's date; expected.json was made with a fixed one.
fn undated(text: &str) -> String {
    text.lines()
        .map(|l| if l.starts_with("Today Date: ") { "Today Date: (today)" } else { l })
        .collect::<Vec<_>>()
        .join("\n")
}

/// expected.json holds what jinja2 (set up as transformers' apply_chat_template sets it up) renders for each
/// family's template; tests/fixtures/templates/render.py made it, and says how.
#[test]
fn family_templates_render_what_transformers_renders() {
    let cases: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(fixtures().join("expected.json")).unwrap()).unwrap();
    let mut families = std::collections::BTreeSet::new();
    for c in &cases {
        let name = c["template"].as_str().unwrap();
        families.insert(name);
        let t = ChatTemplate::new(Some(&template(name)), |_| false).unwrap();
        let messages: Vec<(&str, &str)> = c["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| (m[0].as_str().unwrap(), m[1].as_str().unwrap()))
            .collect();
        let opts = RenderOptions { enable_thinking: c["enable_thinking"].as_bool().unwrap() };
        let generation = c["add_generation_prompt"].as_bool().unwrap();
        let (bos, eos) = (c["bos"].as_str().unwrap(), c["eos"].as_str().unwrap());
        let r = t.render_chat_with(&messages, generation, bos, eos, opts).unwrap();
        let label = format!("{name} / {} / thinking {}", c["case"], opts.enable_thinking);
        assert_eq!(undated(&r.text), undated(c["expected"].as_str().unwrap()), "{label}");
        assert_eq!(r.folded, c["folded"].as_bool().unwrap(), "{label}");
        // The user's own text is always plain (never read as control tokens), trimmed or not.
        let user = messages.iter().find(|m| m.0 == "user").unwrap().1;
        assert!(r.plain.iter().any(|p| r.text[p.clone()].contains(user.trim())), "{label}: {:?}", r.plain);
    }
    let want = [
        "gemma-2",
        "gemma-3",
        "llama-3.2",
        "mistral-nemo",
        "mistral-v0.2",
        "mistral-v0.3",
        "phi-3.5",
        "phi-4-mini",
        "qwen2.5",
        "qwen3",
        "smollm3",
    ];
    assert_eq!(families.into_iter().collect::<Vec<_>>(), want);
}

#[test]
fn a_template_that_refuses_or_drops_the_system_turn_gets_it_folded_into_the_user_turn() {
    // Gemma 2 raises on a system role; the fold is the system text, a blank line, then the user text.
    let gemma = ChatTemplate::new(Some(&template("gemma-2")), |_| false).unwrap();
    let r = gemma.render("Be brief.", "Hi", "<bos>", "<eos>").unwrap();
    assert!(r.folded);
    assert_eq!(r.text, "<bos><start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n<start_of_turn>model\n");
    // Without a system prompt nothing is folded.
    assert!(!gemma.render("", "Hi", "<bos>", "<eos>").unwrap().folded);
    // A template that renders only user turns drops the system prompt silently: folded too.
    let drops = ChatTemplate::new(
        Some("{% for m in messages %}{% if m.role == 'user' %}[U]{{ m.content }}{% endif %}{% endfor %}"),
        |_| false,
    )
    .unwrap();
    let r = drops.render("Sys", "Hi", "", "").unwrap();
    assert_eq!((r.text.as_str(), r.folded), ("[U]Sys\n\nHi", true));
    // A template that keeps the system turn is left alone.
    let keeps = ChatTemplate::new(Some(&template("qwen2.5")), |_| false).unwrap();
    assert!(!keeps.render("Sys", "Hi", "", "").unwrap().folded);
    // A template broken for other reasons keeps its own error.
    let broken = ChatTemplate::new(Some("{{ raise_exception('no, never') }}"), |_| false).unwrap();
    assert!(broken.render("Sys", "Hi", "", "").unwrap_err().to_string().contains("no, never"));
}

#[test]
fn enable_thinking_reaches_the_template() {
    let qwen3 = ChatTemplate::new(Some(&template("qwen3")), |_| false).unwrap();
    let off = qwen3.render("", "Hi", "", "").unwrap();
    assert!(off.text.ends_with("<|im_start|>assistant\n<think>\n\n</think>\n\n"), "{:?}", off.text);
    let on = qwen3.render_with("", "Hi", "", "", RenderOptions { enable_thinking: true }).unwrap();
    assert!(on.text.ends_with("<|im_start|>assistant\n"), "{:?}", on.text);
}

#[test]
fn end_of_turn_tokens_stop_by_id_whatever_their_type() {
    let tokens: Vec<String> =
        ["a", "<|end|>", "<|eom_id|>", "<|eot_id|>", "<end_of_turn>", "<|im_end|>"].map(String::from).to_vec();
    // Phi-3's `<|end|>` and Llama 3.1's `<|eom_id|>` come as plain (user-defined or normal) tokens.
    let types = vec![
        TokenType::Normal,
        TokenType::UserDefined,
        TokenType::Normal,
        TokenType::Control,
        TokenType::Control,
        TokenType::Control,
    ];
    let v = Vocab::finish(
        tokens,
        types,
        vec![0.0; 6],
        Model::Spm { add_space_prefix: false },
        None,
        None,
        Vec::new(),
        false,
        None,
    );
    let mut stops = v.stop_ids.clone();
    stops.sort();
    assert_eq!(stops, [1, 2, 3, 4, 5]);
}

/// The marker each family's template writes after an assistant's answer (expected.json's "4.") is a stop token,
/// whatever type the vocabulary gives it, so generation ends where the template ends a turn.
#[test]
fn each_familys_end_of_turn_marker_stops_generation() {
    let cases: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(fixtures().join("expected.json")).unwrap()).unwrap();
    let mut seen = std::collections::BTreeSet::new();
    for c in cases.iter().filter(|c| c["case"] == "system+user+assistant") {
        let text = c["expected"].as_str().unwrap();
        let after = &text[text.find("4.").unwrap() + 2..];
        let marker = &after[..after.find('>').unwrap() + 1];
        seen.insert((c["template"].as_str().unwrap(), marker));
        for kind in [TokenType::Normal, TokenType::UserDefined, TokenType::Control] {
            let tokens = vec!["a".to_string(), marker.to_string()];
            let v = Vocab::finish(
                tokens,
                vec![TokenType::Normal, kind],
                vec![0.0; 2],
                Model::Spm { add_space_prefix: false },
                None,
                None,
                Vec::new(),
                false,
                None,
            );
            assert_eq!(v.stop_ids, [1], "{}: {marker} ({kind:?})", c["template"]);
        }
    }
    let markers: std::collections::BTreeMap<_, _> = seen.into_iter().collect();
    assert_eq!(markers["gemma-3"], "<end_of_turn>");
    assert_eq!(markers["phi-4-mini"], "<|end|>");
    assert_eq!(markers["mistral-v0.3"], "</s>");
    assert_eq!(markers.len(), 11, "every family's template: {markers:?}");
}

#[test]
fn a_folders_chat_template_jinja_wins_over_tokenizer_config() {
    let dir = tempfile::tempdir().unwrap();
    let (_, hf) = tiny::write(dir.path(), None);
    let before = PromptTokenizer::open(&hf).unwrap().template.render("", "Hi", "", "").unwrap().text;
    assert!(before.starts_with("<|im_start|>user"), "{before}");
    // transformers 5 layout: the template in its own file.
    std::fs::write(hf.join("chat_template.jinja"), "J:{{ messages[0].content }}").unwrap();
    let t = PromptTokenizer::open(&hf).unwrap();
    assert_eq!(t.template.render("", "Hi", "", "").unwrap().text, "J:Hi");
    assert!(t.template.fallback.is_none());
    // The older list form of tokenizer_config.json's chat_template: the `default` entry is the chat one.
    std::fs::remove_file(hf.join("chat_template.jinja")).unwrap();
    let list = serde_json::json!({"chat_template": [
        {"name": "tool_use", "template": "T:{{ messages[0].content }}"},
        {"name": "default", "template": "D:{{ messages[0].content }}"}
    ]});
    std::fs::write(hf.join("tokenizer_config.json"), list.to_string()).unwrap();
    assert_eq!(PromptTokenizer::open(&hf).unwrap().template.render("", "Hi", "", "").unwrap().text, "D:Hi");
}

async fn run_lane(ws: &workspace::Workspace, lane: usize, input: &str) -> Vec<EngineEvent> {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let engine = Engine::new(Registry::default().with(BackendKind::Local, Arc::new(LocalBackend::new())), tx);
    let _t = engine.start(lane, 1, RunRequest::for_lane(ws, lane, input).unwrap());
    drop(engine);
    let mut events = Vec::new();
    loop {
        let ev = tokio::time::timeout(Duration::from_secs(60), rx.recv()).await.unwrap().unwrap();
        let end = matches!(ev.kind, EventKind::Done { .. } | EventKind::Failed { .. });
        events.push(ev);
        if end {
            return events;
        }
    }
}

/// The workspace's `chat_template` (a file here) replaces the model's; a fold is said in the lane and in
/// the count, and the count is still the prompt the run sends.
#[tokio::test(flavor = "multi_thread")]
async fn a_workspace_template_override_runs_folds_and_counts_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let (gguf, _) = tiny::write(dir.path(), None);
    let root = dir.path().join("ws");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::copy(fixtures().join("mistral-v0.2.jinja"), root.join("mistral.jinja")).unwrap();
    let toml = format!(
        "name = \"t\"\n[prompts.p]\ntext = \"Be brief.\"\n[models.m]\npath = \"{}\"\ndevice = \"cpu\"\nchat_template = \"mistral.jinja\"\n[models.own]\npath = \"{0}\"\ndevice = \"cpu\"\n[[lanes]]\nid = \"a\"\nbackend = \"local\"\nmodel = \"m\"\nprompt = \"p\"\nmax_tokens = 3\n[[lanes]]\nid = \"b\"\nbackend = \"local\"\nmodel = \"own\"\nprompt = \"p\"\nmax_tokens = 3\nenable_thinking = true\n",
        gguf.display()
    );
    std::fs::write(root.join("workspace.toml"), toml).unwrap();
    let ws = workspace::load(&root).unwrap();
    assert!(ws.models["m"].chat_template.as_deref().unwrap().contains("Conversation roles must alternate"));
    assert!((!ws.lanes[0].enable_thinking, ws.lanes[1].enable_thinking) == (true, true));

    let counts = tunebench::metrics::Counters::new().count_all(&ws, "hello");
    let (folded, own) = (counts[0].as_ref().unwrap(), counts[1].as_ref().unwrap());
    assert!(folded.how.contains("system prompt folded into the user turn"), "{}", folded.how);
    assert_eq!(own.how, "model tokenizer");
    // What was counted is the folded Mistral prompt, token for token.
    let tok = PromptTokenizer::open_with(&gguf, ws.models["m"].chat_template.as_deref()).unwrap();
    let p = tok.prompt("Be brief.", "hello", RenderOptions::default()).unwrap();
    assert_eq!(p.note, Some(FOLD_NOTE));
    // The template writes the BOS (`<|im_start|>` in the tiny vocabulary); decoding leaves it out.
    assert_eq!(p.ids.first().copied(), tok.tokenizer.token_id("<|im_start|>"));
    assert_eq!(tok.tokenizer.decode(&p.ids), "[INST] Be brief.\n\nhello [/INST]");
    assert_eq!(folded.tokens, p.ids.len() as u64);

    let events = run_lane(&ws, 0, "hello").await;
    let warned = events.iter().any(|e| matches!(&e.kind, EventKind::Warning { text } if text == FOLD_NOTE));
    assert!(warned, "{events:?}");
    let started = events.iter().find_map(|e| match e.kind {
        EventKind::Started { prompt_tokens } => prompt_tokens,
        _ => None,
    });
    assert_eq!(started, Some(folded.tokens));
    assert!(matches!(events.last().unwrap().kind, EventKind::Done { .. }));
}
