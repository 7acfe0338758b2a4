//! Liveness by challenge on frames: detection and identity for `facegate_challenge`'s judgement.
//!
//! Each frame's faces go to a [`ChallengeRun`]; whenever the tracked face looks at the camera
//! between movements, it is embedded and checked against the person (verify) or the gallery
//! (identify), and the answer goes back to the run. The run decides; this module only sees.

use facegate_challenge::{ChallengeRun, Rules, State, Step};
use facegate_face::Face;
use facegate_gallery::{Gallery, Template, TemplateIndex};
use facegate_image::RgbImage;
use facegate_video::FrameSource;
use serde::Serialize;

use crate::ops::{self, Searcher};
use crate::video::StopFlag;
use crate::{Engine, Error};

/// Who the challenged face must be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChallengeTarget {
    /// This enrolled person (1:1).
    Person(String),
    /// Whoever in the gallery it is, the same throughout (1:N).
    Anyone,
}

/// One identity check made during a challenge.
#[derive(Clone, Debug, Serialize)]
pub struct IdentityCheck {
    pub time_s: f64,
    /// Who the face is (none: not the person, or nobody enrolled).
    pub person: Option<String>,
    /// The distance to the person (verify) or to the closest person (identify).
    pub distance: Option<f32>,
    pub threshold: f32,
}

/// How a challenge on frames ended.
#[derive(Clone, Debug, Serialize)]
pub struct ChallengeOutcome {
    pub steps: Vec<Step>,
    pub passed: bool,
    /// The final state: passed (with the identity), or failed with its reason.
    pub state: State,
    /// Why it failed, in words (none when it passed).
    pub reason: Option<String>,
    pub frames: u64,
    pub frames_dropped: u64,
    pub identity_checks: Vec<IdentityCheck>,
    pub model: String,
}

/// Who a face is, given its embedding: the person, the gallery, or (for evaluations of the
/// liveness alone) the face first checked in the same challenge.
pub enum IdentityReference<'a> {
    Person {
        name: String,
        templates: Vec<Template>,
    },
    Index(std::sync::Arc<TemplateIndex>),
    Gallery(&'a dyn Gallery),
    /// A gallery that searches itself, held by a long-running caller (the server).
    SharedGallery(std::sync::Arc<dyn Gallery>),
    /// The same face as at the first check (no gallery): the first check always passes.
    FirstFace(Option<Vec<f32>>),
}

/// The name [`IdentityReference::FirstFace`] gives the face it follows.
pub const SAME_FACE: &str = "the face at the start";

impl<'a> IdentityReference<'a> {
    pub fn for_target(
        engine: &Engine,
        gallery: &'a dyn Gallery,
        target: &ChallengeTarget,
    ) -> Result<IdentityReference<'a>, Error> {
        Ok(match target {
            ChallengeTarget::Person(name) => IdentityReference::Person {
                name: gallery.person(name)?.name,
                templates: gallery.templates_of(name, engine.model_id())?,
            },
            ChallengeTarget::Anyone if gallery.searches_in_place() => {
                IdentityReference::Gallery(gallery)
            }
            ChallengeTarget::Anyone => IdentityReference::Index(std::sync::Arc::new(
                TemplateIndex::load(gallery, engine.model_id())?,
            )),
        })
    }

    /// Whom every check must name (`None`: whoever the first names).
    pub fn expected(&self) -> Option<String> {
        match self {
            IdentityReference::Person { name, .. } => Some(name.clone()),
            IdentityReference::FirstFace(_) => Some(SAME_FACE.to_string()),
            _ => None,
        }
    }

    /// Who the face with this embedding is.
    pub fn check(
        &mut self,
        engine: &Engine,
        embedding: &[f32],
        t: f64,
    ) -> Result<IdentityCheck, Error> {
        let threshold = engine.threshold();
        let one_to_one = |name: &str, distance: Option<f32>| IdentityCheck {
            time_s: t,
            person: distance
                .filter(|d| *d <= threshold.value)
                .map(|_| name.to_string()),
            distance,
            threshold: threshold.value,
        };
        Ok(match self {
            IdentityReference::Person { name, templates } => {
                let distance = ops::closest(embedding, templates, &threshold)
                    .map(|(_, d)| d.get(threshold.metric));
                one_to_one(name, distance)
            }
            IdentityReference::FirstFace(first) => match first {
                None => {
                    *first = Some(embedding.to_vec());
                    one_to_one(SAME_FACE, Some(0.0))
                }
                Some(first) => {
                    let distance =
                        crate::decide::Distances::between(first, embedding).get(threshold.metric);
                    one_to_one(SAME_FACE, Some(distance))
                }
            },
            IdentityReference::Index(index) => {
                ranked(engine, Searcher::Index(index), embedding, t)?
            }
            IdentityReference::SharedGallery(gallery) => {
                ranked(engine, Searcher::Gallery(gallery.as_ref()), embedding, t)?
            }
            IdentityReference::Gallery(gallery) => {
                ranked(engine, Searcher::Gallery(*gallery), embedding, t)?
            }
        })
    }
}

