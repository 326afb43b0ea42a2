//! `tunebench export --to merged`: base + adapter as one model. Re-read by tunebench, the merged GGUF gives
//! the adapter lane's logits on every family (F32 exactly; F16, Q8_0 and Q4_K_M within what rounding the
//! base alone costs), and the merged safetensors folder gives them exactly and transformers + PEFT's within
//! 1e-3.

mod support;

use std::process::Command;

use candle_core::Device;
use support::families::{F32, Fixture, Form, TOLERANCE, lane_workspace, load_form, max_diff, teacher_forced};
use tunebench::engine::local::load;
use tunebench::export::merged::{self, Quant};

const FAMILIES: [&str; 10] =
    ["llama2", "llama3", "mistral", "smollm3", "qwen2", "qwen3", "gemma2", "gemma3", "phi3", "phi4mini"];

#[test]
fn a_merged_gguf_read_back_gives_the_adapter_lanes_logits_on_every_family() {
    let dir = tempfile::tempdir().unwrap();
    for family in FAMILIES {
        let fx = Fixture::open(family);
        let m = load_form(&fx, Form::Gguf);
        let lane = m.with_adapter(&fx.adapter()).unwrap();
        let (want, base) = (teacher_forced(&lane.model, &fx.ids), teacher_forced(&m.plain, &fx.ids));
        let scale = want.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        let read = tunebench::lora::Adapter::load(&fx.adapter(), m.base()).unwrap();
        let logits = |adapter: Option<&tunebench::lora::Adapter>, q: Quant, name: &str| {
            let out = dir.path().join(format!("{family}-{}-{name}.gguf", q.label()));
            let w = merged::gguf(&fx.path(Form::Gguf), adapter, q, &out).unwrap_or_else(|e| panic!("{family}: {e}"));
            assert_eq!(
                w.merged,
                adapter.map_or(0, |a| a.modules.len()),
                "{family} {}: every adapted weight",
                q.label()
            );
            let model = load(&out, &Device::Cpu, Some(F32)).unwrap_or_else(|e| panic!("{family} {}: {e}", q.label()));
            teacher_forced(&model.plain, &fx.ids)
        };
        // Unrounded, the merge is the adapter lane.
        let exact = max_diff(&logits(Some(&read), Quant::F32, "merged"), &want);
        assert!(exact <= 3e-5 * scale, "{family}: F32 merge vs adapter lane differ by {exact} (max {scale})");
        // Rounded, it is off by about what rounding the base alone costs (0.3–3× here; the ratio is each
        // fixture's own, fixed, not noise): these fixtures are built to move their logits, so rounding moves
        // them far (llama.cpp's own Q8_0 of the llama3 fixture moves them by 3.2 of 13.4, its F16 by 0.085).
        for q in [Quant::F16, Quant::Q8_0, Quant::Q4KM] {
            let merged_err = max_diff(&logits(Some(&read), q, "merged"), &want);
            let rounding = max_diff(&logits(None, q, "base"), &base);
            eprintln!(
                "{family} {}: merged {merged_err:.2e}, the base alone {rounding:.2e} (max {scale:.1})",
                q.label()
            );
            assert!(
                merged_err <= 4.0 * rounding + 1e-4 * scale,
                "{family} {}: merged vs adapter lane {merged_err}, rounding the base alone {rounding}",
                q.label()
            );
        }
    }
}

#[test]
fn merged_safetensors_give_the_adapter_lanes_logits_and_transformers_peft_ones() {
    let dir = tempfile::tempdir().unwrap();
    for family in FAMILIES {
        let fx = Fixture::open(family);
        let m = load_form(&fx, Form::Safetensors);
        let lane = m.with_adapter(&fx.adapter()).unwrap();
        let read = tunebench::lora::Adapter::load(&fx.adapter(), m.base()).unwrap();
        let out = dir.path().join(family);
        std::fs::create_dir_all(&out).unwrap();
        let w = merged::safetensors(&fx.path(Form::Safetensors), &read, None, &out).unwrap();
        assert_eq!(w.merged, read.modules.len(), "{family}");
        for f in ["config.json", "tokenizer.json"] {
            assert!(out.join(f).is_file(), "{family}: {f} kept");
        }
        let merged = load(&out, &Device::Cpu, Some(F32)).unwrap();
        let got = teacher_forced(&merged.plain, &fx.ids);
        let diff = max_diff(&got, &teacher_forced(&lane.model, &fx.ids));
        let scale = got.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(diff <= 2e-5 * scale, "{family}: merged safetensors vs adapter lane differ by {diff}");
        let peft = fx.tensor(&fx.key("logits_adapter", Form::Safetensors));
        assert!(max_diff(&got, peft) <= TOLERANCE, "{family}: against transformers + PEFT");
    }
}

fn export(ws: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_tunebench")).arg("export").arg(ws).args(args).output().unwrap()
}

