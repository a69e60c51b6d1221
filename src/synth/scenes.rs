//! The scene catalogue: for each of the ten DCASE scene names, a background spectrum, an
//! optional stationary hum, event rates and a room. Classes overlap on purpose (docs/datasets.md:
//! real scenes are confusable): vehicles share rumble and rail clacks, halls share chimes, babble
//! and footsteps, outdoor scenes share cars and birds — at different rates and levels. Each
//! recording location perturbs its class recipe ([`LocationParams`]), which is why splits must be
//! location-disjoint.

use super::dsp::SpectralShape;
use super::events::EventKind;
use crate::dataset::rng::SplitMix64;

use EventKind::*;

/// A class recipe.
#[derive(Debug, Clone)]
pub struct SceneRecipe {
    pub name: &'static str,
    pub slope_db_oct: f32,
    /// Background resonances (centre Hz, width octaves, gain dB).
    pub bumps: &'static [(f32, f32, f32)],
    pub lowpass_hz: f32,
    /// Slow amplitude modulation of the background: rate range (Hz) and depth range.
    pub am_rate: (f32, f32),
    pub am_depth: (f32, f32),
    /// Stationary hum: fundamental range (Hz) and level range (dB re background), if any.
    pub hum: Option<((f32, f32), (f32, f32))>,
    /// Events per second of each kind.
    pub events: &'static [(EventKind, f32)],
    /// Event-to-background level range (dB).
    pub snr_db: (f32, f32),
    /// Room: RT60 range (s) and wet fraction range.
    pub rt60: (f32, f32),
    pub wet: (f32, f32),
}

/// All scenes the generator knows, alphabetical (the DCASE 2020 class list, docs/datasets.md).
pub const CATALOGUE: &[SceneRecipe] = &[
    SceneRecipe {
        name: "airport",
        slope_db_oct: -4.0,
        bumps: &[(250.0, 1.0, 6.0), (2500.0, 1.5, -3.0)],
        lowpass_hz: 8000.0,
        am_rate: (0.05, 0.2),
        am_depth: (0.05, 0.2),
        hum: Some(((90.0, 120.0), (-18.0, -8.0))),
        events: &[
            (Babble, 0.7),
            (Footsteps, 0.5),
            (Chime, 0.12),
            (Beep, 0.08),
            (DoorHiss, 0.05),
        ],
        snr_db: (-8.0, 6.0),
        rt60: (1.0, 2.0),
        wet: (0.4, 0.65),
    },
    SceneRecipe {
        name: "bus",
        slope_db_oct: -6.5,
        bumps: &[(100.0, 0.8, 9.0), (600.0, 1.0, 3.0)],
        lowpass_hz: 6000.0,
        am_rate: (0.05, 0.3),
        am_depth: (0.2, 0.45),
        hum: Some(((28.0, 45.0), (-10.0, -2.0))),
        events: &[
            (Beep, 0.1),
            (Babble, 0.3),
            (DoorHiss, 0.12),
            (EngineRev, 0.15),
            (Footsteps, 0.1),
        ],
        snr_db: (-10.0, 4.0),
        rt60: (0.2, 0.4),
        wet: (0.15, 0.3),
    },
    SceneRecipe {
        name: "metro",
        slope_db_oct: -5.0,
        bumps: &[(300.0, 1.0, 8.0), (1500.0, 0.8, 3.0)],
        lowpass_hz: 7000.0,
        am_rate: (0.2, 1.0),
        am_depth: (0.2, 0.45),
        hum: Some(((300.0, 900.0), (-18.0, -8.0))),
        events: &[
            (RailClack, 0.8),
            (Brake, 0.1),
            (Beep, 0.08),
            (Babble, 0.25),
            (DoorHiss, 0.05),
        ],
        snr_db: (-10.0, 3.0),
        rt60: (0.2, 0.5),
        wet: (0.15, 0.35),
    },
    SceneRecipe {
        name: "metro_station",
        slope_db_oct: -4.0,
        bumps: &[(400.0, 1.2, 5.0)],
        lowpass_hz: 8000.0,
        am_rate: (0.05, 0.3),
        am_depth: (0.05, 0.3),
        hum: Some(((90.0, 120.0), (-22.0, -12.0))),
        events: &[
            (Chime, 0.12),
            (Footsteps, 0.6),
            (Babble, 0.45),
            (RailClack, 0.2),
            (Brake, 0.08),
        ],
        snr_db: (-8.0, 6.0),
        rt60: (1.0, 2.5),
        wet: (0.45, 0.7),
    },
    SceneRecipe {
        name: "park",
        slope_db_oct: -3.0,
        bumps: &[(3000.0, 1.5, 3.0), (150.0, 1.0, 2.0)],
        lowpass_hz: 10000.0,
        am_rate: (0.05, 0.5),
        am_depth: (0.2, 0.6),
        hum: None,
        events: &[
            (BirdChirp, 1.0),
            (Babble, 0.15),
            (Footsteps, 0.2),
            (CarPass, 0.08),
        ],
        snr_db: (-10.0, 4.0),
        rt60: (0.05, 0.15),
        wet: (0.0, 0.1),
    },
    SceneRecipe {
        name: "public_square",
        slope_db_oct: -4.0,
        bumps: &[(500.0, 1.2, 4.0)],
        lowpass_hz: 9000.0,
        am_rate: (0.05, 0.3),
        am_depth: (0.1, 0.3),
        hum: None,
        events: &[
            (Babble, 0.8),
            (Footsteps, 0.6),
            (CarPass, 0.15),
            (BirdChirp, 0.3),
            (Horn, 0.04),
        ],
        snr_db: (-8.0, 5.0),
        rt60: (0.2, 0.6),
        wet: (0.1, 0.25),
    },
    SceneRecipe {
        name: "shopping_mall",
        slope_db_oct: -4.0,
        bumps: &[(250.0, 1.0, 5.0), (2000.0, 1.0, 2.0)],
        lowpass_hz: 8000.0,
        am_rate: (0.05, 0.2),
        am_depth: (0.05, 0.2),
        hum: Some(((90.0, 120.0), (-20.0, -10.0))),
        events: &[(Babble, 1.1), (Footsteps, 0.7), (Chime, 0.08), (Beep, 0.12)],
        snr_db: (-8.0, 5.0),
        rt60: (0.8, 1.6),
        wet: (0.35, 0.6),
    },
    SceneRecipe {
        name: "street_pedestrian",
        slope_db_oct: -4.5,
        bumps: &[(600.0, 1.2, 3.0)],
        lowpass_hz: 9000.0,
        am_rate: (0.05, 0.4),
        am_depth: (0.1, 0.35),
        hum: None,
        events: &[
            (Footsteps, 1.0),
            (Babble, 0.7),
            (CarPass, 0.2),
            (BirdChirp, 0.15),
            (Horn, 0.04),
        ],
        snr_db: (-8.0, 5.0),
        rt60: (0.1, 0.4),
        wet: (0.05, 0.2),
    },
    SceneRecipe {
        name: "street_traffic",
        slope_db_oct: -6.0,
        bumps: &[(120.0, 1.0, 6.0), (1000.0, 1.0, 2.0)],
        lowpass_hz: 8000.0,
        am_rate: (0.1, 0.4),
        am_depth: (0.3, 0.6),
        hum: None,
        events: &[
            (CarPass, 0.7),
            (Horn, 0.12),
            (EngineRev, 0.2),
            (Brake, 0.05),
            (Footsteps, 0.1),
        ],
        snr_db: (-6.0, 6.0),
        rt60: (0.05, 0.3),
        wet: (0.0, 0.15),
    },
    SceneRecipe {
        name: "tram",
        slope_db_oct: -5.5,
        bumps: &[(200.0, 1.0, 6.0), (800.0, 1.0, 4.0)],
        lowpass_hz: 7000.0,
        am_rate: (0.1, 0.6),
        am_depth: (0.2, 0.45),
        hum: Some(((150.0, 400.0), (-16.0, -6.0))),
        events: &[
            (RailClack, 0.6),
            (Beep, 0.15),
            (Brake, 0.12),
            (Babble, 0.3),
            (DoorHiss, 0.08),
        ],
        snr_db: (-10.0, 4.0),
        rt60: (0.2, 0.4),
        wet: (0.15, 0.3),
    },
];

