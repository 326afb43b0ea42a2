//! Batched against alone on the bench's device: the logits each lane gets in one pass beside others (mixed
//! adapters, prefill chunks and decode rows at different positions) against the logits it gets alone — the
//! check tests/batch.rs makes on the CPU, for a device the tests do not reach (a GPU); and what a prefill
//! chunk costs there.

use std::path::Path;

use anyhow::{Context, Result};
use candle_core::Tensor;
use tunebench::engine::local::{Batch, BatchRow, Decoder, load};

/// The parity line of the report.
pub fn run(model: &Path) -> Result<String> {
    let spec = crate::measure::device_spec();
    let m = load(model, &crate::measure::device()?, None).with_context(|| format!("loading {}", model.display()))?;
    let dir = tempfile::tempdir().context("a temporary folder")?;
    let (da, db) = (dir.path().join("a"), dir.path().join("b"));
    crate::lora::write_random(m.base(), &da)?;
    crate::lora::write_random(m.base(), &db)?;
    let (va, vb) = (m.with_adapter(&da)?, m.with_adapter(&db)?);
    let lanes: [&Decoder; 3] = [&m.plain, &va.model, &vb.model];
    if !lanes.iter().all(|d| lanes[0].batches_with(d)) {
        anyhow::bail!("the lanes on {spec} do not share passes");
    }
    let all = crate::measure::prompt_ids(330, m.base().cfg.vocab);
    let seqs = [&all[..110], &all[110..220], &all[220..]];
    // (lane, tokens from, to) per pass: prompts of 40, 70 and 100 tokens, prefill chunks and decode rows mixed,
    // lanes joining and leaving.
    let passes: [&[(usize, usize, usize)]; 5] = [
        &[(2, 0, 64)],
        &[(0, 0, 40), (2, 64, 100), (1, 0, 70)],
        &[(1, 70, 71), (0, 40, 41), (2, 100, 101)],
        &[(2, 101, 102), (1, 71, 72)],
        &[(0, 41, 42), (2, 102, 103), (1, 72, 73)],
    ];
    let mut alone: Vec<_> = lanes.iter().map(|d| d.new_cache(110)).collect::<Result<_, _>>()?;
    let mut together: Vec<_> = lanes.iter().map(|d| d.new_cache(110)).collect::<Result<_, _>>()?;
    let mut batch = Batch::default();
    // Worst difference of decode rows and of prefill rows, apart: a GPU's kernels differ by rows only for decode.
    let (mut worst, mut largest, mut same_top, mut rows) = ([0f32; 2], 0f32, 0, 0);
    for pass in passes {
        let want: Vec<Tensor> = pass
            .iter()
            .map(|&(l, from, to)| lanes[l].forward_last(&seqs[l][from..to], from, &mut alone[l]))
            .collect::<Result<_, _>>()?;
        let mut caches: Vec<_> = together.iter_mut().map(Some).collect();
        let mut batch_rows = Vec::with_capacity(pass.len());
        for &(l, from, to) in pass {
            let cache = caches[l].take().context("a lane twice in one pass")?;
            batch_rows.push(BatchRow { decoder: lanes[l], ids: &seqs[l][from..to], pos: from, cache });
        }
        let got = Decoder::forward_batch(&mut batch, &mut batch_rows)?;
        for ((g, w), &(_, from, to)) in got.into_iter().zip(&want).zip(pass) {
            let g = g?;
            let phase = usize::from(to - from > 1);
            worst[phase] = worst[phase].max((&g - w)?.abs()?.max_all()?.to_scalar::<f32>()?);
            largest = largest.max(w.abs()?.max_all()?.to_scalar::<f32>()?);
            same_top += usize::from(g.argmax(0)?.to_scalar::<u32>()? == w.argmax(0)?.to_scalar::<u32>()?);
            rows += 1;
        }
    }
    Ok(format!(
        "Batched against alone on {spec} (lanes: base, random r=16 adapters A and B; 5 passes mixing prefill \
         chunks and decode rows): worst |Δ logit| {:.2e} over decode rows, {:.2e} over prefill rows (logits up to \
         {largest:.1}); the same top token in {same_top} of {rows} rows.\n",
        worst[0], worst[1]
    ))
}

/// Prefill of a 1,344-token prompt on the bench's device in the CPU's chunks and in a GPU's (the worker's
/// `prefill_chunk`): what a long-prompt lane waits for its first token. Medians of 5 after a warm-up.
pub fn chunks(model: &Path) -> Result<String> {
    use tunebench::engine::local::{GPU_PREFILL_CHUNK, PREFILL_CHUNK};
    let spec = crate::measure::device_spec();
    let m = load(model, &crate::measure::device()?, None).with_context(|| format!("loading {}", model.display()))?;
    let ids = crate::measure::prompt_ids(1344, m.base().cfg.vocab);
    let ms = |chunk: usize| -> Result<f64> {
        crate::measure::prefill_in(&m.plain, &ids, chunk)?;
        let runs: Vec<f64> = (0..5)
            .map(|_| crate::measure::prefill_in(&m.plain, &ids, chunk).map(|tok_s| ids.len() as f64 / tok_s * 1e3))
            .collect::<Result<_>>()?;
        crate::measure::Stat::of(runs).map(|s| s.median).context("no runs")
    };
    let (short, long) = (ms(PREFILL_CHUNK)?, ms(GPU_PREFILL_CHUNK)?);
    let steps = |c: usize| ids.len().div_ceil(c);
    Ok(format!(
        "Prefill of a 1,344-token prompt on {spec}: {PREFILL_CHUNK}-token chunks {short:.1} ms ({} steps, {:.1} ms a \
         step), {GPU_PREFILL_CHUNK}-token chunks {long:.1} ms ({} steps, {:.1} ms a step); medians of 5.\n",
        steps(PREFILL_CHUNK),
        short / steps(PREFILL_CHUNK) as f64,
        steps(GPU_PREFILL_CHUNK),
        long / steps(GPU_PREFILL_CHUNK) as f64
    ))
}
