//! Rotary position tables: one cos/sin pair per distinct rope spec a model's layers use (base, frequency
//! scaling, rotated dimensions, attention factor), computed as transformers computes its inverse frequencies.

use candle_core::{DType, Device, Result, Tensor};

/// How one rope table is built.
#[derive(Debug, Clone, PartialEq)]
pub struct RopeSpec {
    /// θ: frequency i is `base^(-2i / dims)` before scaling.
    pub base: f32,
    /// Leading dimensions of each head that rotate (the whole head unless the family rotates part of it).
    pub dims: usize,
    pub scaling: RopeScaling,
    /// Multiplies cos and sin (an attention-temperature factor some scalings carry); 1 otherwise.
    pub attention_factor: f32,
}

/// How the inverse frequencies are rescaled for a longer context.
#[derive(Debug, Clone, PartialEq)]
pub enum RopeScaling {
    None,
    /// transformers' `linear`: every frequency divided by `factor` (positions interpolated).
    Linear {
        factor: f32,
    },
    /// transformers' `llama3`: low frequencies divided by `factor`, high ones kept, a smooth blend between.
    Llama3 {
        factor: f32,
        low_freq_factor: f32,
        high_freq_factor: f32,
        original_context: usize,
    },
    /// transformers' `yarn`: frequencies blended between interpolated (÷ `factor`) and original by a linear ramp
    /// over the dimensions whose rotation count at `original_context` lies between `beta_slow` and `beta_fast`
    /// (its cos/sin factor goes in `RopeSpec::attention_factor`).
    Yarn {
        factor: f32,
        original_context: usize,
        beta_fast: f32,
        beta_slow: f32,
        truncate: bool,
    },
    /// Each frequency divided by its own factor (`dims / 2` of them): llama.cpp's `rope_freqs.weight`, into which
    /// its converter bakes Llama 3's scaling.
    FreqFactors(Vec<f32>),
}

impl RopeSpec {
    /// Unscaled rope over `dims` dimensions.
    pub fn plain(base: f32, dims: usize) -> Self {
        Self { base, dims, scaling: RopeScaling::None, attention_factor: 1.0 }
    }

    /// The `dims / 2` inverse frequencies after scaling.
    pub fn inv_freq(&self) -> Vec<f32> {
        let d = self.dims as f32;
        let plain = (0..self.dims / 2).map(|i| 1.0 / self.base.powf((2 * i) as f32 / d));
        match &self.scaling {
            RopeScaling::None => plain.collect(),
            RopeScaling::Linear { factor } => plain.map(|f| f / factor).collect(),
            RopeScaling::FreqFactors(factors) => plain.zip(factors).map(|(f, k)| f / k).collect(),
            RopeScaling::Yarn { factor, original_context, beta_fast, beta_slow, truncate } => {
                let (base, dims) = (f64::from(self.base), self.dims as f64);
                let correction = |rotations: f32| {
                    let orig = *original_context as f64;
                    dims * (orig / (f64::from(rotations) * 2.0 * std::f64::consts::PI)).ln() / (2.0 * base.ln())
                };
                let (mut low, mut high) = (correction(*beta_fast), correction(*beta_slow));
                if *truncate {
                    (low, high) = (low.floor(), high.ceil());
                }
                let (low, mut high) = (low.max(0.0) as f32, high.min(dims - 1.0) as f32);
                if low == high {
                    high += 0.001;
                }
                plain
                    .enumerate()
                    .map(|(i, f)| {
                        let extrapolation = 1.0 - ((i as f32 - low) / (high - low)).clamp(0.0, 1.0);
                        f / factor * (1.0 - extrapolation) + f * extrapolation
                    })
                    .collect()
            }
            RopeScaling::Llama3 { factor, low_freq_factor, high_freq_factor, original_context } => {
                let old = *original_context as f32;
                let (low_wavelen, high_wavelen) = (old / low_freq_factor, old / high_freq_factor);
                plain
                    .map(|f| {
                        let wavelen = 2.0 * std::f32::consts::PI / f;
                        if wavelen < high_wavelen {
                            f
                        } else if wavelen > low_wavelen {
                            f / factor
                        } else {
                            let smooth = (old / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor);
                            (1.0 - smooth) * f / factor + smooth * f
                        }
                    })
                    .collect()
            }
        }
    }

    /// `(cos, sin)`, each `[positions, dims / 2]`.
    pub fn tables(&self, positions: usize, device: &Device) -> Result<(Tensor, Tensor)> {
        let inv = self.inv_freq();
        let half = inv.len();
        let inv = Tensor::from_vec(inv, (1, half), device)?;
        let pos = Tensor::arange(0u32, positions as u32, device)?.to_dtype(DType::F32)?.reshape((positions, 1))?;
        let freqs = pos.matmul(&inv)?;
        let a = f64::from(self.attention_factor);
        Ok(((freqs.cos()? * a)?, (freqs.sin()? * a)?))
    }
}

/// Longrope (Phi-3.5, Phi-4-mini): two tables for the same layers, the short factors' while a sequence stays
/// within `original_context` positions and the long factors' once it passes them. Chosen per forward by its
/// last position, as transformers chooses (llama.cpp chooses once, by the context size it allocates).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RopeSwitch {
    pub original_context: usize,
    /// The table the layers name (`LayerPlan::rope`) …
    pub short: usize,
    /// … and the one they use past `original_context`.
    pub long: usize,
}

impl RopeSwitch {
    /// The table a layer naming `table` uses in a forward whose positions end at `end` (exclusive).
    pub fn table(&self, table: usize, end: usize) -> usize {
        if table == self.short && end > self.original_context { self.long } else { table }
    }
}
