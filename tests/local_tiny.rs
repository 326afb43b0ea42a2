//! Local lanes on a tiny random llama the tests write themselves: formats, sharing, scheduling,
//! sampling, stop rules, cancellation and limits — no downloads, a few seconds.

mod support;

use std::sync::Arc;
use std::time::Duration;

use candle_core::Device;
use support::tiny;
use tokio::sync::mpsc;
use tunebench::engine::local::{LocalBackend, ModelStore, plain};
use tunebench::engine::{Engine, EngineError, EngineEvent, EventKind, Registry, RunRequest};
use tunebench::workspace::{self, BackendKind, Workspace};

struct Fixture {
    _dir: tempfile::TempDir,
    gguf: std::path::PathBuf,
    hf: std::path::PathBuf,
    root: std::path::PathBuf,
}

fn fixture(extra_lane_keys: &str) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let (gguf, hf) = tiny::write(dir.path(), None);
    let root = dir.path().join("ws");
    std::fs::create_dir_all(&root).unwrap();
    let lane = |id: &str| {
        format!(
            "[[lanes]]\nid = \"{id}\"\nbackend = \"local\"\nmodel = \"tiny\"\nprompt = \"p\"\nmax_tokens = 40\n{extra_lane_keys}\n"
        )
    };
    let toml = format!(
        "name = \"tiny\"\n[prompts.p]\ntext = \"Be brief.\"\n[models.tiny]\npath = \"{}\"\ndevice = \"cpu\"\n[models.tinyhf]\npath = \"{}\"\ndevice = \"cpu\"\n{}{}",
        gguf.display(),
        hf.display(),
        lane("a"),
        lane("b")
    );
    std::fs::write(root.join("workspace.toml"), toml).unwrap();
    Fixture { _dir: dir, gguf, hf, root }
}

async fn run_lanes(ws: &Workspace, backend: &LocalBackend, lanes: &[usize], input: &str) -> Vec<EngineEvent> {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let engine = Engine::new(Registry::default().with(BackendKind::Local, Arc::new(backend.clone())), tx);
    // The requests first, so that the runs are submitted back to back.
    let reqs: Vec<_> = lanes.iter().map(|&l| RunRequest::for_lane(ws, l, input).unwrap()).collect();
    let _tokens: Vec<_> = lanes.iter().zip(reqs).map(|(&l, req)| engine.start(l, l as u64, req)).collect();
    drop(engine);
    let mut events = Vec::new();
    let mut open = lanes.len();
    while open > 0 {
        let ev = tokio::time::timeout(Duration::from_secs(60), rx.recv()).await.unwrap().unwrap();
        if matches!(ev.kind, EventKind::Done { .. } | EventKind::Failed { .. }) {
            open -= 1;
        }
        events.push(ev);
    }
    events
}

fn text(events: &[EngineEvent], lane: usize) -> String {
    events
        .iter()
        .filter(|e| e.lane == lane)
        .filter_map(|e| if let EventKind::Token { text } = &e.kind { Some(text.as_str()) } else { None })
        .collect()
}

fn end(events: &[EngineEvent], lane: usize) -> &EventKind {
    &events.iter().rev().find(|e| e.lane == lane).unwrap().kind
}

#[test]
fn gguf_and_safetensors_copies_give_the_same_logits() {
    let f = fixture("");
    let store = ModelStore::default();
    let g = store.get(&f.gguf, &Device::Cpu, "cpu").unwrap();
    let h = store.get(&f.hf, &Device::Cpu, "cpu").unwrap();
    use tunebench::engine::local::RopePairs;
    assert_eq!(
        (g.base().cfg.family.rope_pairs, h.base().cfg.family.rope_pairs),
        (RopePairs::Interleaved, RopePairs::Halves)
    );
    let ids: Vec<u32> = (0..20).map(|i| (i * 13 % 260) as u32).collect();
    let run = |m: &tunebench::engine::local::LoadedModel| {
        let mut cache = m.plain.new_cache(ids.len()).unwrap();
        m.plain.forward_all(&ids, 0, &mut cache).unwrap()
    };
    let diff = (run(&g) - run(&h)).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
    assert!(diff < 1e-3, "max logit difference {diff}");
    // Prefill in chunks through the cache equals one pass over everything.
    let full = run(&g);
    let max_abs = |t: candle_core::Tensor| t.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
    let mut cache = g.plain.new_cache(ids.len()).unwrap();
    g.plain.forward_last(&ids[..7], 0, &mut cache).unwrap();
    let chunked = g.plain.forward_last(&ids[7..19], 7, &mut cache).unwrap();
    let d = max_abs((chunked - full.get(18).unwrap()).unwrap());
    assert!(d < 1e-4, "chunked prefill differs from a full pass by {d}");
    // A one-token decode step runs the Q8_0 weights: equal up to quantization.
    let step = g.plain.forward_last(&ids[19..], 19, &mut cache).unwrap();
    let scale = max_abs(full.get(19).unwrap());
    let d = max_abs((step - full.get(19).unwrap()).unwrap());
    assert!(d / scale < 0.05, "decode step differs by {d} on logits up to {scale}");
}