/// What a challenge sees of one frame.
#[derive(Clone, Debug, Default)]
pub struct SeenFrame {
    /// Seconds, increasing.
    pub t: f64,
    pub faces: Vec<Face>,
    /// How open each face's eyes are (`[image-left, image-right]`), in the order of `faces`;
    /// empty when the eyes are not read.
    pub eyes: Vec<Option<[f32; 2]>>,
}

/// Steps in a random challenge, everywhere one is issued: 3 drawn from the 4 movements and the
/// blink, never the same twice in a row.
pub const DEFAULT_CHALLENGE_LENGTH: usize = 3;

/// Each face's eye openness, when the engine reads eyes (empty otherwise).
pub fn read_eyes(
    engine: &Engine,
    image: &RgbImage,
    faces: &[Face],
) -> Result<Vec<Option<[f32; 2]>>, Error> {
    if !engine.sees_eyes() {
        return Ok(Vec::new());
    }
    faces
        .iter()
        .map(|face| {
            Ok(engine
                .eye_openness(image, face)?
                .map(|o| [o.image_left, o.image_right]))
        })
        .collect()
}

/// The steps a random challenge may ask of `engine`: blinks only when it reads eyes.
pub fn askable_steps(engine: &Engine) -> &'static [Step] {
    if engine.sees_eyes() {
        &facegate_challenge::ALL
    } else {
        &facegate_challenge::MOVEMENTS
    }
}

/// Refuses a blink step when `engine` does not read eyes.
pub fn check_steps(engine: &Engine, steps: &[Step]) -> Result<(), Error> {
    if steps.contains(&Step::Blink) && !engine.sees_eyes() {
        return Err(Error::ChallengeSteps {
            message: "this engine was loaded without the eye landmark network, so it cannot judge a blink; ask for left, right, up or down".into(),
        });
    }
    Ok(())
}

/// Frames for a challenge: their times and faces, and who a face of the last frame is.
pub trait ChallengeFrames {
    /// The next frame; `None` at the end.
    fn next_frame(&mut self) -> Result<Option<SeenFrame>, Error>;
    /// Who `face`, one of the last frame's faces, is.
    fn identify(&mut self, face: &Face, t: f64) -> Result<IdentityCheck, Error>;
    /// Frames a live source skipped.
    fn dropped(&self) -> u64 {
        0
    }
    /// The challenge's state changed (a step was asked, the last one done...): a source
    /// that plays a person following the prompts moves on.
    fn state_changed(&mut self, _state: &State) {}
}

/// A [`FrameSource`] analysed as it comes: detection on every frame, an embedding when asked.
pub struct LiveFrames<'a> {
    pub engine: &'a Engine,
    pub source: &'a mut dyn FrameSource,
    pub reference: IdentityReference<'a>,
    pub stop: &'a StopFlag,
    last: Option<RgbImage>,
}

impl<'a> LiveFrames<'a> {
    pub fn new(
        engine: &'a Engine,
        source: &'a mut dyn FrameSource,
        reference: IdentityReference<'a>,
        stop: &'a StopFlag,
    ) -> LiveFrames<'a> {
        LiveFrames {
            engine,
            source,
            reference,
            stop,
            last: None,
        }
    }
}

