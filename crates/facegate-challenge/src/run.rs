//! One challenge being answered: timestamped frames in, a decision with its reason out.
//!
//! The rules:
//! - **One face.** The face tracked is the largest at the start; in each frame it is the face
//!   that overlaps it most. A second face half its width or more fails the challenge, and so
//!   does the tracked face jumping elsewhere or being lost for longer than
//!   [`Rules::max_face_gap`].
//! - **A frontal start.** The first tracked frame must look at the camera; it is the reference
//!   the movements are measured against ([`head_offset`]).
//! - **The steps, in order.** A movement is done when the head holds it for
//!   [`Rules::hold`]; a blink when both eyes close briefly and open again while the head makes
//!   no movement ([`crate::blink`], on the eye openness the caller reads for each face). The
//!   head must come back toward the front between steps; moving clearly in another direction
//!   fails the challenge (a recording that happens to contain the asked
//!   movement somewhere does not get to try them all). Each step has [`Rules::step_timeout`].
//! - **The same person throughout.** Identity is checked by the caller on the tracked face
//!   whenever it looks at the camera: at the start, between steps and after the last one
//!   ([`FrameVerdict::needs_identity`]). Every such check must name the same person; a turned
//!   face is not judged (recognition is weaker there).
//! - **Frames** must come in time order, densely enough ([`Rules::max_frame_gap`]).

use facegate_face::Face;
use serde::Serialize;

use crate::blink::{Blink, BlinkDetector, BlinkRules};
use crate::geometry::{foreshortening, head_offset, nose_centering, HeadOffset};
use crate::steps::Step;

/// How a challenge is judged. The defaults are what the measurements in docs/LIVENESS.md
/// were made with.
#[derive(Clone, Debug, PartialEq)]
pub struct Rules {
    /// A turn left or right counts from this nose offset along the eyes (inter-eye distances;
    /// about 15 to 20 degrees of yaw for an adult face).
    pub yaw: f32,
    /// Looking up or down counts from this offset across the eyes (about 15 degrees of pitch).
    pub pitch: f32,
    /// Between steps the head counts as back toward the front below this share of the
    /// thresholds.
    pub release: f32,
    /// How long a movement must be held, in seconds (and at least two frames).
    pub hold: f64,
    /// Time for each step, in seconds, from when the head is back at the front.
    pub step_timeout: f64,
    /// Time to show a frontal face: at the start, to come back after each step, and at the
    /// end.
    pub settle_timeout: f64,
    /// The longest the tracked face may be missing (bowing deeply hides it).
    pub max_face_gap: f64,
    /// Frames further apart than this cannot show a movement: the challenge fails.
    pub max_frame_gap: f64,
    /// How far from the eye midpoint the nose may sit (inter-eye distances) for the face to
    /// count as frontal at the start.
    pub frontal: f32,
    /// Frames whose face plane looks turned further than this from the reference are not
    /// judged ([`foreshortening`] below it, or above its inverse: about 53 degrees). A head
    /// turning as asked passes the thresholds long before; five landmarks on a picture held at
    /// a steeper angle are guesses, and a guessed nose can look turned.
    pub min_foreshortening: f32,
    /// What counts as a blink.
    pub blink: BlinkRules,
    /// Eye openness is read only while the face plane looks within this [`foreshortening`] of
    /// the reference (or its inverse: about 25 degrees). Tipping a picture back squashes its
    /// eyes by the same factor as the whole face; within this limit, by at most a tenth, far
    /// from a blink's depth.
    pub blink_plane: f32,
}

impl Default for Rules {
    fn default() -> Rules {
        Rules {
            yaw: 0.12,
            pitch: 0.15,
            release: 0.6,
            hold: 0.15,
            step_timeout: 5.0,
            settle_timeout: 5.0,
            max_face_gap: 1.0,
            max_frame_gap: 0.5,
            frontal: 0.12,
            min_foreshortening: 0.6,
            blink: BlinkRules::default(),
            blink_plane: 0.9,
        }
    }
}

