//! Verification metrics on scored pairs: ROC, AUC, EER, TAR at a FAR, accuracy with the best
//! threshold, and the LFW k-fold protocol. Distances: smaller means more alike; a pair is
//! accepted when `distance <= threshold`.

use serde::{Deserialize, Serialize};

/// One compared pair.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ScoredPair {
    pub distance: f32,
    pub same: bool,
    pub fold: usize,
}

/// A point of the ROC curve: accepting `distance <= threshold` gives this TAR and FAR.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct RocPoint {
    pub threshold: f32,
    pub tar: f64,
    pub far: f64,
}

/// The ROC curve from (0, 0) to (1, 1), one point per distinct distance.
pub fn roc(pairs: &[ScoredPair]) -> Vec<RocPoint> {
    let genuine = pairs.iter().filter(|p| p.same).count().max(1) as f64;
    let impostor = pairs.iter().filter(|p| !p.same).count().max(1) as f64;
    let mut sorted: Vec<&ScoredPair> = pairs.iter().collect();
    sorted.sort_by(|a, b| a.distance.total_cmp(&b.distance));
    let first = sorted.first().map_or(0.0, |p| p.distance);
    let mut points = vec![RocPoint {
        threshold: next_down(first),
        tar: 0.0,
        far: 0.0,
    }];
    let (mut accepted_genuine, mut accepted_impostor) = (0usize, 0usize);
    let mut i = 0;
    while i < sorted.len() {
        let d = sorted[i].distance;
        while i < sorted.len() && sorted[i].distance == d {
            if sorted[i].same {
                accepted_genuine += 1;
            } else {
                accepted_impostor += 1;
            }
            i += 1;
        }
        points.push(RocPoint {
            threshold: d,
            tar: accepted_genuine as f64 / genuine,
            far: accepted_impostor as f64 / impostor,
        });
    }
    points
}

/// Area under the ROC curve (trapezoids).
pub fn auc(roc: &[RocPoint]) -> f64 {
    roc.windows(2)
        .map(|w| (w[1].far - w[0].far) * (w[1].tar + w[0].tar) / 2.0)
        .sum()
}

/// Equal error rate (FAR = 1 − TAR), interpolated between ROC points, and its threshold.
pub fn eer(roc: &[RocPoint]) -> (f64, f32) {
    for w in roc.windows(2) {
        let (a, b) = (w[0], w[1]);
        let (da, db) = (a.far - (1.0 - a.tar), b.far - (1.0 - b.tar));
        if da <= 0.0 && db >= 0.0 {
            let t = if db == da { 0.0 } else { -da / (db - da) };
            let rate = a.far + t * (b.far - a.far);
            let threshold = a.threshold + t as f32 * (b.threshold - a.threshold);
            return (rate, threshold);
        }
    }
    (0.5, roc.last().map_or(0.0, |p| p.threshold))
}

/// TAR at a target FAR: the highest TAR of the points with FAR ≤ target, linearly
/// interpolated towards the next point, with the interpolated threshold. `None` when the curve
/// does not start at or below the target.
pub fn tar_at_far(roc: &[RocPoint], target: f64) -> Option<(f64, f32)> {
    let last = roc.iter().rposition(|p| p.far <= target)?;
    let a = roc[last];
    match roc.get(last + 1) {
        Some(b) if b.far > a.far => {
            let t = (target - a.far) / (b.far - a.far);
            Some((
                a.tar + t * (b.tar - a.tar),
                a.threshold + t as f32 * (b.threshold - a.threshold),
            ))
        }
        _ => Some((a.tar, a.threshold)),
    }
}

/// Fraction of pairs classified correctly at `threshold`.
pub fn accuracy(pairs: &[ScoredPair], threshold: f32) -> f64 {
    if pairs.is_empty() {
        return 0.0;
    }
    let correct = pairs
        .iter()
        .filter(|p| (p.distance <= threshold) == p.same)
        .count();
    correct as f64 / pairs.len() as f64
}