#[test]
fn lanes_share_one_copy_of_the_weights() {
    let f = fixture("");
    let store = ModelStore::default();
    let a = store.get(&f.gguf, &Device::Cpu, "cpu").unwrap();
    let b = store.get(&f.gguf, &Device::Cpu, "cpu").unwrap();
    assert!(Arc::ptr_eq(&a, &b), "the store loads a model once");
    // A second lane's view (what an adapter lane builds) holds the same base, and only adds its cache.
    let view = tunebench::engine::local::Llama::new(a.base().clone(), &plain).unwrap();
    assert!(Arc::ptr_eq(&view.base, a.base()));
    assert_eq!(Arc::strong_count(a.base()), 2);
    let cache = view.new_cache(100).unwrap();
    let c = &a.base().cfg;
    assert_eq!(cache.bytes(), 2 * c.layers * c.kv_heads * 100 * c.head_dim * 4);
}

#[tokio::test(flavor = "multi_thread")]
async fn two_lanes_on_one_device_stream_interleaved_and_deterministically() {
    let f = fixture("seed = 7\ntemperature = 0.9");
    let ws = workspace::load(&f.root).unwrap();
    let backend = LocalBackend::new();
    // Both runs reach the worker as `start` is called (the backend's synchronous part submits them), so lane b
    // joins within lane a's first step or two however late the runtime polls their tasks; warm first all the same,
    // so the run below times no model load.
    run_lanes(&ws, &backend, &[0], "hello world").await;
    let ev = run_lanes(&ws, &backend, &[0, 1], "hello world").await;
    let order: Vec<usize> = ev.iter().filter(|e| matches!(e.kind, EventKind::Token { .. })).map(|e| e.lane).collect();
    let last_a = order.iter().rposition(|&l| l == 0).unwrap();
    let first_b = order.iter().position(|&l| l == 1).unwrap();
    assert!(first_b < last_a, "lane b started before lane a finished: {order:?}");
    assert!(
        matches!(end(&ev, 0), EventKind::Done { usage, .. } if usage.completion_tokens.is_some()),
        "{:?}",
        end(&ev, 0)
    );
    // Same seed, same settings → same text.
    assert_eq!(text(&ev, 0), text(&ev, 1));
    // Both ran while the other did: their figures say they were shared, and carry their own compute.
    for lane in [0, 1] {
        let EventKind::Done { timings, .. } = end(&ev, lane) else { panic!() };
        assert_eq!(timings.shared_lanes, Some(2), "lane {lane}");
        assert!(timings.busy.is_some_and(|b| b < timings.total), "lane {lane}: {timings:?}");
    }
    let info = ev
        .iter()
        .find_map(|e| if let EventKind::Info { detail } = &e.kind { Some(detail.clone()) } else { None })
        .unwrap();
    assert!(info.starts_with("cpu · "), "{info}");
}

#[tokio::test(flavor = "multi_thread")]
async fn max_tokens_stop_strings_and_seeds() {
    let f = fixture("");
    let ws = workspace::load(&f.root).unwrap();
    let backend = LocalBackend::new();
    let greedy = run_lanes(&ws, &backend, &[0], "hello").await;
    let out = text(&greedy, 0);
    let EventKind::Done { usage, .. } = end(&greedy, 0) else { panic!("{:?}", end(&greedy, 0)) };
    assert_eq!(usage.completion_tokens, Some(40), "random weights never say EOS: max_tokens ends it");
    // Prompt tokens are the rendered chat prompt's, as the model's tokenizer counts them.
    let m = ModelStore::default().get(&f.gguf, &Device::Cpu, "cpu").unwrap();
    let r = m.template.render("Be brief.", "hello", "<|im_start|>", "<|im_end|>").unwrap();
    assert_eq!(usage.prompt_tokens, Some(m.tokenizer.encode_marked(&r.text, &r.plain).unwrap().len() as u64));
    // A stop string taken from the greedy answer cuts it right there, and is not shown.
    let chars: Vec<char> = out.chars().collect();
    assert!(chars.len() > 6, "{out:?}");
    let stop: String = chars[3..5].iter().collect();
    let cut = out.find(&stop).unwrap();
    let toml = std::fs::read_to_string(f.root.join("workspace.toml")).unwrap();
    let stop_toml = format!("stop = [{}]\n", serde_json::to_string(&stop).unwrap());
    std::fs::write(
        f.root.join("workspace.toml"),
        toml.replace("max_tokens = 40\n", &format!("max_tokens = 40\n{stop_toml}")),
    )
    .unwrap();
    let ws2 = workspace::load(&f.root).unwrap();
    let stopped = run_lanes(&ws2, &backend, &[0], "hello").await;
    assert_eq!(text(&stopped, 0), out[..cut]);
}

