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

    /// Summarises a histogram of impostor distances (`counts[i]` pairs in
    /// `[i·bin_width, (i+1)·bin_width)`): one point per bin edge while the FAR is low, then
    /// points spaced so that the FAR grows by at most ~5% (or 1e-3 absolute) between them, so
    /// the curve stays small and is as fine as the data in the low-FAR tail.
    pub fn from_histogram(counts: &[u64], bin_width: f32, source: &str) -> ImpostorCdf {
        let total: u64 = counts.iter().sum();
        let mut points: Vec<(f32, f64)> = Vec::new();
        if total == 0 {
            return ImpostorCdf {
                points,
                pairs: 0,
                source: source.to_string(),
            };
        }
        let mut cumulative = 0u64;
        let mut last_far = 0.0f64;
        let last_bin = counts.iter().rposition(|&c| c > 0).unwrap_or(0);
        for (i, &count) in counts.iter().enumerate().take(last_bin + 1) {
            if count == 0 {
                continue;
            }
            let lower = i as f32 * bin_width;
            let before = cumulative as f64 / total as f64;
            // The curve starts at the lower edge of the first occupied bin, and stays flat
            // across empty bins (a gap, not a slope) while every pair so far has its point.
            if points.last().is_none_or(|&(d, f)| d < lower && f == before) {
                points.push((lower, before));
            }
            cumulative += count;
            let far = cumulative as f64 / total as f64;
            let upper = (i + 1) as f32 * bin_width;
            let keep = cumulative <= 1000
                || far >= last_far * 1.05
                || far - last_far >= 1e-3
                || i == last_bin;
            if keep {
                points.push((upper, far));
                last_far = far;
            }
        }
        ImpostorCdf {
            points,
            pairs: total as usize,
            source: source.to_string(),
        }
    }

    /// The largest distance whose estimated FAR is at most `far` (inverse of
    /// [`ImpostorCdf::far_at`], interpolated), and whether the data resolves that rate; below
    /// the floor the smallest impostor distance is returned with `measured = false`.
    pub fn distance_at_far(&self, far: f64) -> Option<DistanceAtFar> {
        let first = *self.points.first()?;
        if far < self.floor() || far <= first.1 {
            return Some(DistanceAtFar {
                distance: first.0,
                measured: far >= self.floor(),
            });
        }
        for w in self.points.windows(2) {
            let ((d0, f0), (d1, f1)) = (w[0], w[1]);
            if far >= f0 && far < f1 {
                let t = ((far - f0) / (f1 - f0)) as f32;
                return Some(DistanceAtFar {
                    distance: d0 + t * (d1 - d0),
                    measured: true,
                });
            }
        }
        let last = *self.points.last()?;
        Some(DistanceAtFar {
            distance: last.0,
            measured: true,
        })
    }
}

/// A threshold read off an impostor curve.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DistanceAtFar {
    pub distance: f32,
    /// False when the rate asked for is below what the calibration data can resolve (fewer
    /// than one impostor pair in that many): the distance is then the smallest impostor
    /// distance seen, and the real rate there is unknown.
    pub measured: bool,
}

/// The per-comparison false accept rate that keeps the false positive identification rate of
/// a search through `people` people at `fpir`: a non-mated search returns someone when any of
/// the `people` comparisons is accepted, so `FPIR = 1 − (1 − FAR)^people` (comparisons taken as
/// independent), i.e. `FAR = 1 − (1 − FPIR)^(1/people)`.
pub fn far_for_fpir(fpir: f64, people: usize) -> f64 {
    let n = people.max(1) as f64;
    // -expm1(ln_1p(-fpir) / n) is 1 − (1 − fpir)^(1/n) without cancellation for small rates.
    -((-fpir).ln_1p() / n).exp_m1()
}

/// The expected false positive identification rate of `people` comparisons at `far` each.
pub fn fpir_for_far(far: f64, people: usize) -> f64 {
    -((-far).ln_1p() * people.max(1) as f64).exp_m1()
}