/// Why a challenge failed.
#[derive(Clone, Debug, PartialEq, Serialize, thiserror::Error)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum Failure {
    #[error("a second face appeared at {at:.1} s; only the person being checked may be in view")]
    SecondFace { at: f64 },
    #[error("the face was lost for {seconds:.1} s (at {at:.1} s)")]
    FaceLost { at: f64, seconds: f64 },
    #[error("the tracked face jumped to another place in the picture at {at:.1} s")]
    FaceJumped { at: f64 },
    #[error("no frontal face to start from within {seconds:.1} s: look at the camera first")]
    NoFrontalStart { seconds: f64 },
    #[error("asked to move {asked} (step {step}), the head moved {moved} at {at:.1} s")]
    WrongMove {
        step: usize,
        asked: Step,
        moved: Step,
        at: f64,
    },
    #[error("step {step} ({asked}) was not done within {seconds:.1} s")]
    StepTimedOut {
        step: usize,
        asked: Step,
        seconds: f64,
    },
    #[error("no frontal face after the last step within {seconds:.1} s")]
    NoFrontalEnd { seconds: f64 },
    #[error("the head did not come back to the front within {seconds:.1} s after step {step}")]
    NoReturnToFront { step: usize, seconds: f64 },
    #[error("frames {gap:.2} s apart at {at:.1} s: too few frames to judge a movement (send at least {min_fps:.0} per second)")]
    TooFewFrames { at: f64, gap: f64, min_fps: f64 },
    #[error("the face at {at:.1} s is not {expected}")]
    NotThePerson { at: f64, expected: String },
    #[error("the face at {at:.1} s is {found}, not {expected} as before")]
    IdentityChanged {
        at: f64,
        expected: String,
        found: String,
    },
}

/// Frames that cannot be judged at all: a caller's error, not the answer of a face.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum FrameError {
    #[error("frame at {t:.3} s is not after the previous one at {previous:.3} s: frames must come in time order, once each")]
    OutOfOrder { t: f64, previous: f64 },
    #[error("the challenge is over ({state}); start a new one")]
    Finished { state: &'static str },
    #[error("no identity check is due: call `identity` only when a frame asks for one")]
    NoIdentityDue,
}

/// What one frame showed.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FrameVerdict {
    /// The tracked face in this frame (none: not seen).
    pub tracked: Option<Face>,
    /// Its offset from the reference, once there is one.
    pub offset: Option<HeadOffset>,
    /// Whether the caller should check who the tracked face is now (and report it with
    /// [`ChallengeRun::identity`]).
    pub needs_identity: bool,
    /// A blink that ended on this frame.
    pub blink: Option<Blink>,
    pub state: State,
}

/// Where a challenge stands.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum State {
    /// Waiting for a frontal face to start from.
    Starting,
    /// Step `step` (0-based) is asked for; `since` is when it was asked.
    Step {
        step: usize,
        asked: Step,
        since: f64,
    },
    /// Every step is done; waiting for the frontal face and its identity check.
    Ending {
        since: f64,
    },
    Passed {
        identity: String,
        /// Seconds from the first frame to the last identity check.
        seconds: f64,
        identity_checks: usize,
    },
    Failed(Failure),
}

impl State {
    fn name(&self) -> &'static str {
        match self {
            State::Starting => "starting",
            State::Step { .. } => "step",
            State::Ending { .. } => "ending",
            State::Passed { .. } => "passed",
            State::Failed(_) => "failed",
        }
    }

    pub fn is_final(&self) -> bool {
        matches!(self, State::Passed { .. } | State::Failed(_))
    }
}

/// A challenge being answered.
#[derive(Clone, Debug)]
pub struct ChallengeRun {
    steps: Vec<Step>,
    rules: Rules,
    state: State,
    /// The reference frame's tracked face.
    reference: Option<Face>,
    /// The tracked face when last seen, and when.
    last_face: Option<(Face, f64)>,
    first_t: Option<f64>,
    last_t: Option<f64>,
    /// The movement being held and since when, with its frame count.
    holding: Option<(Step, f64, usize)>,
    /// Whether the head came back toward the front since the last step.
    released: bool,
    /// The identity the checks so far agreed on.
    identity: Option<String>,
    identity_checks: usize,
    /// Whether the current frontal phase (start, between steps, end) has had its check.
    checked_this_phase: bool,
    /// A check was asked for by the last frame and not yet answered.
    identity_due: Option<f64>,
    /// What the identity must be (verify against a name); `None`: whoever it is (identify).
    expected: Option<String>,
    blinks: BlinkDetector,
}