#[tokio::test(flavor = "multi_thread")]
async fn cancelling_one_lane_leaves_the_other_running() {
    let f = fixture("max_tokens = 200");
    let toml = std::fs::read_to_string(f.root.join("workspace.toml")).unwrap().replace("max_tokens = 40\n", "");
    std::fs::write(f.root.join("workspace.toml"), toml).unwrap();
    let ws = workspace::load(&f.root).unwrap();
    let backend = LocalBackend::new();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let engine = Engine::new(Registry::default().with(BackendKind::Local, Arc::new(backend.clone())), tx);
    let ca = engine.start(0, 1, RunRequest::for_lane(&ws, 0, "hello").unwrap());
    let _cb = engine.start(1, 2, RunRequest::for_lane(&ws, 1, "hello").unwrap());
    let mut ended = Vec::new();
    let mut a_tokens = 0;
    while ended.len() < 2 {
        let ev = tokio::time::timeout(Duration::from_secs(60), rx.recv()).await.unwrap().unwrap();
        match ev.kind {
            EventKind::Token { .. } if ev.lane == 0 => {
                a_tokens += 1;
                if a_tokens == 3 {
                    ca.cancel();
                }
            }
            EventKind::Done { .. } | EventKind::Failed { .. } => ended.push((ev.lane, ev.kind)),
            _ => {}
        }
    }
    assert!(ended.iter().any(|(l, k)| *l == 0 && matches!(k, EventKind::Failed { error: EngineError::Cancelled })));
    assert!(ended.iter().any(|(l, k)| *l == 1 && matches!(k, EventKind::Done { usage, .. } if usage.completion_tokens == Some(200))));
}

#[tokio::test(flavor = "multi_thread")]
async fn clear_errors_for_overlong_prompts_missing_models_and_adapters() {
    let f = fixture("");
    let ws = workspace::load(&f.root).unwrap();
    let backend = LocalBackend::new();
    let long = "word ".repeat(400);
    let ev = run_lanes(&ws, &backend, &[0], &long).await;
    let EventKind::Failed { error } = end(&ev, 0) else { panic!() };
    assert!(error.to_string().contains("the model's context is 256"), "{error}");

    let toml = std::fs::read_to_string(f.root.join("workspace.toml")).unwrap();
    std::fs::write(
        f.root.join("workspace.toml"),
        toml.replace(&f.gguf.display().to_string(), "/nonexistent/model.gguf"),
    )
    .unwrap();
    let ws = workspace::load(&f.root).unwrap();
    let ev = run_lanes(&ws, &backend, &[0], "hi").await;
    let EventKind::Failed { error } = end(&ev, 0) else { panic!() };
    assert!(error.to_string().contains("model not found: /nonexistent/model.gguf"), "{error}");
}

#[test]
fn tokenize_prints_the_count_and_ids_in_the_models_own_tokenizer() {
    let f = fixture("");
    let m = ModelStore::default().get(&f.gguf, &Device::Cpu, "cpu").unwrap();
    let want = m.tokenizer.encode("hello world 42", false).unwrap();
    for model in [&f.gguf, &f.hf] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_tunebench"))
            .args(["tokenize", "--ids", "--model", model.to_str().unwrap(), "hello world 42"])
            .output()
            .unwrap();
        let stdout = String::from_utf8(out.stdout).unwrap();
        let ids: Vec<u32> = stdout.lines().nth(1).unwrap().split(' ').map(|x| x.parse().unwrap()).collect();
        assert_eq!(stdout.lines().next().unwrap(), want.len().to_string());
        assert_eq!(ids, want, "{}", model.display());
    }
    // `hello` uses the merges h+e, l+l, he+ll: fewer tokens than characters.
    assert!(want.len() < "hello world 42".len());
}

