//! The K-quant `dequantize` of every kind, bit-for-bit against gguf-py's `gguf.quants.dequantize` on real
//! blocks (from gemma-3-270m's Q4_K_M file and llama-quantize's requantized copies of it) and random-byte
//! blocks; tests/fixtures/kquants/make.py made the fixture.

use std::path::PathBuf;

use tunebench_kernels::quant::{Kind, kernel, reference};

fn fixture(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/kquants").join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn dequantize_matches_gguf_py_bit_for_bit() {
    for (kind, name) in
        [(Kind::Q2_K, "q2_k"), (Kind::Q3_K, "q3_k"), (Kind::Q4_K, "q4_k"), (Kind::Q5_K, "q5_k"), (Kind::Q6_K, "q6_k")]
    {
        let blocks = fixture(&format!("{name}.blocks"));
        let want: Vec<f32> = fixture(&format!("{name}.f32"))
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        let (elems, bytes) = kind.block();
        assert_eq!(blocks.len() / bytes * elems, want.len(), "{kind:?}: fixture sizes disagree");
        assert!(blocks.len() / bytes >= 6, "{kind:?}: the fixture holds real and random blocks");
        for kern in [reference(kind), kernel(kind)] {
            let mut got = vec![f32::NAN; want.len()];
            (kern.dequantize)(&blocks, &mut got);
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                assert_eq!(g.to_bits(), w.to_bits(), "{kind:?} element {i} (block {}): {g} vs {w}", i / elems);
            }
        }
    }
}