/// Named security levels for users who do not want to read ROC curves: each is a target false
/// accept rate per comparison, measured on the shipped (or one's own) calibration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SecurityLevel {
    /// FAR 1e-2: convenience (a photo frame, a personal album).
    Low,
    /// FAR 1e-3: the default.
    Medium,
    /// FAR 1e-4: doors, payments.
    High,
}

impl SecurityLevel {
    pub fn target_far(self) -> f64 {
        match self {
            SecurityLevel::Low => 1e-2,
            SecurityLevel::Medium => 1e-3,
            SecurityLevel::High => 1e-4,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            SecurityLevel::Low => "low",
            SecurityLevel::Medium => "medium",
            SecurityLevel::High => "high",
        }
    }

    pub fn parse(text: &str) -> Result<SecurityLevel, String> {
        match text {
            "low" => Ok(SecurityLevel::Low),
            "medium" => Ok(SecurityLevel::Medium),
            "high" => Ok(SecurityLevel::High),
            other => Err(format!(
                "unknown security level `{other}`: choose low (FAR 1e-2), medium (1e-3, the default) or high (1e-4)"
            )),
        }
    }
}

/// A similarity in [0, 1] for clients that accept above a cut-off of their own (the
/// CompreFace and DeepStack APIs): 1 at distance 0, 0 at distance 2 (the farthest two unit
/// embeddings can be), falling linearly on each side of `threshold`, where it equals
/// `at_threshold`. A client whose default cut-off is `at_threshold` therefore accepts exactly
/// what facegate's threshold accepts, and a stricter cut-off is a stricter threshold.
pub fn similarity(distance: f32, threshold: f32, at_threshold: f64) -> f64 {
    let d = f64::from(distance).clamp(0.0, 2.0);
    let t = f64::from(threshold).clamp(1e-6, 2.0 - 1e-6);
    let at = at_threshold.clamp(0.0, 1.0);
    if d <= t {
        1.0 - (1.0 - at) * d / t
    } else {
        at * (2.0 - d) / (2.0 - t)
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

fn shipped(model_id: &str) -> Option<&'static ShippedCalibration> {
    // Parsed once: every verify asks for its threshold and FAR estimate, and parsing the
    // impostor curves each time would be a noticeable part of a warm verify.
    static PARSED: OnceLock<Option<BTreeMap<String, ShippedCalibration>>> = OnceLock::new();
    PARSED
        .get_or_init(|| serde_json::from_str(SHIPPED).ok())
        .as_ref()?
        .get(model_id)
}

/// The default threshold for a model: calibrated on LFW for a false accept rate of 1e-3.
pub fn default_threshold(model_id: &str) -> Option<Threshold> {
    let c = shipped(model_id)?;
    Some(Threshold {
        metric: Metric::Euclidean,
        value: c.value,
        source: ThresholdSource::Default,
        note: format!(
            "calibrated on LFW for FAR {:.0e} (measured FAR {:.1e} on {} LFW impostor pairs, TAR {:.2}%); {}",
            c.target_far,
            c.measured_far,
            c.impostor_pairs,
            c.measured_tar * 100.0,
            OTHER_POPULATIONS
        ),
    })
}

/// What every rate measured on LFW must say: it holds for LFW's photos, not for everyone's.
pub const OTHER_POPULATIONS: &str =
    "a rate measured on LFW photos: other photo populations differ (several times higher on other in-the-wild sets), calibrate on yours";

/// The LFW impostor distances behind a model's default threshold, for FAR estimates before
/// any calibration of one's own.
pub fn default_impostor_cdf(model_id: &str) -> Option<&'static ImpostorCdf> {
    shipped(model_id).map(|c| &c.impostor_cdf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn similarity_meets_the_client_cut_off_exactly_at_the_threshold() {
        for threshold in [0.4f32, 0.8, 1.1] {
            assert!((similarity(threshold, threshold, 0.67) - 0.67).abs() < 1e-9);
            assert_eq!(similarity(0.0, threshold, 0.67), 1.0);
            assert_eq!(similarity(2.0, threshold, 0.67), 0.0);
            let mut last = f64::INFINITY;
            for i in 0..=200 {
                let s = similarity(i as f32 / 100.0, threshold, 0.6);
                assert!(s <= last && (0.0..=1.0).contains(&s));
                last = s;
            }
            // Accepted by the cut-off exactly when within the threshold.
            assert!(similarity(threshold - 1e-3, threshold, 0.67) >= 0.67);
            assert!(similarity(threshold + 1e-3, threshold, 0.67) < 0.67);
        }
    }

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
            assert!(cdf.pairs >= 3000, "{model}: {} pairs", cdf.pairs);
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
    fn histogram_cdf_keeps_the_tail_and_inverts() {
        // 10 bins of 0.1: one pair in bin 3, 9 in bin 5, 90 in bin 8.
        let mut counts = vec![0u64; 10];
        counts[3] = 1;
        counts[5] = 9;
        counts[8] = 90;
        let cdf = ImpostorCdf::from_histogram(&counts, 0.1, "t");
        assert_eq!(cdf.pairs, 100);
        assert_eq!(cdf.far_at(0.25), None);
        assert!((cdf.far_at(0.4).unwrap() - 0.01).abs() < 1e-9);
        assert!((cdf.far_at(0.6).unwrap() - 0.10).abs() < 1e-9);
        assert_eq!(cdf.far_at(2.0), Some(1.0));
        // The largest distance at that FAR: the curve is flat over the empty bins 6 and 7.
        let at = cdf.distance_at_far(0.10).unwrap();
        assert!(at.measured && (at.distance - 0.8).abs() < 1e-6, "{at:?}");
        // Halfway between the points (0.5, 0.01) and (0.6, 0.10).
        let at = cdf.distance_at_far(0.055).unwrap();
        assert!((at.distance - 0.55).abs() < 1e-4, "{at:?}");
        // Below 1 in 100 the data cannot say.
        let at = cdf.distance_at_far(1e-3).unwrap();
        assert!(!at.measured);
        assert!((at.distance - 0.3).abs() < 1e-6);
        assert!(ImpostorCdf::from_histogram(&[0, 0], 0.1, "t")
            .distance_at_far(0.1)
            .is_none());
    }

    #[test]
    fn fpir_and_far_are_inverse_and_grow_with_the_gallery() {
        let far = far_for_fpir(0.01, 1680);
        assert!((far - 5.982e-6).abs() < 1e-8, "{far}");
        assert!((fpir_for_far(far, 1680) - 0.01).abs() < 1e-12);
        assert!((far_for_fpir(0.01, 1) - 0.01).abs() < 1e-15);
        assert!(far_for_fpir(0.01, 10_000) < far_for_fpir(0.01, 100));
        // The finding: at FAR 1e-3 per comparison, 1680 people give FPIR ~81%.
        assert!((fpir_for_far(1e-3, 1680) - 0.8138).abs() < 1e-3);
    }

    #[test]
    fn security_levels_parse_and_order() {
        assert_eq!(SecurityLevel::parse("high"), Ok(SecurityLevel::High));
        assert!(SecurityLevel::parse("paranoid")
            .unwrap_err()
            .contains("low"));
        assert!(SecurityLevel::High.target_far() < SecurityLevel::Medium.target_far());
        assert!(SecurityLevel::Medium.target_far() < SecurityLevel::Low.target_far());
    }

    #[test]
    fn zero_vector_is_maximally_distant_in_cosine() {
        assert_eq!(cosine_distance(&[0.0, 0.0], &[1.0, 0.0]), 1.0);
    }
}
