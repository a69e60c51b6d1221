//! Simulated recording devices, named like TAU 2020 Mobile (docs/datasets.md): `a` a good reference
//! microphone, `b`, `c` consumer devices, `s1`-`s6` simulated ones with `s4`-`s6` appearing only
//! in the test split (unseen devices). A device is a frequency response, a gain, a noise floor and
//! optional soft clipping: the mismatch that device-robust normalisation layers target.

use super::dsp::SpectralShape;

#[derive(Debug, Clone)]
pub struct DeviceModel {
    pub name: &'static str,
    pub response: SpectralShape,
    pub gain_db: f32,
    /// Additive white noise level (dBFS RMS).
    pub noise_floor_dbfs: f32,
    /// Soft-clipping drive; 0 for a linear device.
    pub drive: f32,
    /// Only in the test split.
    pub unseen: bool,
    /// Relative share of training clips (DCASE 2020: most training data is device `a`).
    pub train_weight: f32,
}

fn shape(slope: f32, bumps: &[(f32, f32, f32)], hp: f32, lp: f32, order: f32) -> SpectralShape {
    SpectralShape {
        slope_db_oct: slope,
        bumps: bumps.to_vec(),
        highpass_hz: hp,
        lowpass_hz: lp,
        lowpass_order: order,
    }
}

/// The device catalogue, in name order.
pub fn catalogue() -> Vec<DeviceModel> {
    let d = |name, response, gain_db, noise_floor_dbfs, drive, unseen, train_weight| DeviceModel {
        name,
        response,
        gain_db,
        noise_floor_dbfs,
        drive,
        unseen,
        train_weight,
    };
    vec![
        d(
            "a",
            shape(0.0, &[], 20.0, 15000.0, 2.0),
            0.0,
            -80.0,
            0.0,
            false,
            5.0,
        ),
        d(
            "b",
            shape(0.0, &[(3000.0, 1.0, 4.0)], 150.0, 11000.0, 3.0),
            -3.0,
            -68.0,
            0.0,
            false,
            1.0,
        ),
        d(
            "c",
            shape(0.0, &[(2500.0, 0.6, 6.0)], 300.0, 8000.0, 3.0),
            2.0,
            -65.0,
            0.0,
            false,
            1.0,
        ),
        d(
            "s1",
            shape(-1.5, &[], 80.0, 6000.0, 2.0),
            0.0,
            -70.0,
            0.0,
            false,
            1.0,
        ),
        d(
            "s2",
            shape(0.0, &[(800.0, 1.0, -4.0)], 500.0, 12000.0, 2.0),
            -4.0,
            -55.0,
            0.0,
            false,
            1.0,
        ),
        d(
            "s3",
            shape(
                0.5,
                &[(1000.0, 0.5, -6.0), (4000.0, 0.8, 5.0)],
                100.0,
                10000.0,
                2.0,
            ),
            3.0,
            -66.0,
            2.0,
            false,
            1.0,
        ),
        d(
            "s4",
            shape(0.0, &[(1500.0, 1.0, 3.0)], 250.0, 4000.0, 4.0),
            0.0,
            -60.0,
            0.0,
            true,
            0.0,
        ),
        d(
            "s5",
            shape(-2.0, &[(120.0, 1.0, 8.0)], 40.0, 9000.0, 2.0),
            4.0,
            -64.0,
            3.0,
            true,
            0.0,
        ),
        d(
            "s6",
            shape(1.5, &[(2000.0, 1.5, 4.0)], 400.0, 5000.0, 3.0),
            -2.0,
            -52.0,
            0.0,
            true,
            0.0,
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unseen_devices_are_s4_to_s6() {
        let unseen: Vec<&str> = catalogue()
            .iter()
            .filter(|d| d.unseen)
            .map(|d| d.name)
            .collect();
        assert_eq!(unseen, ["s4", "s5", "s6"]);
        assert!(catalogue()
            .iter()
            .all(|d| d.unseen == (d.train_weight == 0.0)));
    }
}
