//! Liveness by challenge: the person in front of the camera is asked for a short random
//! sequence of head movements and blinks, and the answer is judged on one tracked face.
//!
//! A flat picture (a print, a phone, a screen) moved in front of the camera cannot turn its
//! head: its nose stays on the plane of its eyes and mouth, which [`head_offset`] measures
//! after undoing any projective motion of that plane. A recording cannot follow a sequence
//! drawn after it was made, except by chance (and a movement in a direction not asked for
//! fails at once). Nor can a picture blink ([`blink`]: both eyes' lid gap dipping briefly
//! against the face's own recent level, read by the caller's eye landmark network). Identity is checked on the same tracked face at the start, between steps
//! and at the end.
//!
//! This crate is the judgement only: steps ([`Step`]), rules ([`Rules`]) and the state of one
//! answer ([`ChallengeRun`]). It sees faces (boxes, five landmarks, eye openness) with timestamps; the
//! detector, the embedding and the gallery belong to the caller (`facegate::challenge`).

pub mod blink;
mod geometry;
mod run;
mod steps;

pub use blink::{Blink, BlinkDetector, BlinkRules};
pub use geometry::{foreshortening, head_offset, nose_centering, HeadOffset};
pub use run::{ChallengeRun, Failure, FrameError, FrameVerdict, Rules, State};
pub use steps::{Step, ALL, MOVEMENTS};