impl ChallengeRun {
    /// A run of `steps` under `rules`. With `expected`, every identity check must name that
    /// person; without, they must all name the same one.
    pub fn new(steps: Vec<Step>, rules: Rules, expected: Option<String>) -> ChallengeRun {
        let rules_blink = rules.blink.clone();
        ChallengeRun {
            steps,
            rules,
            state: State::Starting,
            reference: None,
            last_face: None,
            first_t: None,
            last_t: None,
            holding: None,
            released: true,
            identity: None,
            identity_checks: 0,
            checked_this_phase: false,
            identity_due: None,
            expected,
            blinks: BlinkDetector::new(rules_blink),
        }
    }

    pub fn steps(&self) -> &[Step] {
        &self.steps
    }

    pub fn state(&self) -> &State {
        &self.state
    }

    pub fn rules(&self) -> &Rules {
        &self.rules
    }

    /// One frame at `t` seconds (any origin, increasing) with every face found in it, without
    /// eye readings (a blink step cannot be done).
    pub fn observe(&mut self, t: f64, faces: &[Face]) -> Result<FrameVerdict, FrameError> {
        self.observe_with_eyes(t, faces, &[])
    }

    /// One frame at `t` seconds with every face found in it and, in the same order, how open
    /// each face's eyes are (`[image-left eye, image-right eye]`; `None` or a shorter list:
    /// not read).
    pub fn observe_with_eyes(
        &mut self,
        t: f64,
        faces: &[Face],
        eyes: &[Option<[f32; 2]>],
    ) -> Result<FrameVerdict, FrameError> {
        if self.state.is_final() {
            return Err(FrameError::Finished {
                state: self.state.name(),
            });
        }
        if let Some(previous) = self.last_t {
            if t.partial_cmp(&previous) != Some(std::cmp::Ordering::Greater) {
                return Err(FrameError::OutOfOrder { t, previous });
            }
            if t - previous > self.rules.max_frame_gap {
                return Ok(self.fail(Failure::TooFewFrames {
                    at: t,
                    gap: t - previous,
                    min_fps: (1.0 / self.rules.max_frame_gap).ceil(),
                }));
            }
        }
        self.last_t = Some(t);
        let start = *self.first_t.get_or_insert(t);
        self.identity_due = None;

        let tracked = match self.track(t, faces) {
            Ok(tracked) => tracked,
            Err(failure) => return Ok(self.fail(failure)),
        };
        if let Some(failure) = self.timeout(t, start) {
            return Ok(self.fail(failure));
        }
        let Some(face) = tracked else {
            self.blinks.interrupt();
            return Ok(self.verdict(None, None, false));
        };
        let face_eyes = faces
            .iter()
            .position(|f| *f == face)
            .and_then(|i| eyes.get(i).copied().flatten());

        if self.reference.is_none() {
            let centering = nose_centering(&face);
            if centering.is_finite() && centering.abs() <= self.rules.frontal {
                self.reference = Some(face.clone());
                self.state = match self.steps.first() {
                    Some(&asked) => State::Step {
                        step: 0,
                        asked,
                        since: t,
                    },
                    // No steps: only the identity checks are left.
                    None => State::Ending { since: t },
                };
                self.checked_this_phase = false;
            } else {
                return Ok(self.verdict(Some(face), None, false));
            }
        }
        let Some(reference) = self.reference.as_ref() else {
            return Ok(self.verdict(Some(face), None, false));
        };
        let Some(offset) = head_offset(reference, &face) else {
            return Ok(self.verdict(Some(face), None, false));
        };
        let plane = foreshortening(reference, &face);
        let limit = self.rules.min_foreshortening;
        if !(plane >= limit && plane <= 1.0 / limit) {
            // Too steep to judge: neither a movement nor the front.
            self.holding = None;
            self.blinks.interrupt();
            return Ok(self.verdict(Some(face), Some(offset), false));
        }
        let moved = self.movement(offset);
        let frontal = self.is_frontal(offset);
        let level = self.rules.blink_plane;
        // Eyes are read while the head is not making a movement (a person may look a little
        // down at their screen) and the face plane is not tipped: a dip in openness then
        // comes from the lids.
        let blink = match face_eyes {
            Some(eyes) if moved.is_none() && plane >= level && plane <= 1.0 / level => {
                self.blinks.push(t, eyes)
            }
            _ => {
                self.blinks.interrupt();
                None
            }
        };
        if frontal && !self.released {
            self.released = true;
            // The next step is asked from when the head is back at the front.
            if let State::Step { since, .. } = &mut self.state {
                *since = t;
            }
        }

        if let State::Step { step, asked, .. } = self.state.clone() {
            if asked == Step::Blink && blink.is_some() && self.released {
                self.holding = None;
                self.checked_this_phase = false;
                self.state = self.after(step, t);
                let needs_identity = self.identity_check_due(frontal, t);
                let mut verdict = self.verdict(Some(face), Some(offset), needs_identity);
                verdict.blink = blink;
                return Ok(verdict);
            }
            match moved {
                Some(direction) if self.released => {
                    let (held_since, frames) = match self.holding {
                        Some((d, since, n)) if d == direction => (since, n + 1),
                        _ => (t, 1),
                    };
                    self.holding = Some((direction, held_since, frames));
                    if frames >= 2 && t - held_since >= self.rules.hold {
                        if direction != asked {
                            return Ok(self.fail(Failure::WrongMove {
                                step: step + 1,
                                asked,
                                moved: direction,
                                at: t,
                            }));
                        }
                        self.holding = None;
                        self.released = false;
                        self.checked_this_phase = false;
                        self.state = self.after(step, t);
                    }
                }
                _ => self.holding = None,
            }
        }

        let needs_identity = self.identity_check_due(frontal, t);
        let mut verdict = self.verdict(Some(face), Some(offset), needs_identity);
        verdict.blink = blink;
        Ok(verdict)
    }

