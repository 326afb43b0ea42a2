//! Ollama's TEMPLATE, golden-tested: for every family's chat template (and ChatML), the TEMPLATE tunebench
//! derives, executed by Go's text/template as Ollama executes it (tests/support/ollama_render.go), renders
//! the same prompt as the model's template for a system + user conversation — and for a six-turn chat where
//! the derivation says so. Needs Go (Debian's golang-go; .ci/run installs it): skipped, saying so, only
//! outside CI.

mod support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use support::families::{Fixture, Form};
use tunebench::engine::local::template::{ChatTemplate, RenderOptions};
use tunebench::export::template::{CHECK as CHAT, Derived, derive};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/templates")
}

/// The harness built once per test run; None (the test skipped) when Go is absent outside CI.
fn harness() -> Option<&'static Path> {
    static BUILT: OnceLock<Option<PathBuf>> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("ollama-render");
            std::fs::create_dir_all(&dir).unwrap();
            let bin = dir.join("ollama_render");
            let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/ollama_render.go");
            let built = Command::new("go")
                .args(["build", "-o"])
                .arg(&bin)
                .arg(&src)
                .env("GOCACHE", dir.join("gocache"))
                .env("GOPATH", dir.join("gopath"))
                .env("GO111MODULE", "off")
                .status();
            match built {
                Ok(s) if s.success() => Some(bin),
                Ok(s) => panic!("go build of {} failed ({s})", src.display()),
                Err(e) if std::env::var_os("CI").is_none() => {
                    eprintln!("skipped: Go is not installed ({e}); CI installs golang-go and runs this test");
                    None
                }
                Err(e) => panic!("Go is needed in CI (apt-get install golang-go): {e}"),
            }
        })
        .as_deref()
}

/// What Ollama renders for `messages` with `template`.
fn go_render(bin: &Path, template: &str, messages: &[(&str, &str)]) -> String {
    let msgs: Vec<serde_json::Value> =
        messages.iter().map(|(r, c)| serde_json::json!({"role": r, "content": c})).collect();
    let input = serde_json::json!({"template": template, "messages": msgs}).to_string();
    let mut child =
        Command::new(bin).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "Go: {}\nTEMPLATE:\n{template}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// Each fixture template with its BOS / EOS (as expected.json holds them), and ChatML (SmolLM2's).
fn templates() -> Vec<(String, String, String, String)> {
    let cases: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(fixtures().join("expected.json")).unwrap()).unwrap();
    let mut out: Vec<(String, String, String, String)> = Vec::new();
    for c in &cases {
        let name = c["template"].as_str().unwrap().to_string();
        if out.iter().any(|t| t.0 == name) {
            continue;
        }
        let text = std::fs::read_to_string(fixtures().join(format!("{name}.jinja"))).unwrap();
        out.push((name, text, c["bos"].as_str().unwrap().into(), c["eos"].as_str().unwrap().into()));
    }
    let chatml = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";
    out.push(("smollm2".into(), chatml.into(), String::new(), "<|im_end|>".into()));
    out
}

fn derived(text: &str, bos: &str, eos: &str) -> (ChatTemplate, Derived) {
    let t = ChatTemplate::new(Some(text), |_| false).unwrap();
    let d = derive(&t, bos, eos, RenderOptions::default(), false).unwrap_or_else(|e| panic!("{e}\n{text}"));
    (t, d)
}

/// Llama 3.x prints today's date: both sides render it today, so it stays as it is.
const SYSTEM_USER: [(&str, &str); 2] =
    [("system", "You triage support tickets. Answer in JSON."), ("user", "My invoice is wrong, please fix it")];

#[test]
fn every_family_template_becomes_a_template_ollama_renders_the_same() {
    let Some(bin) = harness() else { return };
    let mut multi_turn_same = Vec::new();
    for (name, text, bos, eos) in templates() {
        let (t, d) = derived(&text, &bos, &eos);
        eprintln!("{name}: multi-turn {}", d.multi_turn_differs.as_deref().unwrap_or("the same"));
        let own = t.render_chat_with(&SYSTEM_USER, true, &bos, &eos, RenderOptions::default()).unwrap().text;
        let ollama = go_render(bin, &d.go, &SYSTEM_USER);
        assert_eq!(ollama, own, "{name}: system + user\nTEMPLATE:\n{}", d.go);
        // The mirror the derivation checks itself with is what Go renders, on any conversation.
        let chat = go_render(bin, &d.go, &CHAT);
        assert_eq!(chat, d.pieces.render(&CHAT), "{name}: six turns, Go against the mirror");
        if d.multi_turn_differs.is_none() {
            let own = t.render_chat_with(&CHAT, true, &bos, &eos, RenderOptions::default()).unwrap().text;
            assert_eq!(chat, own, "{name}: six turns");
            multi_turn_same.push(name);
        }
    }
    // Every family here renders multi-turn chats the same too (Mistral's put the system text before the last
    // user turn).
    for name in [
        "smollm2",
        "qwen2.5",
        "qwen3",
        "llama-3.2",
        "gemma-2",
        "gemma-3",
        "phi-3.5",
        "phi-4-mini",
        "smollm3",
        "mistral-v0.2",
        "mistral-v0.3",
        "mistral-nemo",
    ] {
        assert!(multi_turn_same.iter().any(|n| n == name), "{name}: multi-turn chats should render the same");
    }
}