/// The threshold with the highest accuracy on `pairs` (midway between neighbouring distances,
/// the lowest such on ties) and that accuracy.
pub fn best_threshold(pairs: &[ScoredPair]) -> (f32, f64) {
    if pairs.is_empty() {
        return (0.0, 0.0);
    }
    let mut sorted: Vec<&ScoredPair> = pairs.iter().collect();
    sorted.sort_by(|a, b| a.distance.total_cmp(&b.distance));
    let impostors = sorted.iter().filter(|p| !p.same).count();
    // Threshold below everything: all rejected, the impostors are right.
    let mut correct = impostors;
    let mut best = (next_down(sorted[0].distance), correct);
    let mut i = 0;
    while i < sorted.len() {
        let d = sorted[i].distance;
        while i < sorted.len() && sorted[i].distance == d {
            if sorted[i].same {
                correct += 1;
            } else {
                correct -= 1;
            }
            i += 1;
        }
        let threshold = match sorted.get(i) {
            Some(next) => d + (next.distance - d) / 2.0,
            None => d,
        };
        if correct > best.1 {
            best = (threshold, correct);
        }
    }
    (best.0, best.1 as f64 / pairs.len() as f64)
}

/// One held-out fold of the k-fold protocol.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct FoldResult {
    pub fold: usize,
    /// Chosen on the other folds.
    pub threshold: f32,
    /// Measured on this fold.
    pub accuracy: f64,
}

/// The LFW protocol: for each fold, pick the best threshold on all the other folds and
/// measure accuracy on this one.
pub fn k_fold(pairs: &[ScoredPair]) -> Vec<FoldResult> {
    let mut folds: Vec<usize> = pairs.iter().map(|p| p.fold).collect();
    folds.sort_unstable();
    folds.dedup();
    folds
        .into_iter()
        .map(|fold| {
            let train: Vec<ScoredPair> = pairs.iter().filter(|p| p.fold != fold).copied().collect();
            let test: Vec<ScoredPair> = pairs.iter().filter(|p| p.fold == fold).copied().collect();
            let (threshold, _) = best_threshold(&train);
            FoldResult {
                fold,
                threshold,
                accuracy: accuracy(&test, threshold),
            }
        })
        .collect()
}

/// Mean and (population) standard deviation.
pub fn mean_std(values: &[f64]) -> (f64, f64) {
    if values.is_empty() {
        return (0.0, 0.0);
    }
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
    (mean, var.sqrt())
}

/// The largest threshold whose false accept rate on `impostor_distances` is at most
/// `target_far`; `None` without impostors.
pub fn threshold_for_far(impostor_distances: &[f32], target_far: f64) -> Option<f32> {
    let mut sorted = impostor_distances.to_vec();
    sorted.sort_by(f32::total_cmp);
    let n = sorted.len();
    if n == 0 {
        return None;
    }
    let allowed = (target_far * n as f64).floor() as usize;
    Some(if allowed == 0 {
        next_down(sorted[0])
    } else if allowed >= n {
        sorted[n - 1]
    } else {
        let (a, b) = (sorted[allowed - 1], sorted[allowed]);
        if a == b {
            // Ties straddle the cut: stay below them so at most `allowed` are accepted.
            let below = sorted[..allowed].iter().rev().find(|&&d| d < a).copied();
            below.map_or_else(|| next_down(a), |x| x + (a - x) / 2.0)
        } else {
            a + (b - a) / 2.0
        }
    })
}

/// Fraction of `sorted_impostor_distances` (ascending) at or below `distance`.
pub fn far_at(sorted_impostor_distances: &[f32], distance: f32) -> f64 {
    if sorted_impostor_distances.is_empty() {
        return 0.0;
    }
    let accepted = sorted_impostor_distances.partition_point(|&d| d <= distance);
    accepted as f64 / sorted_impostor_distances.len() as f64
}