    /// The state once step `step` (0-based) is done at `t`.
    fn after(&self, step: usize, t: f64) -> State {
        match self.steps.get(step + 1) {
            Some(&asked) => State::Step {
                step: step + 1,
                asked,
                since: t,
            },
            None => State::Ending { since: t },
        }
    }

    /// A frontal face between steps is when identity is checked, once per phase.
    fn identity_check_due(&mut self, frontal: bool, t: f64) -> bool {
        let due = frontal && self.released && !self.checked_this_phase;
        if due {
            self.identity_due = Some(t);
        }
        due
    }

    /// The identity check a frame asked for: who the tracked face is (`None`: nobody it could
    /// be, or not the expected person).
    pub fn identity(&mut self, person: Option<&str>) -> Result<&State, FrameError> {
        let Some(at) = self.identity_due.take() else {
            return Err(FrameError::NoIdentityDue);
        };
        let expected = self.expected.clone().or_else(|| self.identity.clone());
        match (person, expected) {
            (None, expected) => {
                let expected = expected.unwrap_or_else(|| "anyone enrolled".to_string());
                self.fail(Failure::NotThePerson { at, expected });
            }
            (Some(found), Some(expected)) if found != expected => {
                self.fail(Failure::IdentityChanged {
                    at,
                    expected,
                    found: found.to_string(),
                });
            }
            (Some(found), _) => {
                self.identity = Some(found.to_string());
                self.identity_checks += 1;
                self.checked_this_phase = true;
                if let State::Ending { .. } = self.state {
                    let seconds = at - self.first_t.unwrap_or(at);
                    self.state = State::Passed {
                        identity: found.to_string(),
                        seconds,
                        identity_checks: self.identity_checks,
                    };
                }
            }
        }
        Ok(&self.state)
    }

    /// The recording ended (or the client stopped sending): a challenge not yet passed fails
    /// as it stands.
    pub fn finish(&mut self) -> &State {
        if !self.state.is_final() {
            let failure = match self.state.clone() {
                State::Starting => Failure::NoFrontalStart {
                    seconds: self.elapsed(),
                },
                State::Step { step, since, .. } if !self.released => Failure::NoReturnToFront {
                    step,
                    seconds: self.last_t.unwrap_or(since) - since,
                },
                State::Step { step, asked, since } => Failure::StepTimedOut {
                    step: step + 1,
                    asked,
                    seconds: self.last_t.unwrap_or(since) - since,
                },
                State::Ending { since } => Failure::NoFrontalEnd {
                    seconds: self.last_t.unwrap_or(since) - since,
                },
                State::Passed { .. } | State::Failed(_) => return &self.state,
            };
            self.state = State::Failed(failure);
        }
        &self.state
    }

