//! Distances between face embeddings and the match decision.
//!
//! Embeddings are L2-normalised, so the two common distances carry the same information:
//! `euclidean² = 2 · cosine_distance`. facegate decides on the Euclidean distance (the metric
//! FaceNet was trained with, via the triplet loss) and reports both.

pub mod eval;

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::OnceLock;

/// Which distance a threshold applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// `‖a − b‖` on unit vectors, in [0, 2].
    Euclidean,
    /// `1 − a·b` on unit vectors, in [0, 2].
    Cosine,
}

impl Metric {
    pub fn name(self) -> &'static str {
        match self {
            Metric::Euclidean => "euclidean",
            Metric::Cosine => "cosine",
        }
    }
}

/// Both distances between two embeddings.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Distances {
    pub euclidean: f32,
    pub cosine: f32,
}

impl Distances {
    pub fn between(a: &[f32], b: &[f32]) -> Distances {
        Distances {
            euclidean: euclidean(a, b),
            cosine: cosine_distance(a, b),
        }
    }

    pub fn get(&self, metric: Metric) -> f32 {
        match metric {
            Metric::Euclidean => self.euclidean,
            Metric::Cosine => self.cosine,
        }
    }
}

pub fn euclidean(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y) * (x - y))
        .sum::<f32>()
        .sqrt()
}

/// `1 − cos(a, b)`; for unit vectors `1 − a·b`.
pub fn cosine_distance(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    if na == 0.0 || nb == 0.0 {
        return 1.0;
    }
    1.0 - dot / (na * nb)
}

/// Where a threshold came from, so every answer can say which one it used.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ThresholdSource {
    /// The default shipped for the model.
    Default,
    /// Stored by `facegate calibrate`.
    Calibrated,
    /// Given on the command line.
    Flag,
}

/// A decision threshold: distances at or below it are the same person.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Threshold {
    pub metric: Metric,
    pub value: f32,
    pub source: ThresholdSource,
    /// Where the value comes from, in words.
    pub note: String,
}

impl Threshold {
    pub fn is_match(&self, distances: &Distances) -> bool {
        distances.get(self.metric) <= self.value
    }
}

/// The impostor distance distribution of a calibration set, as `(distance, FAR)` points of its
/// cumulative distribution: how often two *different* people came out at least this close.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ImpostorCdf {
    /// Ascending in both distance and FAR.
    pub points: Vec<(f32, f64)>,
    /// How many impostor pairs the points summarise (FARs below `1 / pairs` are not known).
    pub pairs: usize,
    /// Where the pairs came from.
    pub source: String,
}

impl ImpostorCdf {
    /// Summarises impostor distances into at most ~`resolution` + tail points, keeping every
    /// one of the smallest distances (the low-FAR tail, which matters most).
    pub fn from_distances(distances: &[f32], resolution: usize, source: &str) -> ImpostorCdf {
        let mut sorted = distances.to_vec();
        sorted.sort_by(f32::total_cmp);
        let n = sorted.len();
        let mut points = Vec::new();
        for (i, &d) in sorted.iter().enumerate() {
            let keep = i < 50 || i + 1 == n || (resolution > 0 && i % (n / resolution).max(1) == 0);
            if keep {
                points.push((d, (i + 1) as f64 / n as f64));
            }
        }
        ImpostorCdf {
            points,
            pairs: n,
            source: source.to_string(),
        }
    }

    /// Estimated false accept rate of accepting at `distance`, interpolated; `None` when the
    /// calibration data has no impostor that close (the FAR is below what it can measure).
    pub fn far_at(&self, distance: f32) -> Option<f64> {
        let first = self.points.first()?;
        if distance < first.0 {
            return None;
        }
        for w in self.points.windows(2) {
            let ((d0, f0), (d1, f1)) = (w[0], w[1]);
            if distance >= d0 && distance < d1 {
                let t = f64::from((distance - d0) / (d1 - d0));
                return Some(f0 + t * (f1 - f0));
            }
        }
        Some(1.0)
    }

    /// The smallest FAR this data can resolve.
    pub fn floor(&self) -> f64 {
        1.0 / self.pairs.max(1) as f64
    }
}

/// A calibration shipped with facegate: measured on LFW View 2 (6000 pairs) with facegate's
/// own pipeline by `facegate calibrate --target-far 1e-3` (see docs/ACCURACY.md).
#[derive(Clone, Debug, Deserialize)]
struct ShippedCalibration {
    value: f32,
    target_far: f64,
    measured_far: f64,
    measured_tar: f64,
    impostor_pairs: usize,
    impostor_cdf: ImpostorCdf,
}