#[test]
fn the_command_merges_into_a_gguf_or_a_folder_and_replaces_nothing() {
    let fx = Fixture::open("llama3");
    let dir = tempfile::tempdir().unwrap();
    let ws = lane_workspace(dir.path(), "Short.", &fx.path(Form::Gguf), &fx.adapter(), "");
    let out = dir.path().join("out");
    let o = out.to_str().unwrap();
    let first = export(&ws, &["--to", "merged", "--quant", "f16", "--out", o]);
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    let gguf = out.join("adapter-merged-F16.gguf");
    let readme = std::fs::read_to_string(out.join("README.txt")).unwrap();
    assert!(readme.contains("llama-server -m adapter-merged-F16.gguf --jinja"), "{readme}");
    let mut f = std::fs::File::open(&gguf).unwrap();
    let c = tunebench::engine::local::read_gguf_content(&mut f, &gguf).unwrap();
    assert_eq!(c.metadata["general.file_type"].to_u32().unwrap(), 1);
    assert_eq!(c.metadata["tunebench.merged_adapter"].to_string().unwrap(), "adapter");
    assert!(c.metadata.contains_key("tokenizer.ggml.tokens"), "the tokenizer travels with the model");
    let again = export(&ws, &["--to", "merged", "--quant", "f16", "--out", o]);
    assert_eq!(again.status.code(), Some(2), "nothing is replaced");
    // A Hugging Face folder of the same model gives a merged safetensors folder.
    let o2 = dir.path().join("out2");
    let hf = fx.path(Form::Safetensors);
    let folder = export(&ws, &["--to", "merged", "--base", hf.to_str().unwrap(), "--out", o2.to_str().unwrap()]);
    assert!(folder.status.success(), "{}", String::from_utf8_lossy(&folder.stderr));
    assert!(o2.join("adapter-merged/model.safetensors").is_file());
    let readme = std::fs::read_to_string(o2.join("README.txt")).unwrap();
    assert!(readme.contains("transformers and vLLM load it"), "{readme}");
    let not_hf =
        export(&ws, &["--to", "merged", "--base", "/nonexistent", "--out", dir.path().join("o3").to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&not_hf.stderr).contains("not a Hugging Face model folder"));
}

/// llama.cpp's quantizer as the peer: the Q4_K_M tunebench writes from SmolLM2's F16 file holds, tensor by
/// tensor, the types llama-quantize gave the same file. Runs where `scripts/bench` made both files (they are
/// its cache, target/bench-models/); skipped, saying so, elsewhere.
#[test]
fn q4_k_m_gives_each_tensor_the_type_llama_quantize_gives_it() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-models");
    let find = |suffix: &str| {
        std::fs::read_dir(&dir).ok()?.flatten().map(|e| e.path()).find(|p| {
            let n = p.file_name().unwrap().to_string_lossy().into_owned();
            n.starts_with("SmolLM2-135M-Instruct-") && n.ends_with(suffix)
        })
    };
    let (Some(f16), Some(theirs)) = (find("-F16.gguf"), find("-Q4_K_M.gguf")) else {
        eprintln!("skipped: no SmolLM2 F16 and Q4_K_M files in {} (scripts/bench makes them)", dir.display());
        return;
    };
    let out = tempfile::tempdir().unwrap();
    let ours = out.path().join("q4km.gguf");
    merged::gguf(&f16, None, Quant::Q4KM, &ours).unwrap();
    let types = |p: &std::path::Path| {
        let mut f = std::fs::File::open(p).unwrap();
        let c = tunebench::engine::local::read_gguf_content(&mut f, p).unwrap();
        let mut t: Vec<(String, String)> =
            c.tensor_infos.iter().map(|(n, i)| (n.clone(), format!("{:?}", i.ggml_dtype))).collect();
        t.sort();
        t
    };
    let (a, b) = (types(&ours), types(&theirs));
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x, y, "tensor types differ");
    }
    // And mostly the same bytes: candle's quantizers port ggml's reference ones.
    let (mut fa, mut fb) = (std::fs::File::open(&ours).unwrap(), std::fs::File::open(&theirs).unwrap());
    let ca = tunebench::engine::local::read_gguf_content(&mut fa, &ours).unwrap();
    let cb = tunebench::engine::local::read_gguf_content(&mut fb, &theirs).unwrap();
    let mut same = 0;
    for (name, _) in &a {
        let ta = ca.tensor(&mut fa, name, &Device::Cpu).unwrap().data().unwrap().into_owned();
        let tb = cb.tensor(&mut fb, name, &Device::Cpu).unwrap().data().unwrap().into_owned();
        same += usize::from(ta == tb);
    }
    // Measured: 242 of 272; the rest are Q6_K (candle's quantizer rounds as an older ggml did) and Q4_K
    // blocks a float rounding apart (~0.1% of their bytes). Both are valid encodings of the same types.
    eprintln!("{same} of {} tensors byte-identical to llama-quantize's", a.len());
    assert!(same * 4 >= a.len() * 3, "most tensors are byte-identical");
}