fn next_down(x: f32) -> f32 {
    x - x.abs().max(1.0) * f32::EPSILON
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(items: &[(f32, bool)]) -> Vec<ScoredPair> {
        items
            .iter()
            .enumerate()
            .map(|(i, &(distance, same))| ScoredPair {
                distance,
                same,
                fold: i % 2,
            })
            .collect()
    }

    #[test]
    fn perfect_separation() {
        let p = pairs(&[(0.1, true), (0.2, true), (0.8, false), (0.9, false)]);
        let curve = roc(&p);
        assert_eq!(auc(&curve), 1.0);
        assert_eq!(eer(&curve).0, 0.0);
        let (t, acc) = best_threshold(&p);
        assert_eq!(acc, 1.0);
        assert!(t > 0.2 && t < 0.8, "{t}");
        assert_eq!(tar_at_far(&curve, 0.0).unwrap().0, 1.0);
    }

    #[test]
    fn hand_computed_roc_auc_eer_and_interpolation() {
        // Genuine: 0.1, 0.4; impostor: 0.3, 0.6.
        let p = pairs(&[(0.1, true), (0.3, false), (0.4, true), (0.6, false)]);
        let curve = roc(&p);
        let pts: Vec<(f64, f64)> = curve.iter().map(|c| (c.far, c.tar)).collect();
        assert_eq!(
            pts,
            vec![(0.0, 0.0), (0.0, 0.5), (0.5, 0.5), (0.5, 1.0), (1.0, 1.0)]
        );
        assert_eq!(auc(&curve), 0.75);
        let (rate, threshold) = eer(&curve);
        assert_eq!(rate, 0.5);
        assert!((0.1..=0.3).contains(&threshold));
        // FAR 0: the best TAR without any impostor is 0.5; the flat segment keeps it at 0.25.
        assert_eq!(tar_at_far(&curve, 0.0).unwrap().0, 0.5);
        assert_eq!(tar_at_far(&curve, 0.25).unwrap().0, 0.5);
        // At FAR 0.5 the vertical segment reaches TAR 1; halfway to FAR 1 stays 1.
        assert_eq!(tar_at_far(&curve, 0.5).unwrap().0, 1.0);
        assert_eq!(tar_at_far(&curve, 0.75).unwrap().0, 1.0);
        // Impostor first: 2 genuine, 2 impostors.
        let sloped = roc(&pairs(&[
            (0.1, false),
            (0.2, true),
            (0.3, false),
            (0.4, true),
        ]));
        // Points: (0,0) (0.5,0) (0.5,0.5) (1,0.5) (1,1); FAR 0.25 sits on the flat start: 0.
        assert_eq!(tar_at_far(&sloped, 0.25).unwrap().0, 0.0);
        assert_eq!(accuracy(&p, 0.45), 0.75);
        assert_eq!(best_threshold(&p).1, 0.75);
    }

    #[test]
    fn k_fold_picks_thresholds_on_the_other_folds() {
        // Fold 0 alone would want a threshold near 0.5; fold 1 near 1.5.
        let p = vec![
            ScoredPair {
                distance: 0.4,
                same: true,
                fold: 0,
            },
            ScoredPair {
                distance: 0.6,
                same: false,
                fold: 0,
            },
            ScoredPair {
                distance: 1.4,
                same: true,
                fold: 1,
            },
            ScoredPair {
                distance: 1.6,
                same: false,
                fold: 1,
            },
        ];
        let folds = k_fold(&p);
        assert_eq!(folds.len(), 2);
        // Fold 0 is tested with fold 1's threshold (1.5): accepts both -> 50 %.
        assert_eq!(folds[0].accuracy, 0.5);
        assert!((folds[0].threshold - 1.5).abs() < 1e-6);
        // Fold 1 with fold 0's threshold (0.5): rejects both -> 50 %.
        assert_eq!(folds[1].accuracy, 0.5);
        assert_eq!(mean_std(&[0.5, 0.5]), (0.5, 0.0));
        assert_eq!(mean_std(&[1.0, 0.0]), (0.5, 0.5));
    }

    #[test]
    fn far_threshold_accepts_at_most_the_allowed_impostors() {
        let impostors: Vec<f32> = (1..=1000).map(|i| i as f32 / 1000.0).collect();
        let t = threshold_for_far(&impostors, 1e-2).unwrap();
        assert_eq!(far_at(&impostors, t), 0.01);
        let t = threshold_for_far(&impostors, 1e-4).unwrap();
        assert_eq!(far_at(&impostors, t), 0.0);
        assert!(t < 0.001);
        assert_eq!(threshold_for_far(&[], 0.1), None);
        let tied = [0.5, 0.5, 0.5, 0.9];
        let t = threshold_for_far(&tied, 0.5).unwrap();
        assert!(far_at(&tied, t) <= 0.5);
    }
}