/// `data/lfw_calibration.json`: model id -> calibration (the `thresholds` map that
/// `facegate calibrate` wrote to config.json on the LFW run).
static SHIPPED: &str = include_str!("../data/lfw_calibration.json");

fn shipped(model_id: &str) -> Option<ShippedCalibration> {
    // Parsed once: every verify asks for its threshold and FAR estimate, and parsing the
    // 68 KB of impostor curves each time cost a warm verify about a millisecond.
    static PARSED: OnceLock<Option<BTreeMap<String, ShippedCalibration>>> = OnceLock::new();
    PARSED
        .get_or_init(|| serde_json::from_str(SHIPPED).ok())
        .as_ref()?
        .get(model_id)
        .cloned()
}

/// The default threshold for a model: calibrated on LFW for a false accept rate of 1e-3.
pub fn default_threshold(model_id: &str) -> Option<Threshold> {
    let c = shipped(model_id)?;
    Some(Threshold {
        metric: Metric::Euclidean,
        value: c.value,
        source: ThresholdSource::Default,
        note: format!(
            "calibrated on LFW for FAR {:.0e} (measured FAR {:.1e} on {} impostor pairs, TAR {:.2}%)",
            c.target_far,
            c.measured_far,
            c.impostor_pairs,
            c.measured_tar * 100.0
        ),
    })
}

/// The LFW impostor distances behind a model's default threshold, for FAR estimates before
/// any calibration of one's own.
pub fn default_impostor_cdf(model_id: &str) -> Option<ImpostorCdf> {
    shipped(model_id).map(|c| c.impostor_cdf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances_of_unit_vectors_are_consistent() {
        let a = [0.6, 0.8, 0.0];
        let b = [0.0, 1.0, 0.0];
        let d = Distances::between(&a, &b);
        assert!((d.cosine - 0.2).abs() < 1e-6);
        assert!((d.euclidean * d.euclidean - 2.0 * d.cosine).abs() < 1e-6);
        assert_eq!(Distances::between(&a, &a).euclidean, 0.0);
    }

    #[test]
    fn threshold_is_inclusive() {
        let t = Threshold {
            metric: Metric::Euclidean,
            value: 1.0,
            source: ThresholdSource::Flag,
            note: String::new(),
        };
        assert!(t.is_match(&Distances {
            euclidean: 1.0,
            cosine: 0.5
        }));
        assert!(!t.is_match(&Distances {
            euclidean: 1.01,
            cosine: 0.5
        }));
    }

    #[test]
    fn every_model_ships_a_calibrated_default() {
        for model in [
            "facenet-keras-1.1",
            "dlib-resnet-v1",
            "fusion(facenet-keras-1.1+dlib-resnet-v1)",
            "mobilefacenet-human-3.0.4",
            "fusion(mobilefacenet-human-3.0.4+dlib-resnet-v1)",
        ] {
            let t = default_threshold(model).expect(model);
            assert!(t.value > 0.0 && t.value < 2.0, "{model}: {t:?}");
            assert!(t.note.contains("FAR 1e-3"), "{}", t.note);
            let cdf = default_impostor_cdf(model).expect(model);
            assert_eq!(cdf.pairs, 3000);
            // At the threshold the estimated FAR is about the calibrated one.
            let far = cdf.far_at(t.value).unwrap_or(0.0);
            assert!(far <= 2e-3, "{model}: FAR {far} at the default threshold");
        }
        assert!(default_threshold("unknown-model").is_none());
    }

    #[test]
    fn impostor_cdf_interpolates_and_knows_its_floor() {
        let cdf = ImpostorCdf::from_distances(&[0.5, 1.0, 1.5, 2.0], 10, "t");
        assert_eq!(cdf.far_at(0.4), None);
        assert_eq!(cdf.far_at(1.0), Some(0.5));
        assert!((cdf.far_at(1.25).unwrap() - 0.625).abs() < 1e-9);
        assert_eq!(cdf.far_at(5.0), Some(1.0));
        assert_eq!(cdf.floor(), 0.25);
    }

    #[test]
    fn zero_vector_is_maximally_distant_in_cosine() {
        assert_eq!(cosine_distance(&[0.0, 0.0], &[1.0, 0.0]), 1.0);
    }
}
