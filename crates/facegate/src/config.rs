//! `<home>/config.json`: settings facegate stores for itself — today the calibrated
//! threshold of each model.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use facegate_decide::{ImpostorCdf, Metric};
use serde::{Deserialize, Serialize};

use crate::Error;

/// A threshold chosen by `facegate calibrate`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CalibratedThreshold {
    pub metric: Metric,
    pub value: f32,
    /// What was asked for.
    pub target_far: f64,
    /// What the threshold gives on the calibration pairs.
    pub measured_far: f64,
    /// Genuine pairs accepted at this threshold.
    pub measured_tar: f64,
    pub genuine_pairs: usize,
    pub impostor_pairs: usize,
    /// The pairs file.
    pub source: String,
    /// The pipeline that produced the distances (model, detector, alignment).
    pub pipeline: String,
    /// For estimating the FAR of any distance.
    pub impostor_cdf: ImpostorCdf,
    /// The 1:N target stored by `calibrate --target-fpir` (see
    /// [`crate::Engine::identification_threshold`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_fpir: Option<f64>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Config {
    /// By model id.
    #[serde(default)]
    pub thresholds: BTreeMap<String, CalibratedThreshold>,
}

impl Config {
    pub fn path(data_dir: &Path) -> PathBuf {
        data_dir.join("config.json")
    }

    /// The stored config, or the empty one when there is none yet.
    pub fn load(data_dir: &Path) -> Result<Config, Error> {
        let path = Config::path(data_dir);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| Error::Config {
                path,
                message: e.to_string(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Config::default()),
            Err(e) => Err(Error::Config {
                path,
                message: e.to_string(),
            }),
        }
    }

    /// Writes atomically (temp file + rename), so a crash leaves the old or the new config; the
    /// file is readable by its owner only.
    pub fn save(&self, data_dir: &Path) -> Result<(), Error> {
        let path = Config::path(data_dir);
        let error = |message: String| Error::Config {
            path: path.clone(),
            message,
        };
        let bytes = serde_json::to_vec_pretty(self).map_err(|e| error(e.to_string()))?;
        facegate_gallery::private::write_atomically(&path, &bytes).map_err(|e| error(e.to_string()))
    }
}