#[test]
fn hf_cache_entries_resolve_offline_and_pull_fails_cleanly_without_a_hub() {
    let f = fixture("");
    // The layout huggingface_hub writes: models--org--name/{refs/main, snapshots/<rev>/file}.
    let hub = f.root.join("hub");
    let snap = hub.join("models--acme--tiny/snapshots/abc123");
    std::fs::create_dir_all(&snap).unwrap();
    std::fs::create_dir_all(hub.join("models--acme--tiny/refs")).unwrap();
    std::fs::write(hub.join("models--acme--tiny/refs/main"), "abc123").unwrap();
    std::fs::copy(&f.gguf, snap.join("tiny.gguf")).unwrap();
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_tunebench"))
            .args(args)
            .env("HF_HUB_CACHE", &hub)
            .env("HF_HOME", f.root.join("hf-home"))
            .env("HF_ENDPOINT", "http://127.0.0.1:9")
            .output()
            .unwrap()
    };
    let out = run(&["tokenize", "--model", "hf:acme/tiny/tiny.gguf", "hello"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = run(&["tokenize", "--model", "hf:acme/absent/x.gguf", "hello"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not in the Hugging Face cache"));
    // Nothing is downloaded unless asked; asked with no hub reachable, the error says what failed.
    let out = run(&["pull", "hf:acme/tiny/other.gguf"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("downloading acme/tiny/other.gguf") && err.contains("127.0.0.1:9"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_answer_cut_by_the_context_says_so() {
    let f = fixture("");
    let toml =
        std::fs::read_to_string(f.root.join("workspace.toml")).unwrap().replace("max_tokens = 40", "max_tokens = 1000");
    std::fs::write(f.root.join("workspace.toml"), toml).unwrap();
    let ws = workspace::load(&f.root).unwrap();
    let ev = run_lanes(&ws, &LocalBackend::new(), &[0], "hello").await;
    let EventKind::Done { usage, .. } = end(&ev, 0) else { panic!("{:?}", end(&ev, 0)) };
    assert_eq!(usage.prompt_tokens.unwrap() + usage.completion_tokens.unwrap(), tiny::CONTEXT as u64);
    assert!(ev.iter().any(|e| matches!(&e.kind, EventKind::Warning { text } if text.contains("256-token context"))));
}

fn lane_workspace(dir: &std::path::Path, model: &std::path::Path) -> Workspace {
    let root = dir.join("ws2");
    std::fs::create_dir_all(&root).unwrap();
    let toml = format!(
        "name = \"t\"\n[prompts.p]\ntext = \"Be brief.\"\n[models.m]\npath = \"{}\"\ndevice = \"cpu\"\n[[lanes]]\nid = \"a\"\nbackend = \"local\"\nmodel = \"m\"\nprompt = \"p\"\nmax_tokens = 20\n",
        model.display()
    );
    std::fs::write(root.join("workspace.toml"), toml).unwrap();
    workspace::load(&root).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_model_without_a_template_gets_chatml_with_a_visible_warning() {
    let dir = tempfile::tempdir().unwrap();
    let (gguf, _) = tiny::write_with(dir.path(), &tiny::Options { template: None, ..Default::default() });
    let ws = lane_workspace(dir.path(), &gguf);
    let ev = run_lanes(&ws, &LocalBackend::new(), &[0], "hello").await;
    assert!(
        ev.iter()
            .any(|e| matches!(&e.kind, EventKind::Warning { text } if text.contains("using the `chatml` template")))
    );
    assert!(matches!(end(&ev, 0), EventKind::Done { .. }));
}

#[tokio::test(flavor = "multi_thread")]
async fn bos_is_added_once_whether_or_not_the_template_writes_it() {
    let dir = tempfile::tempdir().unwrap();
    let count = |template: &'static str, sub: &str| {
        let d = dir.path().join(sub);
        std::fs::create_dir_all(&d).unwrap();
        // A BOS of its own (`<|endoftext|>` here), as models that add one have.
        let bos = tiny::vocab().0.iter().position(|t| t == "<|endoftext|>").map(|i| i as u32);
        let (gguf, _) =
            tiny::write_with(&d, &tiny::Options { template: Some(template), add_bos: true, bos, ..Default::default() });
        gguf
    };
    let with_bos = count(tiny::BOS_TEMPLATE, "a");
    let plain_template = count(tiny::BOS_TEMPLATE.trim_start_matches("{{ bos_token }}"), "b");
    let backend = LocalBackend::new();
    let mut prompts = Vec::new();
    for model in [&with_bos, &plain_template] {
        let ws = lane_workspace(model.parent().unwrap(), model);
        let ev = run_lanes(&ws, &backend, &[0], "hello").await;
        let started = ev
            .iter()
            .find_map(|e| if let EventKind::Started { prompt_tokens } = e.kind { prompt_tokens } else { None });
        prompts.push(started.unwrap());
    }
    assert_eq!(prompts[0], prompts[1], "the template's BOS replaces the added one; never two");
}

#[tokio::test(flavor = "multi_thread")]
async fn generation_stops_at_the_models_end_token() {
    let dir = tempfile::tempdir().unwrap();
    let (gguf, _) = tiny::write(dir.path(), None);
    let ws = lane_workspace(dir.path(), &gguf);
    let backend = LocalBackend::new();
    let greedy = run_lanes(&ws, &backend, &[0], "hello").await;
    // Make the third greedily chosen token the end-of-turn token: the answer must stop right before it.
    let m = ModelStore::default().get(&gguf, &Device::Cpu, "cpu").unwrap();
    let r = m.template.render("Be brief.", "hello", "", "").unwrap();
    let prompt = m.tokenizer.encode_marked(&r.text, &r.plain).unwrap();
    let mut ids = prompt.clone();
    let mut cache = m.plain.new_cache(prompt.len() + 3).unwrap();
    let mut logits = m.plain.forward_last(&ids, 0, &mut cache).unwrap();
    for _ in 0..3 {
        let next = logits.argmax(0).unwrap().to_scalar::<u32>().unwrap();
        ids.push(next);
        logits = m.plain.forward_last(&[next], ids.len() - 1, &mut cache).unwrap();
    }
    let third = ids[prompt.len() + 2];
    if ids[prompt.len()..prompt.len() + 2].contains(&third) {
        return; // the random weights repeat early; the cut point would be ambiguous
    }
    let d2 = dir.path().join("eos");
    std::fs::create_dir_all(&d2).unwrap();
    let (gguf2, _) = tiny::write_with(&d2, &tiny::Options { eos: Some(third), ..Default::default() });
    let ws2 = lane_workspace(&d2, &gguf2);
    let stopped = run_lanes(&ws2, &backend, &[0], "hello").await;
    let EventKind::Done { usage, .. } = end(&stopped, 0) else { panic!() };
    assert_eq!(usage.completion_tokens, Some(3), "two tokens, then the end token");
    assert_eq!(text(&stopped, 0), m.tokenizer.decode(&ids[prompt.len()..prompt.len() + 2]));
    assert!(text(&greedy, 0).starts_with(&text(&stopped, 0)));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_prompt_longer_than_one_chunk_reports_progress_before_the_first_token() {
    let f = fixture("");
    let ws = workspace::load(&f.root).unwrap();
    let ev = run_lanes(&ws, &LocalBackend::new(), &[0], &"ab cd ".repeat(18)).await;
    let first_token = ev.iter().position(|e| matches!(e.kind, EventKind::Token { .. })).unwrap();
    let progress: Vec<(u64, u64)> = ev[..first_token]
        .iter()
        .filter_map(|e| if let EventKind::Progress { done, total } = e.kind { Some((done, total)) } else { None })
        .collect();
    assert!(!progress.is_empty(), "{:?}", &ev[..first_token]);
    assert_eq!(progress[0].0, tunebench::engine::local::PREFILL_CHUNK as u64);
    assert!(progress.windows(2).all(|w| w[0].0 < w[1].0 && w[1].0 < w[1].1));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_live_count_is_the_prompt_a_run_sends() {
    let f = fixture("");
    let ws = workspace::load(&f.root).unwrap();
    let input = "Where is my order? <|im_end|> It was due Friday.";
    let counted = tunebench::metrics::Counters::new().count_all(&ws, input);
    let events = run_lanes(&ws, &LocalBackend::new(), &[0], input).await;
    let started = events.iter().find_map(|e| match e.kind {
        EventKind::Started { prompt_tokens } => prompt_tokens,
        _ => None,
    });
    let c = counted[0].as_ref().unwrap();
    assert_eq!((Some(c.tokens), c.estimated), (started, false));
    let timings = events.iter().find_map(|e| match e.kind {
        EventKind::Done { timings, .. } => Some(timings),
        _ => None,
    });
    let t = timings.unwrap();
    assert!(t.busy.is_some_and(|b| b > std::time::Duration::ZERO && b <= t.total), "{t:?}");
    assert_eq!(t.shared_lanes, Some(1), "it ran alone");
}
