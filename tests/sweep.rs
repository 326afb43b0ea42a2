//! `tunebench sweep` end to end on the tiny model the tests write: two points (nested subsets), each trained
//! into its own folder and scored on the test split beside the reference lane; a second run trains nothing
//! and runs no answer again (resumable), and a point cut short continues from its checkpoint.

mod support;

use support::tiny;
use tunebench::dataset::{Example, Meta};

fn workspace(dir: &std::path::Path) -> std::path::PathBuf {
    let (gguf, _) = tiny::write_with(dir, &tiny::Options { head_scale: 8.0, ..tiny::Options::default() });
    let root = dir.join("ws");
    std::fs::create_dir_all(root.join("dataset")).unwrap();
    let toml = format!(
        "name = \"tiny\"\n[prompts.p]\ntext = \"be brief\"\n[models.tiny]\npath = \"{}\"\ndevice = \"cpu\"\n\
         [[lanes]]\nid = \"base\"\nbackend = \"local\"\nmodel = \"tiny\"\nprompt = \"p\"\nmax_tokens = 3\ntemperature = 0.0\n\
         [[lanes]]\nid = \"tuned\"\nbackend = \"local\"\nmodel = \"tiny\"\nprompt = \"p\"\nadapter = \"adapters/t\"\nmax_tokens = 3\ntemperature = 0.0\n",
        gguf.display()
    );
    std::fs::write(root.join("workspace.toml"), toml).unwrap();
    let ex = |u: &str, a: &str| Example::chat(format!("ex_{u}"), "be brief", u, a, Meta::default()).to_line() + "\n";
    let train: String = [("hello world", "or"), ("the world", "hell"), ("say hello", "world world"), ("who", "hello")]
        .iter()
        .map(|(u, a)| ex(u, a))
        .collect();
    std::fs::write(root.join("dataset/train.jsonl"), train).unwrap();
    std::fs::write(root.join("dataset/valid.jsonl"), ex("hello", "world")).unwrap();
    std::fs::write(root.join("dataset/test.jsonl"), ex("world hello", "or") + &ex("say world", "hello")).unwrap();
    root
}

fn sweep(root: &std::path::Path) -> (Vec<serde_json::Value>, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tunebench"))
        .args(["sweep", root.to_str().unwrap(), "--examples", "2,all", "--max-steps", "2", "--json"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    let lines = String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    (lines, stderr)
}

#[test]
fn a_two_point_sweep_trains_scores_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let root = workspace(dir.path());
    let (lines, stderr) = sweep(&root);
    assert_eq!(lines.len(), 3, "two points and the reference: {lines:?}");
    let (small, all, reference) = (&lines[0], &lines[1], &lines[2]);
    assert_eq!((small["examples"].as_u64(), all["examples"].as_u64()), (Some(2), Some(4)), "{stderr}");
    assert_eq!(reference["reference"], "base");
    for p in [small, all] {
        assert_eq!(p["cases"], 2);
        assert_eq!(p["trained_now"], true);
        assert!(p["pass_rate"].as_f64().is_some_and(|r| (0.0..=1.0).contains(&r)), "{p}");
        let ci = p["pass_rate_ci95"].as_array().unwrap();
        assert!(ci[0].as_f64().unwrap() <= ci[1].as_f64().unwrap());
        let folder = root.join(p["adapter"].as_str().unwrap());
        assert!(folder.starts_with(root.join("adapters/t-sweep")), "{folder:?}");
        assert!(folder.join("adapter_model.safetensors").is_file() && folder.join("sweep-point.json").is_file());
    }
    // The lane's own adapter folder is not the sweep's: nothing a lane uses was written.
    assert!(!root.join("adapters/t").exists());
    // Again: every point found finished, every answer cached.
    let (again, stderr) = sweep(&root);
    assert!(again[..2].iter().all(|p| p["trained_now"] == false), "{again:?}");
    assert!(stderr.contains("0 to run"), "{stderr}");
    assert_eq!(again[0]["pass_rate"], small["pass_rate"]);
    // F10 draws the curve from disk and the eval cache alone.
    let ws = tunebench::workspace::load(&root).unwrap();
    let curve = tunebench::sweep::cached_curve(&ws).unwrap();
    assert_eq!(curve.points.iter().map(|p| (p.trained.train_examples, p.cases)).collect::<Vec<_>>(), [(2, 2), (4, 2)]);
    assert_eq!(curve.reference.as_ref().map(|r| r.0.as_str()), Some("base"));
    let mut state = tunebench::app::AppState::new(ws, Vec::new(), tunebench::theme::Theme::default());
    state.train.sweep = curve;
    state.mode = tunebench::app::Mode::Train;
    for (w, h) in [(80, 24), (120, 40)] {
        state.size = (w, h);
        let mut term = ratatui::Terminal::new(ratatui::backend::TestBackend::new(w, h)).unwrap();
        term.draw(|f| tunebench::ui::render(&state, f)).unwrap();
        let screen = term.backend().to_string();
        assert!(screen.contains("sweep · test pass % by train examples"), "{w}x{h}:\n{screen}");
        assert!(screen.contains("2: 0/2") || w < 100, "{w}x{h}:\n{screen}");
        assert!(screen.contains("`base` 0% (flat line)") || w < 120, "{w}x{h}:\n{screen}");
    }
    // A point cut short (its adapter and marker gone, a checkpoint kept) continues from the checkpoint.
    let folder = root.join(small["adapter"].as_str().unwrap());
    std::fs::remove_file(folder.join("sweep-point.json")).unwrap();
    let (_, stderr) = sweep(&root);
    assert!(stderr.contains("(resumed)"), "{stderr}");
}

#[test]
fn bad_settings_are_refused_before_anything_runs() {
    let dir = tempfile::tempdir().unwrap();
    let root = workspace(dir.path());
    for (flag, value, says) in [("--examples", "0", "at least 1"), ("--rank", "0", "at least 1"), ("--lr", "-1", "> 0")]
    {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_tunebench"))
            .args(["sweep", root.to_str().unwrap(), &format!("{flag}={value}")])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flag} {value}: {err}");
        assert!(err.contains(says), "{flag} {value}: {err}");
    }
    assert!(!root.join("adapters").exists());
}