    fn elapsed(&self) -> f64 {
        match (self.first_t, self.last_t) {
            (Some(a), Some(b)) => b - a,
            _ => 0.0,
        }
    }

    fn fail(&mut self, failure: Failure) -> FrameVerdict {
        self.state = State::Failed(failure);
        self.identity_due = None;
        self.verdict(None, None, false)
    }

    fn verdict(
        &self,
        tracked: Option<Face>,
        offset: Option<HeadOffset>,
        needs_identity: bool,
    ) -> FrameVerdict {
        FrameVerdict {
            tracked,
            offset,
            needs_identity,
            blink: None,
            state: self.state.clone(),
        }
    }

    /// The tracked face in this frame, or why the frame breaks the rules.
    fn track(&mut self, t: f64, faces: &[Face]) -> Result<Option<Face>, Failure> {
        let tracked = match &self.last_face {
            None => faces
                .iter()
                .max_by(|a, b| a.area().total_cmp(&b.area()))
                .cloned(),
            Some((last, seen)) => {
                let best = faces
                    .iter()
                    .map(|f| (f.iou(last), f))
                    .max_by(|a, b| a.0.total_cmp(&b.0));
                match best {
                    Some((overlap, face)) if overlap >= 0.2 => Some(face.clone()),
                    Some(_) if t - seen <= self.rules.max_face_gap => {
                        // Faces elsewhere while the tracked one is away: a face that
                        // appears somewhere else is not taken for it.
                        return Err(Failure::FaceJumped { at: t });
                    }
                    _ => None,
                }
            }
        };
        if let Some(face) = &tracked {
            let width = face.width();
            let others = faces
                .iter()
                .filter(|f| *f != face && f.width() >= 0.5 * width)
                .count();
            if others > 0 {
                return Err(Failure::SecondFace { at: t });
            }
            self.last_face = Some((face.clone(), t));
        } else if let Some((_, seen)) = &self.last_face {
            if t - seen > self.rules.max_face_gap {
                return Err(Failure::FaceLost {
                    at: t,
                    seconds: t - seen,
                });
            }
        }
        Ok(tracked)
    }

    fn timeout(&self, t: f64, start: f64) -> Option<Failure> {
        match &self.state {
            State::Starting if t - start > self.rules.settle_timeout => {
                Some(Failure::NoFrontalStart { seconds: t - start })
            }
            State::Step { step, since, .. }
                if !self.released && t - since > self.rules.settle_timeout =>
            {
                Some(Failure::NoReturnToFront {
                    step: *step,
                    seconds: t - since,
                })
            }
            State::Step { step, asked, since } if t - since > self.rules.step_timeout => {
                Some(Failure::StepTimedOut {
                    step: step + 1,
                    asked: *asked,
                    seconds: t - since,
                })
            }
            State::Ending { since } if t - since > self.rules.settle_timeout => {
                Some(Failure::NoFrontalEnd { seconds: t - since })
            }
            _ => None,
        }
    }

    /// The movement an offset shows, if any: the axis that exceeds its threshold most.
    fn movement(&self, offset: HeadOffset) -> Option<Step> {
        let yaw = offset.x.abs() / self.rules.yaw;
        let pitch = offset.y.abs() / self.rules.pitch;
        if yaw.max(pitch) < 1.0 {
            return None;
        }
        Some(if yaw >= pitch {
            if offset.x < 0.0 {
                Step::Left
            } else {
                Step::Right
            }
        } else if offset.y < 0.0 {
            Step::Up
        } else {
            Step::Down
        })
    }