impl ChallengeFrames for LiveFrames<'_> {
    fn next_frame(&mut self) -> Result<Option<SeenFrame>, Error> {
        if self.stop.load(std::sync::atomic::Ordering::Relaxed) {
            return Ok(None);
        }
        let Some(frame) = self.source.next_frame()? else {
            return Ok(None);
        };
        let faces = self.engine.detect(&frame.image)?;
        let eyes = read_eyes(self.engine, &frame.image, &faces)?;
        self.last = Some(frame.image);
        Ok(Some(SeenFrame {
            t: frame.timestamp.as_secs_f64(),
            faces,
            eyes,
        }))
    }

    fn identify(&mut self, face: &Face, t: f64) -> Result<IdentityCheck, Error> {
        let embedding = match &self.last {
            Some(image) => self
                .engine
                .embed_at(image, std::slice::from_ref(face))?
                .pop(),
            None => None,
        };
        match embedding {
            Some(embedding) => self.reference.check(self.engine, &embedding, t),
            None => Ok(IdentityCheck {
                time_s: t,
                person: None,
                distance: None,
                threshold: self.engine.threshold().value,
            }),
        }
    }

    fn dropped(&self) -> u64 {
        self.source.dropped()
    }
}

/// Judges one challenge on `frames` (until it is decided or they end). `on_state` sees every
/// change of state, for prompts.
pub fn judge(
    frames: &mut dyn ChallengeFrames,
    steps: Vec<Step>,
    rules: Rules,
    expected: Option<String>,
    model: &str,
    on_state: &mut dyn FnMut(&State),
) -> Result<ChallengeOutcome, Error> {
    let mut run = ChallengeRun::new(steps.clone(), rules, expected);
    let mut checks = Vec::new();
    let mut count = 0;
    let mut last_state = run.state().clone();
    on_state(&last_state);
    while !run.state().is_final() {
        let Some(SeenFrame { t, faces, eyes }) = frames.next_frame()? else {
            break;
        };
        count += 1;
        let verdict = run.observe_with_eyes(t, &faces, &eyes)?;
        if verdict.needs_identity {
            if let Some(face) = &verdict.tracked {
                let check = frames.identify(face, t)?;
                run.identity(check.person.as_deref())?;
                checks.push(check);
            }
        }
        if *run.state() != last_state {
            last_state = run.state().clone();
            frames.state_changed(&last_state);
            on_state(&last_state);
        }
    }
    let state = run.finish().clone();
    if state != last_state {
        on_state(&state);
    }
    let reason = match &state {
        State::Failed(failure) => Some(failure.to_string()),
        _ => None,
    };
    Ok(ChallengeOutcome {
        steps,
        passed: matches!(state, State::Passed { .. }),
        state,
        reason,
        frames: count,
        frames_dropped: frames.dropped(),
        identity_checks: checks,
        model: model.to_string(),
    })
}

/// Judges one challenge on frames from `source` against `target` (read until the challenge
/// is decided, the source ends or `stop` is set).
#[allow(clippy::too_many_arguments)]
pub fn run_challenge(
    engine: &Engine,
    gallery: &dyn Gallery,
    source: &mut dyn FrameSource,
    steps: Vec<Step>,
    rules: Rules,
    target: &ChallengeTarget,
    stop: &StopFlag,
    on_state: &mut dyn FnMut(&State),
) -> Result<ChallengeOutcome, Error> {
    let reference = IdentityReference::for_target(engine, gallery, target)?;
    let expected = reference.expected();
    let mut frames = LiveFrames::new(engine, source, reference, stop);
    judge(
        &mut frames,
        steps,
        rules,
        expected,
        engine.model_id(),
        on_state,
    )
}

fn ranked(
    engine: &Engine,
    searcher: Searcher<'_>,
    embedding: &[f32],
    t: f64,
) -> Result<IdentityCheck, Error> {
    let (candidates, people, _) = ops::rank_people(engine, searcher, embedding, 1)?;
    let threshold = engine.identification_threshold(people);
    let best = candidates.first();
    Ok(IdentityCheck {
        time_s: t,
        person: best.filter(|c| c.is_match).map(|c| c.person.clone()),
        distance: best.map(|c| c.distance),
        threshold: threshold.value,
    })
}
