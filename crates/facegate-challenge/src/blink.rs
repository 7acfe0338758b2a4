//! Blinks from a series of eye openness readings (lid gap over eye width, per eye).
//!
//! Openness differs between people, cameras and head poses, so a blink is judged against the
//! same face's own recent level: the median of each eye's openness over the last
//! [`BlinkRules::baseline`] seconds of frames that were not part of a closure. A blink is a
//! short dip of both eyes together ([`BlinkRules::closed`] of the level on average, and each
//! eye below [`BlinkRules::each_closed`]) that opens again ([`BlinkRules::reopened`]) within
//! [`BlinkRules::max_closed`]. A flat picture cannot do this; a picture tipped back far enough
//! to squash the eyes also squashes the whole face, which the challenge refuses to judge (see
//! [`crate::Rules::blink_plane`]). Longer closures (looking down, squinting, sleeping) are
//! not blinks.

use std::collections::VecDeque;

use serde::Serialize;

/// How a blink is recognised. The defaults are what docs/LIVENESS.md reports.
#[derive(Clone, Debug, PartialEq)]
pub struct BlinkRules {
    /// Both eyes' mean openness must fall below this share of their level.
    pub closed: f32,
    /// And each eye below this share of its own level (a wink or a squint of one eye is not a
    /// blink).
    pub each_closed: f32,
    /// The blink ends when the mean openness is back above this share of the level.
    pub reopened: f32,
    /// The longest a blink may keep the eyes closed, in seconds.
    pub max_closed: f64,
    /// How far back the open level is taken from, in seconds.
    pub baseline: f64,
    /// Readings the level needs before a dip can be judged.
    pub min_baseline_frames: usize,
}

impl Default for BlinkRules {
    fn default() -> BlinkRules {
        BlinkRules {
            closed: 0.70,
            each_closed: 0.85,
            reopened: 0.85,
            max_closed: 0.5,
            baseline: 1.5,
            min_baseline_frames: 3,
        }
    }
}

/// One blink seen.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Blink {
    /// When the eyes were most closed.
    pub at: f64,
    /// The mean openness then, as a share of the level.
    pub depth: f32,
    /// From the first closed reading to the first open one.
    pub seconds: f64,
}

#[derive(Clone, Copy, Debug)]
struct Dip {
    start: f64,
    deepest: (f64, f32),
    /// Closed longer than a blink: wait for the eyes to open, then start over.
    too_long: bool,
}

/// Finds blinks in readings given one frame at a time.
#[derive(Clone, Debug)]
pub struct BlinkDetector {
    rules: BlinkRules,
    /// Recent open readings: time and each eye's openness.
    history: VecDeque<(f64, [f32; 2])>,
    dip: Option<Dip>,
}

impl BlinkDetector {
    pub fn new(rules: BlinkRules) -> BlinkDetector {
        BlinkDetector {
            rules,
            history: VecDeque::new(),
            dip: None,
        }
    }

    /// Forgets a closure in progress (the face turned away or was lost); the open level is
    /// kept.
    pub fn interrupt(&mut self) {
        self.dip = None;
    }

    /// The reading at `t` seconds (increasing): each eye's openness. A blink is reported on
    /// the reading where the eyes have opened again.
    pub fn push(&mut self, t: f64, eyes: [f32; 2]) -> Option<Blink> {
        if !eyes.iter().all(|e| e.is_finite() && *e > 0.0) {
            self.dip = None;
            return None;
        }
        while self
            .history
            .front()
            .is_some_and(|(old, _)| *old < t - self.rules.baseline)
        {
            self.history.pop_front();
        }
        if self.history.len() < self.rules.min_baseline_frames {
            self.history.push_back((t, eyes));
            return None;
        }
        let level = [0, 1].map(|i| median(self.history.iter().map(|(_, e)| e[i])));
        let ratio = [eyes[0] / level[0], eyes[1] / level[1]];
        let mean = (ratio[0] + ratio[1]) / 2.0;
        if let Some(dip) = &mut self.dip {
            if mean >= self.rules.reopened {
                let dip = *dip;
                self.dip = None;
                self.history.push_back((t, eyes));
                return (!dip.too_long).then_some(Blink {
                    at: dip.deepest.0,
                    depth: dip.deepest.1,
                    seconds: t - dip.start,
                });
            }
            if mean < dip.deepest.1 {
                dip.deepest = (t, mean);
            }
            if t - dip.start > self.rules.max_closed {
                dip.too_long = true;
            }
            return None;
        }
        let closed = mean < self.rules.closed && ratio.iter().all(|r| *r < self.rules.each_closed);
        if closed {
            self.dip = Some(Dip {
                start: t,
                deepest: (t, mean),
                too_long: false,
            });
        } else {
            self.history.push_back((t, eyes));
        }
        None
    }
}