    fn is_frontal(&self, offset: HeadOffset) -> bool {
        offset.x.abs() < self.rules.release * self.rules.yaw
            && offset.y.abs() < self.rules.release * self.rules.pitch
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A face at `x0` whose nose is pushed `dx`, `dy` inter-eye distances off the face plane.
    fn face(x0: f32, dx: f32, dy: f32) -> Face {
        let iod = 60.0;
        Face {
            bbox: [x0, 50.0, x0 + 120.0, 200.0],
            score: 0.99,
            landmarks: [
                [x0 + 30.0, 90.0],
                [x0 + 90.0, 90.0],
                [x0 + 60.0 + dx * iod, 125.0 + dy * iod],
                [x0 + 38.0, 150.0],
                [x0 + 82.0, 150.0],
            ],
        }
    }

    /// Frames at 10 per second: `(seconds, dx, dy)` segments held in turn.
    fn frames(segments: &[(f64, f32, f32)]) -> Vec<(f64, Face)> {
        let mut out = Vec::new();
        let mut t = 0.0;
        for &(seconds, dx, dy) in segments {
            let end = t + seconds;
            while t < end - 1e-9 {
                out.push((t, face(100.0, dx, dy)));
                t += 0.1;
            }
        }
        out
    }

    /// Runs frames, answering identity checks with `who`; the final state.
    fn run(
        steps: &[Step],
        frames: &[(f64, Face)],
        who: impl Fn(f64) -> Option<&'static str>,
    ) -> State {
        let mut run = ChallengeRun::new(steps.to_vec(), Rules::default(), Some("ann".into()));
        for (t, f) in frames {
            let verdict = run.observe(*t, std::slice::from_ref(f)).unwrap();
            if verdict.needs_identity {
                run.identity(who(*t)).unwrap();
            }
            if run.state().is_final() {
                break;
            }
        }
        run.finish().clone()
    }

    const ANN: fn(f64) -> Option<&'static str> = |_| Some("ann");

    /// Runs frames with eye readings (`eyes(t)`), answering identity checks with "ann".
    fn run_with_eyes(
        steps: &[Step],
        frames: &[(f64, Face)],
        eyes: impl Fn(f64) -> Option<[f32; 2]>,
    ) -> (State, Vec<Blink>) {
        let mut run = ChallengeRun::new(steps.to_vec(), Rules::default(), Some("ann".into()));
        let mut blinks = Vec::new();
        for (t, f) in frames {
            let verdict = run
                .observe_with_eyes(*t, std::slice::from_ref(f), &[eyes(*t)])
                .unwrap();
            blinks.extend(verdict.blink);
            if verdict.needs_identity {
                run.identity(Some("ann")).unwrap();
            }
            if run.state().is_final() {
                break;
            }
        }
        (run.finish().clone(), blinks)
    }

    #[test]
    fn a_blink_asked_for_passes_and_open_eyes_or_no_readings_do_not() {
        // Front 1.5 s, right 1 s, front 2.5 s (the blink at 2.9 s), front 1 s.
        let f = frames(&[
            (1.5, 0.0, 0.0),
            (1.0, 0.3, 0.0),
            (2.5, 0.0, 0.0),
            (1.0, 0.0, 0.0),
        ]);
        let blinking = |t: f64| {
            Some(if (2.85..2.95).contains(&t) {
                [0.08, 0.09]
            } else {
                [0.25, 0.27]
            })
        };
        let (state, blinks) = run_with_eyes(&[Step::Right, Step::Blink], &f, blinking);
        assert!(matches!(state, State::Passed { .. }), "{state:?}");
        assert_eq!(blinks.len(), 1);
        let open = |_: f64| Some([0.25, 0.27]);
        let (state, _) = run_with_eyes(&[Step::Right, Step::Blink], &f, open);
        assert!(
            matches!(
                state,
                State::Failed(Failure::StepTimedOut {
                    asked: Step::Blink,
                    ..
                })
            ),
            "{state:?}"
        );
        let (state, _) = run_with_eyes(&[Step::Right, Step::Blink], &f, |_| None);
        assert!(matches!(state, State::Failed(_)), "{state:?}");
        // A blink while a movement is asked for does nothing; a movement while a blink is
        // asked for fails.
        let (state, _) = run_with_eyes(&[Step::Blink, Step::Right], &f, blinking);
        assert!(
            matches!(
                state,
                State::Failed(Failure::WrongMove {
                    asked: Step::Blink,
                    moved: Step::Right,
                    ..
                })
            ),
            "{state:?}"
        );
    }

    #[test]
    fn eyes_squashed_by_a_tipped_face_plane_are_not_read_as_a_blink() {
        // A picture tipped back about 37 degrees at 2.9 s: the face's height shrinks to 0.8,
        // still judged as a face, but past the plane limit for reading eyes.
        let mut f = frames(&[(2.0, 0.0, 0.0), (3.0, 0.0, 0.0)]);
        for (t, face) in &mut f {
            if (2.85..2.95).contains(t) {
                for p in &mut face.landmarks {
                    p[1] = 90.0 + (p[1] - 90.0) * 0.8;
                }
            }
        }
        let squashed = |t: f64| {
            Some(if (2.85..2.95).contains(&t) {
                [0.08, 0.09]
            } else {
                [0.25, 0.27]
            })
        };
        let (state, blinks) = run_with_eyes(&[Step::Blink], &f, squashed);
        assert!(blinks.is_empty(), "{blinks:?}");
        assert!(matches!(state, State::Failed(_)), "{state:?}");
    }

    #[test]
    fn the_asked_movements_in_order_pass_with_identity_checked_between() {
        let answer = frames(&[
            (0.5, 0.0, 0.0),
            (0.6, -0.25, 0.0),
            (0.4, 0.0, 0.0),
            (0.6, 0.0, -0.3),
            (0.4, 0.0, 0.0),
            (0.6, 0.3, 0.05),
            (0.5, 0.0, 0.0),
        ]);
        match run(&[Step::Left, Step::Up, Step::Right], &answer, ANN) {
            State::Passed {
                identity,
                identity_checks,
                seconds,
            } => {
                assert_eq!(identity, "ann");
                assert_eq!(identity_checks, 4, "start, two between, end");
                assert!(seconds > 3.0 && seconds < 4.0, "{seconds}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_movement_not_asked_for_fails_at_once() {
        let answer = frames(&[(0.5, 0.0, 0.0), (0.6, 0.25, 0.0), (3.0, 0.0, 0.0)]);
        match run(&[Step::Left, Step::Right], &answer, ANN) {
            State::Failed(Failure::WrongMove {
                asked: Step::Left,
                moved: Step::Right,
                step: 1,
                ..
            }) => {}
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_flat_picture_moved_in_every_way_never_moves_its_head() {
        // Tilted, turned, zoomed and shaken: every frame a projective copy of the frontal face.
        let flat = face(100.0, 0.0, 0.0);
        let mut frames = Vec::new();
        for i in 0..120 {
            let t = f64::from(i) * 0.1;
            let a = (t * 1.3).sin() * 0.0012;
            let b = (t * 0.7).cos() * 0.0010;
            let s = 1.0 + 0.3 * (t * 0.5).sin();
            let r = 0.3 * (t * 0.9).sin();
            let h = [
                [s * r.cos(), -s * r.sin(), 20.0 * (t * 2.1).sin()],
                [s * r.sin(), s * r.cos(), 15.0 * (t * 1.7).cos()],
                [a, b, 1.0],
            ];
            let mut moved = flat.clone();
            moved.landmarks = flat.landmarks.map(|[x, y]| {
                let (x, y) = (f64::from(x), f64::from(y));
                let w = h[2][0] * x + h[2][1] * y + h[2][2];
                [
                    ((h[0][0] * x + h[0][1] * y + h[0][2]) / w) as f32,
                    ((h[1][0] * x + h[1][1] * y + h[1][2]) / w) as f32,
                ]
            });
            frames.push((t, moved));
        }
        match run(&[Step::Left, Step::Right, Step::Up], &frames, ANN) {
            State::Failed(Failure::StepTimedOut { step: 1, .. }) => {}
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn another_person_or_a_changed_one_fails() {
        let answer = frames(&[(0.5, 0.0, 0.0), (0.6, -0.25, 0.0), (0.5, 0.0, 0.0)]);
        match run(&[Step::Left], &answer, |_| None) {
            State::Failed(Failure::NotThePerson { .. }) => {}
            other => panic!("{other:?}"),
        }
        let swapped = |t: f64| if t < 1.0 { Some("ann") } else { Some("bob") };
        match run(&[Step::Left], &answer, swapped) {
            State::Failed(Failure::IdentityChanged { found, .. }) => assert_eq!(found, "bob"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn frames_must_be_dense_ordered_and_show_one_face() {
        let mut r = ChallengeRun::new(vec![Step::Left], Rules::default(), None);
        r.observe(1.0, &[face(100.0, 0.0, 0.0)]).unwrap();
        assert!(matches!(
            r.observe(1.0, &[face(100.0, 0.0, 0.0)]),
            Err(FrameError::OutOfOrder { .. })
        ));
        assert!(matches!(
            r.observe(0.5, &[]),
            Err(FrameError::OutOfOrder { .. })
        ));
        let verdict = r.observe(2.0, &[face(100.0, 0.0, 0.0)]).unwrap();
        assert!(matches!(
            verdict.state,
            State::Failed(Failure::TooFewFrames { .. })
        ));
        assert!(matches!(
            r.observe(2.1, &[]),
            Err(FrameError::Finished { .. })
        ));

        let mut r = ChallengeRun::new(vec![Step::Left], Rules::default(), None);
        r.observe(0.0, &[face(100.0, 0.0, 0.0)]).unwrap();
        let verdict = r
            .observe(0.1, &[face(100.0, 0.0, 0.0), face(400.0, 0.0, 0.0)])
            .unwrap();
        assert!(matches!(
            verdict.state,
            State::Failed(Failure::SecondFace { .. })
        ));

        let mut r = ChallengeRun::new(vec![Step::Left], Rules::default(), None);
        r.observe(0.0, &[face(100.0, 0.0, 0.0)]).unwrap();
        let verdict = r.observe(0.1, &[face(500.0, 0.0, 0.0)]).unwrap();
        assert!(matches!(
            verdict.state,
            State::Failed(Failure::FaceJumped { .. })
        ));

        let mut r = ChallengeRun::new(vec![Step::Left], Rules::default(), None);
        r.observe(0.0, &[face(100.0, 0.0, 0.0)]).unwrap();
        let mut t = 0.0;
        let mut last = State::Starting;
        while t < 1.5 && !last.is_final() {
            t += 0.1;
            last = r.observe(t, &[]).unwrap().state;
        }
        assert!(
            matches!(last, State::Failed(Failure::FaceLost { .. })),
            "{last:?}"
        );
        assert!(matches!(
            r.identity(Some("x")),
            Err(FrameError::NoIdentityDue)
        ));
    }

    #[test]
    fn a_face_plane_turned_too_far_to_judge_is_not_counted_as_a_movement() {
        // A picture held so steeply that the eyes look half as far apart, with the nose
        // guessed off the plane by a landmark detector: not a turn.
        let mut steep = face(100.0, -0.3, 0.0);
        for i in [0, 1, 3, 4] {
            steep.landmarks[i][0] = 160.0 + (steep.landmarks[i][0] - 160.0) * 0.5;
        }
        steep.landmarks[2][0] = 160.0 + (steep.landmarks[2][0] - 160.0) * 0.5;
        let mut frames = frames(&[(0.5, 0.0, 0.0)]);
        for i in 0..30 {
            frames.push((0.5 + f64::from(i) * 0.1, steep.clone()));
        }
        match run(&[Step::Left], &frames, ANN) {
            State::Failed(Failure::StepTimedOut { .. }) => {}
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_challenge_without_steps_checks_identity_only() {
        let answer = frames(&[(0.5, 0.0, 0.0)]);
        assert!(matches!(
            run(&[], &answer, ANN),
            State::Passed {
                identity_checks: 1,
                ..
            }
        ));
    }

    #[test]
    fn a_turned_start_or_a_missing_end_fails_with_its_reason() {
        let turned = frames(&[(4.0, 0.3, 0.0)]);
        assert!(matches!(
            run(&[Step::Left], &turned, ANN),
            State::Failed(Failure::NoFrontalStart { .. })
        ));
        let unfinished = frames(&[(0.5, 0.0, 0.0), (0.6, -0.25, 0.0)]);
        assert!(matches!(
            run(&[Step::Left], &unfinished, ANN),
            State::Failed(Failure::NoFrontalEnd { .. })
        ));
    }
}
