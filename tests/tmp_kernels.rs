use candle_core::quantized::{QMatMul, gguf_file};
use candle_core::{Module, Tensor};
use tunebench::engine::local::cpu::kind_of;
use tunebench_kernels::matmul::{Linear, Scratch, run};
use tunebench_kernels::quant::Weights;

#[test]
fn real_tensors() {
    let path = std::env::var("M").unwrap();
    let mut f = std::fs::File::open(&path).unwrap();
    let ct = gguf_file::Content::read(&mut f).unwrap();
    let mut names: Vec<_> = ct.tensor_infos.keys().cloned().collect();
    names.sort();
    for name in names.iter().filter(|n| n.starts_with("blk.0.") || n.starts_with("blk.3.")) {
        let q = ct.tensor(&mut f, name, &candle_core::Device::Cpu).unwrap();
        if q.shape().dims().len() != 2 {
            continue;
        }
        let (rows, cols) = q.shape().dims2().unwrap();
        let Some(kind) = kind_of(q.dtype()) else { continue };
        let w = Weights::new(kind, rows, cols, &q.data().unwrap()).unwrap();
        let x: Vec<f32> = (0..cols)
            .map(|i| ((i * 7919 % 1000) as f32 / 500.0 - 1.0) * if i % 97 == 0 { 20.0 } else { 1.0 })
            .collect();
        let deq = q.dequantize(&candle_core::Device::Cpu).unwrap();
        let xt = Tensor::from_slice(&x, (1, cols), &candle_core::Device::Cpu).unwrap();
        let exact: Vec<f32> = xt.matmul(&deq.t().unwrap()).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        let cq: Vec<f32> =
            QMatMul::from_qtensor(q).unwrap().forward(&xt).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        let mut out = vec![0f32; rows];
        run(tunebench_kernels::pool::global(), &mut Scratch::default(), &x, 1, &[Linear::plain(&w)], &mut [&mut out])
            .unwrap();
        let d = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
        println!(
            "{name} {kind:?}: host-exact {:.2e} candle-exact {:.2e} host-candle {:.2e}",
            d(&out, &exact),
            d(&cq, &exact),
            d(&out, &cq)
        );
    }
}
