//! Procedural sound events. Each is a crude but recognisable caricature (a chime is decaying
//! harmonic notes, footsteps are band-passed noise bursts with a thump); scenes share event kinds
//! with different rates, so no single event identifies a class.

use std::f32::consts::TAU;

use serde::{Deserialize, Serialize};

use super::dsp::{fade, normalise_rms, Biquad};
use crate::dataset::rng::SplitMix64;

/// The kinds of event the scenes draw from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// Announcement chime: 2-4 decaying harmonic notes.
    Chime,
    /// Electronic beeps (doors, ticket gates, tills).
    Beep,
    /// A few footsteps: band-passed noise bursts with a low thump.
    Footsteps,
    /// Rail joints: pairs of metallic clicks.
    RailClack,
    /// Bird song: a few fast frequency sweeps.
    BirdChirp,
    /// A passing car: low-passed noise and engine harmonics with a Doppler shift.
    CarPass,
    /// Speech-like babble: a buzz through changing formant filters, syllable envelope.
    Babble,
    /// Brake squeal: a high tone with vibrato.
    Brake,
    /// Car horn: two harmonic-rich tones.
    Horn,
    /// Engine revving: harmonics of a sweeping low fundamental.
    EngineRev,
    /// Pneumatic door: high-passed hiss and a thud.
    DoorHiss,
}

/// Renders one dry event at sample rate `sr`, unit RMS over its length.
pub fn render(kind: EventKind, rng: &mut SplitMix64, sr: f32) -> Vec<f32> {
    let mut x = match kind {
        EventKind::Chime => chime(rng, sr),
        EventKind::Beep => beep(rng, sr),
        EventKind::Footsteps => footsteps(rng, sr),
        EventKind::RailClack => rail_clack(rng, sr),
        EventKind::BirdChirp => bird(rng, sr),
        EventKind::CarPass => car_pass(rng, sr),
        EventKind::Babble => babble(rng, sr),
        EventKind::Brake => brake(rng, sr),
        EventKind::Horn => horn(rng, sr),
        EventKind::EngineRev => engine_rev(rng, sr),
        EventKind::DoorHiss => door_hiss(rng, sr),
    };
    fade(&mut x, (0.003 * sr) as usize);
    normalise_rms(&mut x);
    x
}

fn samples(seconds: f32, sr: f32) -> usize {
    (seconds * sr).max(1.0) as usize
}

/// Adds `src` into `dst` at `offset`, ignoring what falls outside.
fn add_at(dst: &mut [f32], offset: usize, src: &[f32]) {
    for (d, s) in dst.iter_mut().skip(offset).zip(src) {
        *d += *s;
    }
}

/// A harmonic tone with exponential decay: partial amplitudes `amps`, decay time constant `tau`.
fn decaying_tone(f: f32, amps: &[f32], tau: f32, len: usize, sr: f32) -> Vec<f32> {
    (0..len)
        .map(|i| {
            let t = i as f32 / sr;
            let env = (-t / tau).exp() * (t / 0.005).min(1.0);
            let s: f32 = amps
                .iter()
                .enumerate()
                .map(|(k, a)| a * (TAU * f * (k + 1) as f32 * t).sin())
                .sum();
            env * s
        })
        .collect()
}

fn noise_burst(rng: &mut SplitMix64, tau: f32, len: usize, sr: f32) -> Vec<f32> {
    (0..len)
        .map(|i| rng.normal() * (-(i as f32) / (tau * sr)).exp())
        .collect()
}

fn chime(rng: &mut SplitMix64, sr: f32) -> Vec<f32> {
    let notes = 2 + rng.below(3) as usize;
    let base = rng.uniform(400.0, 1000.0);
    let dur = rng.uniform(0.25, 0.45);
    let step = dur * 0.8;
    let mut out = vec![0.0; samples(step * notes as f32 + dur, sr)];
    for n in 0..notes {
        let ratio = [1.0, 1.25, 1.5, 2.0][rng.below(4) as usize];
        let tone = decaying_tone(
            base * ratio,
            &[1.0, 0.4, 0.15],
            dur * 0.5,
            samples(dur, sr),
            sr,
        );
        add_at(&mut out, samples(step * n as f32, sr), &tone);
    }
    out
}

fn beep(rng: &mut SplitMix64, sr: f32) -> Vec<f32> {
    let f = rng.uniform(800.0, 3000.0);
    let dur = rng.uniform(0.06, 0.2);
    let count = 1 + rng.below(3) as usize;
    let gap = rng.uniform(0.08, 0.2);
    let mut out = vec![0.0; samples((dur + gap) * count as f32, sr)];
    let mut tone: Vec<f32> = (0..samples(dur, sr))
        .map(|i| {
            let p = TAU * f * i as f32 / sr;
            p.sin() + 0.3 * (3.0 * p).sin()
        })
        .collect();
    fade(&mut tone, (0.003 * sr) as usize);
    for k in 0..count {
        add_at(&mut out, samples((dur + gap) * k as f32, sr), &tone);
    }
    out
}

