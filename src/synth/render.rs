//! Rendering of one clip: background texture + hum + reverberant events, then the device.

use std::f32::consts::TAU;

use super::devices::DeviceModel;
use super::dsp::{apply_shape, convolve, normalise_rms, room_ir, shaped_noise, Fft};
use super::events;
use super::scenes::{LocationParams, SceneRecipe};
use crate::dataset::rng::SplitMix64;

/// Sizes shared by every clip of a data set.
pub struct RenderCtx {
    pub fft: Fft,
    pub sr: f32,
    /// Samples per clip.
    pub len: usize,
    /// Samples rendered before the clip and discarded, so that events and reverberation tails
    /// can cross the clip start as they do in an excerpt of a longer recording.
    pub preroll: usize,
    /// Longest room impulse response.
    pub ir_max: usize,
}

impl RenderCtx {
    pub fn new(sr: u32, clip_seconds: f32) -> Self {
        let sr_f = sr as f32;
        let len = (clip_seconds * sr_f).round().max(1.0) as usize;
        let preroll = (0.5 * sr_f) as usize;
        let ir_max = sr as usize; // 1 s: -24 dB at the longest RT60 (2.5 s) of the catalogue
        let n = (len + preroll + ir_max).next_power_of_two();
        Self {
            fft: Fft::new(n),
            sr: sr_f,
            len,
            preroll,
            ir_max,
        }
    }
}

/// Renders one clip in [-1, 1).
pub fn render_clip(
    ctx: &RenderCtx,
    recipe: &SceneRecipe,
    loc: &LocationParams,
    device: &DeviceModel,
    rng: &mut SplitMix64,
) -> Vec<f32> {
    let sr = ctx.sr;
    let total = ctx.len + ctx.preroll;
    let seconds = total as f32 / sr;

    // Background texture with slow swells (traffic, wind, crowd density).
    let mut scene = shaped_noise(rng, &ctx.fft, sr, total, &loc.background);
    let rate = rng.uniform(recipe.am_rate.0, recipe.am_rate.1);
    let depth = rng.uniform(recipe.am_depth.0, recipe.am_depth.1);
    let (p1, p2) = (rng.uniform(0.0, TAU), rng.uniform(0.0, TAU));
    for (i, v) in scene.iter_mut().enumerate() {
        let t = i as f32 / sr;
        let env = 1.0
            + depth * (TAU * rate * t + p1).sin()
            + 0.3 * depth * (TAU * 2.3 * rate * t + p2).sin();
        *v *= env.max(0.05);
    }

    // Stationary hum (engines, motors, ventilation), slightly drifting in pitch.
    if loc.hum_hz > 0.0 {
        let drift = rng.uniform(0.05, 0.3);
        let mut phase = 0.0f32;
        let mut hum: Vec<f32> = (0..total)
            .map(|i| {
                let t = i as f32 / sr;
                let f = loc.hum_hz * (1.0 + 0.01 * (TAU * drift * t).sin());
                phase = (phase + TAU * f / sr) % TAU;
                (1..=6)
                    .map(|k| (k as f32 * phase).sin() / (k as f32).powf(1.2))
                    .sum()
            })
            .collect();
        normalise_rms(&mut hum);
        let g = 10f32.powf((loc.hum_db + rng.uniform(-2.0, 2.0)) / 20.0);
        scene.iter_mut().zip(&hum).for_each(|(s, h)| *s += g * h);
    }

    // Events at random times and levels, through the location's room.
    let mut ev_track = vec![0.0f32; total];
    for (k, &(kind, rate)) in recipe.events.iter().enumerate() {
        let scale = loc.event_rate_scale.get(k).copied().unwrap_or(1.0);
        let n = rng.poisson(rate * loc.busyness * scale * seconds);
        for _ in 0..n {
            let ev = events::render(kind, rng, sr);
            let gain = 10f32.powf(rng.uniform(recipe.snr_db.0, recipe.snr_db.1) / 20.0);
            // Onsets from half an event before the start, so long events can be cut.
            let onset = rng.below((total + ev.len() / 2) as u64) as i64 - (ev.len() / 2) as i64;
            for (j, &s) in ev.iter().enumerate() {
                let t = onset + j as i64;
                if (0..total as i64).contains(&t) {
                    ev_track[t as usize] += gain * s;
                }
            }
        }
    }
    let ir = room_ir(rng, sr, loc.rt60, ctx.ir_max);
    let wet = convolve(&ctx.fft, &ev_track, &ir);
    for ((s, d), w) in scene.iter_mut().zip(&ev_track).zip(&wet) {
        *s += (1.0 - loc.wet) * d + loc.wet * w;
    }

    // Cut the pre-roll, set a random recording level.
    let mut clip = scene.split_off(ctx.preroll);
    normalise_rms(&mut clip);
    let level = 10f32.powf(rng.uniform(-32.0, -20.0) / 20.0);

    // The device: frequency response, gain, noise floor, soft clipping.
    let mut y = apply_shape(&ctx.fft, sr, &clip, &device.response);
    let gain = level * 10f32.powf((device.gain_db + rng.uniform(-2.0, 2.0)) / 20.0);
    let floor = 10f32.powf(device.noise_floor_dbfs / 20.0);
    let max = 1.0 - 1.0 / 8_388_608.0;
    for v in &mut y {
        let mut s = *v * gain + floor * rng.normal();
        if device.drive > 0.0 {
            s = (device.drive * s).tanh() / device.drive;
        }
        *v = s.clamp(-1.0, max);
    }
    y
}
