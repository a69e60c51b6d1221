//! Learning-rate schedules: linear warm-up followed by cosine decay, or SGDR warm restarts
//! (the L2BN paper's recipe, `docs/norms.md` §3.5).

use crate::error::UnknownName;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Schedule {
    /// Constant rate after warm-up.
    Constant { warmup_steps: u64 },
    /// Linear warm-up to the peak, then cosine down to `min_factor · peak` at the last step.
    Cosine { warmup_steps: u64, min_factor: f64 },
    /// Cosine cycles of `first_cycle_steps`, each `t_mult` times longer (SGDR).
    WarmRestarts {
        warmup_steps: u64,
        first_cycle_steps: u64,
        t_mult: u64,
        min_factor: f64,
    },
}

impl Schedule {
    /// The kinds [`Schedule::with_kind`] builds.
    pub const KINDS: [&'static str; 2] = ["constant", "cosine"];

    /// The warm-up steps of any schedule.
    pub fn warmup_steps(&self) -> u64 {
        match *self {
            Schedule::Constant { warmup_steps }
            | Schedule::Cosine { warmup_steps, .. }
            | Schedule::WarmRestarts { warmup_steps, .. } => warmup_steps,
        }
    }

    /// The schedule named `kind` (`constant` or `cosine`, decaying to 1 % of the peak) with this
    /// one's warm-up.
    pub fn with_kind(self, kind: &str) -> Result<Self, UnknownName> {
        let warmup_steps = self.warmup_steps();
        match kind {
            "constant" => Ok(Schedule::Constant { warmup_steps }),
            "cosine" => Ok(Schedule::Cosine {
                warmup_steps,
                min_factor: match self {
                    Schedule::Cosine { min_factor, .. } => min_factor,
                    _ => 0.01,
                },
            }),
            other => Err(UnknownName::new("schedule", other, &Self::KINDS)),
        }
    }

    /// The name `with_kind` takes.
    pub fn kind(&self) -> &'static str {
        match self {
            Schedule::Constant { .. } => "constant",
            Schedule::Cosine { .. } => "cosine",
            Schedule::WarmRestarts { .. } => "warm-restarts",
        }
    }

    /// The same schedule with `steps` of linear warm-up.
    pub fn with_warmup(self, steps: u64) -> Self {
        match self {
            Schedule::Constant { .. } => Schedule::Constant {
                warmup_steps: steps,
            },
            Schedule::Cosine { min_factor, .. } => Schedule::Cosine {
                warmup_steps: steps,
                min_factor,
            },
            Schedule::WarmRestarts {
                first_cycle_steps,
                t_mult,
                min_factor,
                ..
            } => Schedule::WarmRestarts {
                warmup_steps: steps,
                first_cycle_steps,
                t_mult,
                min_factor,
            },
        }
    }

    /// The rate at `step` (0-based) of `total` steps, for peak rate `peak`.
    pub fn lr(&self, peak: f64, step: u64, total: u64) -> f64 {
        let warm = |w: u64| {
            if step < w {
                Some(peak * (step + 1) as f64 / w as f64)
            } else {
                None
            }
        };
        let cosine = |pos: f64, len: f64, min: f64| {
            let f = min + (1.0 - min) * 0.5 * (1.0 + (std::f64::consts::PI * pos / len).cos());
            peak * f
        };
        match *self {
            Schedule::Constant { warmup_steps } => warm(warmup_steps).unwrap_or(peak),
            Schedule::Cosine {
                warmup_steps,
                min_factor,
            } => warm(warmup_steps).unwrap_or_else(|| {
                let len = total.saturating_sub(warmup_steps).max(1) as f64;
                cosine((step - warmup_steps) as f64, len, min_factor)
            }),
            Schedule::WarmRestarts {
                warmup_steps,
                first_cycle_steps,
                t_mult,
                min_factor,
            } => warm(warmup_steps).unwrap_or_else(|| {
                let mut pos = step - warmup_steps;
                let mut len = first_cycle_steps.max(1);
                while pos >= len {
                    pos -= len;
                    len *= t_mult.max(1);
                }
                cosine(pos as f64, len as f64, min_factor)
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cosine_warms_up_then_decays_to_min() {
        let s = Schedule::Cosine {
            warmup_steps: 10,
            min_factor: 0.0,
        };
        assert!((s.lr(1.0, 0, 110) - 0.1).abs() < 1e-12);
        assert!((s.lr(1.0, 9, 110) - 1.0).abs() < 1e-12);
        assert!((s.lr(1.0, 10, 110) - 1.0).abs() < 1e-12);
        assert!((s.lr(1.0, 60, 110) - 0.5).abs() < 1e-12);
        assert!(s.lr(1.0, 109, 110) < 0.001);
    }

    #[test]
    fn restarts_return_to_peak() {
        let s = Schedule::WarmRestarts {
            warmup_steps: 0,
            first_cycle_steps: 3,
            t_mult: 2,
            min_factor: 1e-4,
        };
        assert_eq!(s.lr(0.1, 0, 100), 0.1);
        assert_eq!(s.lr(0.1, 3, 100), 0.1); // second cycle starts
        assert_eq!(s.lr(0.1, 9, 100), 0.1); // third cycle (3 + 6)
        assert!(s.lr(0.1, 8, 100) < 0.02);
    }
}