#[test]
fn a_template_without_a_system_role_folds_the_system_prompt_as_ollama_renders_it() {
    let Some(bin) = harness() else { return };
    let text = std::fs::read_to_string(fixtures().join("gemma-2.jinja")).unwrap();
    let (_, d) = derived(&text, "<bos>", "<eos>");
    let got = go_render(bin, &d.go, &SYSTEM_USER);
    assert_eq!(
        got,
        "<bos><start_of_turn>user\nYou triage support tickets. Answer in JSON.\n\nMy invoice is wrong, please fix \
         it<end_of_turn>\n<start_of_turn>model\n"
    );
    // Without a system message there is no blank line before the user's text.
    let alone = go_render(bin, &d.go, &SYSTEM_USER[1..]);
    assert_eq!(
        alone,
        "<bos><start_of_turn>user\nMy invoice is wrong, please fix it<end_of_turn>\n<start_of_turn>model\n"
    );
}

#[test]
fn bos_is_left_to_llama_cpp_when_the_model_adds_it() {
    let text = std::fs::read_to_string(fixtures().join("llama-3.2.jinja")).unwrap();
    let t = ChatTemplate::new(Some(&text), |_| false).unwrap();
    let d = derive(&t, "<|begin_of_text|>", "<|eot_id|>", RenderOptions::default(), true).unwrap();
    assert!(!d.pieces.open_with_system.contains("<|begin_of_text|>"), "{:?}", d.pieces);
    assert!(d.pieces.open_with_system.starts_with("<|start_header_id|>system<|end_header_id|>"), "{:?}", d.pieces);
    assert!(d.pieces.after_user.starts_with("<|eot_id|>"), "{:?}", d.pieces);
}

fn workspace(dir: &Path, family: &str) -> PathBuf {
    let fx = Fixture::open(family);
    let keys = "max_tokens = 77\ntemperature = 0.0\nstop = [\"END\"]\n";
    support::families::lane_workspace(&dir.join(family), "Label the ticket.", &fx.path(Form::Gguf), &fx.adapter(), keys)
}

/// The Modelfile's TEMPLATE, as Ollama reads it from between the triple quotes.
fn template_of(modelfile: &str) -> &str {
    let start = modelfile.find("TEMPLATE \"\"\"").unwrap() + "TEMPLATE \"\"\"".len();
    let len = modelfile[start..].find("\"\"\"").unwrap();
    &modelfile[start..start + len]
}

#[test]
fn the_modelfile_renders_the_lanes_prompt_and_names_the_adapter_stops_and_sampling() {
    let dir = tempfile::tempdir().unwrap();
    for family in ["llama3", "qwen2", "gemma2", "phi3", "mistral", "qwen3"] {
        let ws = workspace(dir.path(), family);
        let out = dir.path().join(format!("out-{family}"));
        let run = Command::new(env!("CARGO_BIN_EXE_tunebench"))
            .args(["export", ws.to_str().unwrap(), "--to", "ollama", "--out", out.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(run.status.success(), "{family}: {}", String::from_utf8_lossy(&run.stderr));
        let mf = std::fs::read_to_string(out.join("Modelfile")).unwrap();
        let fx = Fixture::open(family);
        if family == "qwen3" {
            // Ollama cannot put a LoRA adapter on Qwen3: the merged model instead, loaded by tunebench.
            assert!(mf.starts_with("FROM ./adapter-merged-Q8_0.gguf\n") && !mf.contains("ADAPTER"), "{mf}");
            let merged = out.join("adapter-merged-Q8_0.gguf");
            tunebench::engine::local::load(&merged, &candle_core::Device::Cpu, None).unwrap();
        } else {
            let base = std::fs::canonicalize(fx.path(Form::Gguf)).unwrap();
            assert!(mf.starts_with(&format!("FROM {}\nADAPTER ./adapter.gguf\n", base.display())), "{family}: {mf}");
            assert!(out.join("adapter.gguf").is_file());
        }
        assert!(mf.contains("SYSTEM \"\"\"Label the ticket.\"\"\"\n"), "{mf}");
        assert!(mf.contains("PARAMETER stop \"END\"\n") && mf.contains("PARAMETER num_predict 77\n"), "{mf}");
        assert!(mf.contains("PARAMETER temperature 0\n"), "{mf}");
        let pt = tunebench::engine::local::prompt::PromptTokenizer::open(&fx.path(Form::Gguf)).unwrap();
        let vocab = &pt.tokenizer.vocab;
        let eos = vocab.tokens[vocab.eos.unwrap() as usize].clone();
        assert!(mf.contains(&format!("PARAMETER stop {eos:?}\n")), "{family}: the end token {eos} stops: {mf}");
        let Some(bin) = harness() else { continue };
        // The prompt Ollama builds is the lane's, less the BOS llama.cpp adds itself.
        let bos = vocab.bos.map(|b| vocab.tokens[b as usize].clone()).unwrap_or_default();
        let lane = pt.template.render("Label the ticket.", "Printer on fire", &bos, &eos).unwrap().text;
        let lane = if vocab.add_bos { lane.strip_prefix(bos.as_str()).unwrap_or(&lane).to_string() } else { lane };
        let msgs = [("system", "Label the ticket."), ("user", "Printer on fire")];
        assert_eq!(go_render(bin, template_of(&mf), &msgs), lane, "{family}\n{mf}");
    }
}
