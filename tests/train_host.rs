//! The host training step (the CPU's hand-written backward) against candle's autograd over the same decoder,
//! on every family fixture: the same loss and the same gradient for every LoRA tensor, with sequences of
//! different lengths run side by side in one pass.

mod support;

use candle_core::{Device, Tensor};
use rand::{Rng, SeedableRng};
use support::families::{Fixture, Form, load_form};
use tunebench::lora::train::{Sequence, TrainModel};

const FAMILIES: [&str; 10] =
    ["gemma2", "gemma3", "llama2", "llama3", "mistral", "phi3", "phi4mini", "qwen2", "qwen3", "smollm3"];

fn check(family: &str, form: Form) {
    let fx = Fixture::open(family);
    let m = load_form(&fx, form);
    let tm = TrainModel::new(m.base().clone(), &fx.modules(), 4, 8.0, 3).unwrap();
    // B starts at zero (so would every A's gradient): give it values.
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    for p in tm.lora.values() {
        let shape = p.b.as_tensor().shape().clone();
        let v: Vec<f32> = (0..shape.elem_count()).map(|_| rng.random_range(-0.3..0.3)).collect();
        p.b.set(&Tensor::from_vec(v, shape, &Device::Cpu).unwrap()).unwrap();
    }
    let ids = &fx.ids;
    let seq = |id: &str, ids: &[u32], from: usize| Sequence {
        id: id.into(),
        ids: ids.to_vec(),
        positions: (from as u32 - 1..ids.len() as u32 - 1).collect(),
        targets: ids[from..].to_vec(),
    };
    let (a, b) = (seq("a", &ids[..ids.len() / 2 + 3], 4), seq("b", &ids[2..], ids.len() / 2));
    let what = format!("{family} ({form:?})");
    assert!(tm.on_host(), "{what}: no host step on the CPU");
    let (loss, grads) = tm.loss_and_grads(&[&a, &b]).unwrap();
    let valid = tm.mean_loss(&[a.clone(), b.clone()]).unwrap();
    let reference = tm.on_candle();
    let (want_loss, want) = reference.loss_and_grads(&[&a, &b]).unwrap();
    assert!((loss - want_loss).abs() < 1e-4 * want_loss.abs().max(1.0), "{what}: loss {loss} vs {want_loss}");
    assert!((valid - want_loss).abs() < 1e-4 * want_loss.abs().max(1.0), "{what}: validation loss {valid}");
    assert_eq!(grads.len(), want.len(), "{what}: gradient count");
    let names: Vec<String> =
        reference.lora.keys().flat_map(|k| [format!("{k}.lora_A"), format!("{k}.lora_B")]).collect();
    for ((g, w), name) in grads.iter().zip(&want).zip(&names) {
        let scale = w.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap().max(1e-3);
        let diff = (g - w).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        if std::env::var("SHOW").is_ok() {
            eprintln!("{what} {name} {diff:e} {scale:e} loss {loss}");
        }
        assert!(diff <= 2e-4 * scale, "{what}: {name}: max diff {diff} against max |grad| {scale}");
    }
}

#[test]
fn host_step_gives_autograds_loss_and_gradients_on_every_family() {
    for family in FAMILIES {
        check(family, Form::Safetensors);
    }
    check("llama3", Form::Gguf);
}