fn median(values: impl Iterator<Item = f32>) -> f32 {
    let mut v: Vec<f32> = values.collect();
    v.sort_by(f32::total_cmp);
    match v.len() {
        0 => f32::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// Blinks in a whole series of `(t, [left, right])` readings (`None`: no face, or a frame
/// that cannot be judged).
pub fn blinks_in(series: &[(f64, Option<[f32; 2]>)], rules: &BlinkRules) -> Vec<Blink> {
    let mut detector = BlinkDetector::new(rules.clone());
    series
        .iter()
        .filter_map(|(t, eyes)| match eyes {
            Some(eyes) => detector.push(*t, *eyes),
            None => {
                detector.interrupt();
                None
            }
        })
        .collect()
}

/// How detected blinks match annotated ones: each annotation matches at most one detection
/// within `tolerance` seconds (nearest first).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BlinkMatch {
    pub annotated: usize,
    pub detected: usize,
    pub matched: usize,
}

impl BlinkMatch {
    pub fn of(annotated: &[f64], detected: &[f64], tolerance: f64) -> BlinkMatch {
        let mut used = vec![false; detected.len()];
        let mut matched = 0;
        for a in annotated {
            let nearest = detected
                .iter()
                .enumerate()
                .filter(|(i, d)| !used[*i] && (*d - a).abs() <= tolerance)
                .min_by(|x, y| (x.1 - a).abs().total_cmp(&(y.1 - a).abs()));
            if let Some((i, _)) = nearest {
                used[i] = true;
                matched += 1;
            }
        }
        BlinkMatch {
            annotated: annotated.len(),
            detected: detected.len(),
            matched,
        }
    }

    /// Matched detections over detections (1 when nothing was detected).
    pub fn precision(&self) -> f64 {
        if self.detected == 0 {
            1.0
        } else {
            self.matched as f64 / self.detected as f64
        }
    }

    /// Matched annotations over annotations (1 when nothing was annotated).
    pub fn recall(&self) -> f64 {
        if self.annotated == 0 {
            1.0
        } else {
            self.matched as f64 / self.annotated as f64
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Readings at `fps` for `seconds`, open at 0.25 except where `closed(t)` gives a value.
    fn series(
        fps: f64,
        seconds: f64,
        closed: impl Fn(f64) -> Option<f32>,
    ) -> Vec<(f64, Option<[f32; 2]>)> {
        (0..(fps * seconds) as usize)
            .map(|i| {
                let t = i as f64 / fps;
                let wobble = 0.01 * ((i % 3) as f32 - 1.0);
                let v = closed(t).unwrap_or(0.25 + wobble);
                (t, Some([v, v * 1.1]))
            })
            .collect()
    }

    #[test]
    fn a_short_dip_of_both_eyes_is_a_blink_and_open_eyes_are_not() {
        let rules = BlinkRules::default();
        let open = series(30.0, 4.0, |_| None);
        assert!(blinks_in(&open, &rules).is_empty());
        let blink = series(30.0, 4.0, |t| (2.0..2.15).contains(&t).then_some(0.08));
        let found = blinks_in(&blink, &rules);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!((found[0].at - 2.0).abs() < 0.05);
        assert!(found[0].depth < 0.4 && found[0].seconds < 0.3);
        // At 10 frames a second a blink is one or two readings.
        let sparse = series(10.0, 4.0, |t| (2.0..2.15).contains(&t).then_some(0.1));
        assert_eq!(blinks_in(&sparse, &rules).len(), 1);
    }

    #[test]
    fn long_closures_one_eye_and_shallow_dips_are_not_blinks() {
        let rules = BlinkRules::default();
        let long = series(30.0, 5.0, |t| (2.0..3.0).contains(&t).then_some(0.08));
        assert!(blinks_in(&long, &rules).is_empty());
        let shallow = series(30.0, 4.0, |t| (2.0..2.15).contains(&t).then_some(0.2));
        assert!(blinks_in(&shallow, &rules).is_empty());
        let wink: Vec<_> = series(30.0, 4.0, |_| None)
            .into_iter()
            .map(|(t, e)| match e {
                Some([l, r]) if (2.0..2.15).contains(&t) => (t, Some([l * 0.1, r])),
                other => (t, other),
            })
            .collect();
        assert!(blinks_in(&wink, &rules).is_empty());
        // A closure interrupted by a lost face is not finished later.
        let mut lost = series(30.0, 4.0, |t| (2.0..2.1).contains(&t).then_some(0.08));
        for (t, e) in &mut lost {
            if (2.1..2.2).contains(t) {
                *e = None;
            }
        }
        assert!(blinks_in(&lost, &rules).is_empty());
    }

    #[test]
    fn detections_match_annotations_once_each() {
        let m = BlinkMatch::of(&[1.0, 2.0, 3.0], &[1.1, 1.2, 2.9, 5.0], 0.3);
        assert_eq!((m.annotated, m.detected, m.matched), (3, 4, 2));
        assert!((m.precision() - 0.5).abs() < 1e-9);
        assert!((m.recall() - 2.0 / 3.0).abs() < 1e-9);
        let none = BlinkMatch::of(&[], &[], 0.3);
        assert_eq!((none.precision(), none.recall()), (1.0, 1.0));
    }
}