/// Scenes used by default: two vehicles, two halls, two outdoor scenes, so every class has a
/// confusable neighbour.
pub const DEFAULT_SCENES: &[&str] = &[
    "airport",
    "bus",
    "metro_station",
    "park",
    "street_traffic",
    "tram",
];

pub fn recipe(name: &str) -> Option<&'static SceneRecipe> {
    CATALOGUE.iter().find(|r| r.name == name)
}

/// What one recording location fixes for all its clips: the background spectrum (recipe
/// perturbed), the hum pitch, the room and how busy the place is.
#[derive(Debug, Clone)]
pub struct LocationParams {
    pub background: SpectralShape,
    pub hum_hz: f32,
    pub hum_db: f32,
    pub rt60: f32,
    pub wet: f32,
    /// Multiplies every event rate of the recipe.
    pub busyness: f32,
    /// Per-kind rate multipliers (same order as the recipe's events).
    pub event_rate_scale: Vec<f32>,
}

impl LocationParams {
    pub fn draw(recipe: &SceneRecipe, rng: &mut SplitMix64) -> Self {
        let bumps = recipe
            .bumps
            .iter()
            .map(|&(f, w, g)| {
                (
                    f * rng.uniform(0.7, 1.4),
                    w * rng.uniform(0.8, 1.25),
                    g + rng.uniform(-3.0, 3.0),
                )
            })
            .collect();
        let background = SpectralShape {
            slope_db_oct: recipe.slope_db_oct + rng.uniform(-1.5, 1.5),
            bumps,
            highpass_hz: rng.uniform(20.0, 60.0),
            lowpass_hz: recipe.lowpass_hz * rng.uniform(0.7, 1.3),
            lowpass_order: 2.0,
        };
        let (hum_hz, hum_db) = match recipe.hum {
            Some(((f0, f1), (l0, l1))) => (rng.uniform(f0, f1), rng.uniform(l0, l1)),
            None => (0.0, f32::NEG_INFINITY),
        };
        Self {
            background,
            hum_hz,
            hum_db,
            rt60: rng.uniform(recipe.rt60.0, recipe.rt60.1),
            wet: rng.uniform(recipe.wet.0, recipe.wet.1),
            busyness: rng.uniform(0.6, 1.5),
            event_rate_scale: recipe
                .events
                .iter()
                .map(|_| rng.uniform(0.5, 1.5))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalogue_is_sorted_unique_and_defaults_exist() {
        let names: Vec<&str> = CATALOGUE.iter().map(|r| r.name).collect();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(names, sorted);
        assert!(DEFAULT_SCENES.len() >= 6);
        assert!(DEFAULT_SCENES.iter().all(|s| recipe(s).is_some()));
    }
}