fn footsteps(rng: &mut SplitMix64, sr: f32) -> Vec<f32> {
    let steps = 2 + rng.below(5) as usize;
    let interval = rng.uniform(0.4, 0.6);
    let fc = rng.uniform(300.0, 1500.0);
    let mut out = vec![0.0; samples(interval * steps as f32 + 0.2, sr)];
    for k in 0..steps {
        let len = samples(0.12, sr);
        let tau = rng.uniform(0.01, 0.03);
        let mut burst = noise_burst(rng, tau, len, sr);
        Biquad::bandpass(fc * rng.uniform(0.8, 1.25), 1.0, sr).run(&mut burst);
        let thump = decaying_tone(rng.uniform(60.0, 100.0), &[0.6], 0.03, len, sr);
        add_at(&mut burst, 0, &thump);
        let at = interval * k as f32 * rng.uniform(0.9, 1.1);
        add_at(&mut out, samples(at, sr), &burst);
    }
    out
}

fn rail_clack(rng: &mut SplitMix64, sr: f32) -> Vec<f32> {
    let pairs = 1 + rng.below(4) as usize;
    let pair_gap = rng.uniform(0.06, 0.12);
    let period = rng.uniform(0.3, 0.6);
    let fc = rng.uniform(600.0, 2500.0);
    let ring = rng.uniform(1000.0, 3000.0);
    let mut out = vec![0.0; samples(period * pairs as f32 + 0.2, sr)];
    for p in 0..pairs {
        for c in 0..2 {
            let len = samples(0.06, sr);
            let mut click = noise_burst(rng, 0.008, len, sr);
            Biquad::bandpass(fc, 2.0, sr).run(&mut click);
            let metal = decaying_tone(ring, &[0.5, 0.2], 0.02, len, sr);
            add_at(&mut click, 0, &metal);
            let at = period * p as f32 + pair_gap * c as f32;
            add_at(&mut out, samples(at, sr), &click);
        }
    }
    out
}

fn bird(rng: &mut SplitMix64, sr: f32) -> Vec<f32> {
    let chirps = 2 + rng.below(6) as usize;
    let f0 = rng.uniform(2000.0, 6000.0);
    let ratio = rng.uniform(0.5, 1.8);
    let mut out = Vec::new();
    for _ in 0..chirps {
        let dur = rng.uniform(0.04, 0.15);
        let len = samples(dur, sr);
        let (fa, fb) = (f0 * rng.uniform(0.9, 1.1), f0 * ratio);
        let vib = rng.uniform(20.0, 60.0);
        let mut phase = 0.0f32;
        for i in 0..len {
            let u = i as f32 / len as f32;
            let f = fa + (fb - fa) * u + 0.03 * fa * (TAU * vib * u * dur).sin();
            phase = (phase + TAU * f / sr) % TAU;
            let env = (std::f32::consts::PI * u).sin().powi(2);
            out.push(env * (phase.sin() + 0.2 * (2.0 * phase).sin()));
        }
        out.extend(std::iter::repeat_n(
            0.0,
            samples(rng.uniform(0.04, 0.25), sr),
        ));
    }
    out
}

fn car_pass(rng: &mut SplitMix64, sr: f32) -> Vec<f32> {
    let dur = rng.uniform(1.5, 4.0);
    let len = samples(dur, sr);
    let tc = dur * rng.uniform(0.35, 0.65);
    let width = rng.uniform(0.3, 0.8);
    let f0 = rng.uniform(40.0, 90.0);
    let doppler = rng.uniform(0.03, 0.08);
    let mut tyre: Vec<f32> = (0..len).map(|_| rng.normal()).collect();
    Biquad::lowpass(rng.uniform(500.0, 2000.0), 0.7, sr).run(&mut tyre);
    let mut phase = 0.0f32;
    (0..len)
        .map(|i| {
            let t = i as f32 / sr;
            let d = (t - tc) / width;
            let env = 1.0 / (1.0 + d * d);
            let f = f0 * (1.0 - doppler * d.tanh());
            phase = (phase + TAU * f / sr) % TAU;
            let engine: f32 = (1..=6).map(|k| (k as f32 * phase).sin() / k as f32).sum();
            env * (2.0 * tyre[i] + 0.5 * engine)
        })
        .collect()
}

