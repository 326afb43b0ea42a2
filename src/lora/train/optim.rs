//! AdamW with its state in the open (candle-nn keeps it private, and resuming needs it), the learning-rate
//! schedule (linear warmup, then cosine or linear decay to zero), and clipping by global gradient norm.

use candle_core::backprop::GradStore;
use candle_core::{Result, Tensor, Var};

#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Schedule {
    Cosine,
    Linear,
}

#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct OptimConfig {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    pub warmup_steps: usize,
    pub total_steps: usize,
    pub schedule: Schedule,
    /// Gradients are scaled down when their global L2 norm exceeds this.
    pub max_grad_norm: f64,
}

impl OptimConfig {
    /// The learning rate of optimizer step `step` (0-based).
    pub fn lr_at(&self, step: usize) -> f64 {
        if step < self.warmup_steps {
            return self.lr * (step + 1) as f64 / self.warmup_steps as f64;
        }
        let span = self.total_steps.saturating_sub(self.warmup_steps).max(1) as f64;
        let done = ((step - self.warmup_steps) as f64 / span).min(1.0);
        match self.schedule {
            Schedule::Cosine => self.lr * 0.5 * (1.0 + (std::f64::consts::PI * done).cos()),
            Schedule::Linear => self.lr * (1.0 - done),
        }
    }
}

/// First and second moments per trainable tensor, in the model's `vars()` order.
pub struct AdamW {
    pub cfg: OptimConfig,
    pub m: Vec<Tensor>,
    pub v: Vec<Tensor>,
    /// Optimizer steps taken.
    pub step: usize,
}

impl AdamW {
    pub fn new(cfg: OptimConfig, vars: &[&Var]) -> Result<Self> {
        let zeros = |v: &&Var| v.as_tensor().zeros_like();
        Ok(Self {
            cfg,
            m: vars.iter().map(zeros).collect::<Result<_>>()?,
            v: vars.iter().map(zeros).collect::<Result<_>>()?,
            step: 0,
        })
    }

    /// One update from summed gradients `grads[i]` of `vars[i]`; returns (pre-clip grad norm, lr used).
    pub fn step(&mut self, vars: &[&Var], grads: &[Tensor]) -> Result<(f64, f64)> {
        let norm = grads.iter().map(|g| g.sqr()?.sum_all()?.to_scalar::<f32>()).sum::<Result<f32>>()?.sqrt() as f64;
        let clip = if norm > self.cfg.max_grad_norm && norm.is_finite() {
            self.cfg.max_grad_norm / (norm + 1e-6)
        } else {
            1.0
        };
        let lr = self.cfg.lr_at(self.step);
        self.step += 1;
        let t = self.step as i32;
        let (b1, b2) = (self.cfg.beta1, self.cfg.beta2);
        let (c1, c2) = (1.0 - b1.powi(t), 1.0 - b2.powi(t));
        for (i, (var, g)) in vars.iter().zip(grads).enumerate() {
            let g = (g * clip)?;
            self.m[i] = ((&self.m[i] * b1)? + (&g * (1.0 - b1))?)?;
            self.v[i] = ((&self.v[i] * b2)? + (g.sqr()? * (1.0 - b2))?)?;
            let update = ((&self.m[i] / c1)? / ((&self.v[i] / c2)?.sqrt()? + self.cfg.eps)?)?;
            let theta = var.as_tensor();
            // Decoupled weight decay (Loshchilov & Hutter), as torch.optim.AdamW applies it.
            let next = ((theta * (1.0 - lr * self.cfg.weight_decay))? - (update * lr)?)?;
            var.set(&next)?;
        }
        Ok((norm, lr))
    }
}

/// Adds `grads` (of one example) into `acc`, scaled. A trainable tensor the loss does not reach is an
/// error, never a silent skip (candle-nn's optimizers skip such tensors without a word).
pub fn accumulate(acc: &mut Vec<Tensor>, vars: &[&Var], names: &[String], grads: &GradStore, scale: f64) -> Result<()> {
    for (i, v) in vars.iter().enumerate() {
        let Some(g) = grads.get(v.as_tensor()) else {
            let name = names.get(i).map_or("?", String::as_str);
            return Err(candle_core::Error::Msg(format!(
                "LoRA tensor `{name}` got no gradient: it is not on the loss's path"
            )));
        };
        let g = (g * scale)?;
        if acc.len() <= i {
            acc.push(g);
        } else {
            acc[i] = (&acc[i] + g)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_then_cosine_reaches_zero() {
        let c = OptimConfig {
            lr: 1.0,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            warmup_steps: 4,
            total_steps: 14,
            schedule: Schedule::Cosine,
            max_grad_norm: 1.0,
        };
        assert_eq!(c.lr_at(0), 0.25);
        assert_eq!(c.lr_at(3), 1.0);
        assert!((c.lr_at(9) - 0.5).abs() < 1e-9);
        assert!(c.lr_at(13) < 0.03 && c.lr_at(14) == 0.0);
        let l = OptimConfig { schedule: Schedule::Linear, ..c };
        assert!((l.lr_at(9) - 0.5).abs() < 1e-9);
    }
}