fn babble(rng: &mut SplitMix64, sr: f32) -> Vec<f32> {
    let syllables = 2 + rng.below(7) as usize;
    let f0 = rng.uniform(100.0, 250.0);
    let mut out = Vec::new();
    let mut phase = 0.0f32;
    for s in 0..syllables {
        let dur = rng.uniform(0.12, 0.3);
        let len = samples(dur, sr);
        let voiced = rng.chance(0.8);
        let formants = [
            rng.uniform(300.0, 800.0),
            rng.uniform(900.0, 2200.0),
            rng.uniform(2300.0, 3000.0),
        ];
        let mut filters: Vec<Biquad> = formants
            .iter()
            .map(|&f| Biquad::bandpass(f, 5.0, sr))
            .collect();
        let pitch = f0 * (1.0 + 0.1 * (s as f32 * 1.7).sin());
        for i in 0..len {
            let u = i as f32 / len as f32;
            let src = if voiced {
                phase = (phase + pitch / sr) % 1.0;
                2.0 * phase - 1.0 + 0.1 * rng.normal()
            } else {
                0.5 * rng.normal()
            };
            let y: f32 = filters.iter_mut().map(|f| f.process(src)).sum();
            out.push(y * (std::f32::consts::PI * u).sin());
        }
        out.extend(std::iter::repeat_n(
            0.0,
            samples(rng.uniform(0.0, 0.12), sr),
        ));
    }
    out
}

fn brake(rng: &mut SplitMix64, sr: f32) -> Vec<f32> {
    let dur = rng.uniform(0.4, 1.5);
    let len = samples(dur, sr);
    let f = rng.uniform(2000.0, 6000.0);
    let vib = rng.uniform(5.0, 15.0);
    let depth = rng.uniform(0.01, 0.03);
    let mut phase = 0.0f32;
    (0..len)
        .map(|i| {
            let t = i as f32 / sr;
            let env = (t / 0.1).min(1.0) * ((dur - t) / 0.2).clamp(0.0, 1.0);
            phase = (phase + TAU * f * (1.0 + depth * (TAU * vib * t).sin()) / sr) % TAU;
            env * (phase.sin() + 0.3 * (2.0 * phase).sin() + 0.05 * rng.normal())
        })
        .collect()
}

fn horn(rng: &mut SplitMix64, sr: f32) -> Vec<f32> {
    let dur = rng.uniform(0.2, 0.8);
    let f1 = rng.uniform(300.0, 450.0);
    let amps: Vec<f32> = (1..=8).map(|k| 1.0 / k as f32).collect();
    let a = decaying_tone(f1, &amps, 10.0, samples(dur, sr), sr);
    let b = decaying_tone(f1 * 1.26, &amps, 10.0, samples(dur, sr), sr);
    a.iter().zip(&b).map(|(x, y)| x + y).collect()
}

fn engine_rev(rng: &mut SplitMix64, sr: f32) -> Vec<f32> {
    let dur = rng.uniform(0.8, 2.0);
    let len = samples(dur, sr);
    let (lo, hi) = (rng.uniform(25.0, 35.0), rng.uniform(60.0, 100.0));
    let mut rumble: Vec<f32> = (0..len).map(|_| rng.normal()).collect();
    Biquad::lowpass(300.0, 0.7, sr).run(&mut rumble);
    let mut phase = 0.0f32;
    (0..len)
        .map(|i| {
            let u = i as f32 / len as f32;
            let f = lo + (hi - lo) * (std::f32::consts::PI * u).sin();
            phase = (phase + TAU * f / sr) % TAU;
            let h: f32 = (1..=10).map(|k| (k as f32 * phase).sin() / k as f32).sum();
            h + rumble[i]
        })
        .collect()
}

fn door_hiss(rng: &mut SplitMix64, sr: f32) -> Vec<f32> {
    let dur = rng.uniform(0.3, 0.7);
    let len = samples(dur, sr);
    let mut hiss: Vec<f32> = (0..len)
        .map(|i| rng.normal() * (-(i as f32) / (0.4 * len as f32)).exp())
        .collect();
    Biquad::highpass(rng.uniform(2000.0, 4000.0), 0.7, sr).run(&mut hiss);
    let thud = decaying_tone(rng.uniform(50.0, 80.0), &[3.0], 0.05, samples(0.2, sr), sr);
    hiss.extend(thud);
    hiss
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_renders_finite_unit_rms() {
        use EventKind::*;
        for kind in [
            Chime, Beep, Footsteps, RailClack, BirdChirp, CarPass, Babble, Brake, Horn, EngineRev,
            DoorHiss,
        ] {
            let mut rng = SplitMix64::new(11);
            let x = render(kind, &mut rng, 16000.0);
            assert!(x.len() > 160, "{kind:?}");
            assert!(x.iter().all(|v| v.is_finite()), "{kind:?}");
            let r = super::super::dsp::rms(&x);
            assert!((r - 1.0).abs() < 1e-3, "{kind:?}: rms {r}");
            let mut rng2 = SplitMix64::new(11);
            assert_eq!(
                x,
                render(kind, &mut rng2, 16000.0),
                "{kind:?} not deterministic"
            );
        }
    }
}
