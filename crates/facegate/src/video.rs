//! Enroll, verify and identify from video: files, network streams and cameras (any
//! [`FrameSource`]).
//!
//! * Enrollment keeps the best few frames: exactly one face, large, sharp, frontal, well
//!   exposed, and from different moments (not consecutive near-duplicates).
//! * Verification decides on several frames: a match when K of a face's last N frames match.
//!   Faces are tracked across frames, so two people's frames are never pooled.
//! * Identification emits one event when a person appears and one when they leave.
//! * [`FaceFollower`] detects on a stream where the faces are: the whole frame now and then,
//!   and between, only a region around each face of the previous frame.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use facegate_gallery::{Gallery, NewTemplate};
use facegate_video::quality::{FaceQuality, FrameQualityRules};
use facegate_video::track::{Track, Tracker};
use facegate_video::{Frame, FrameSource};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::ops::{self, Searcher};
use crate::quality::QualityReport;
use crate::{Engine, Error, Face};

/// Why a frame was or was not used for enrollment.
#[derive(Clone, Debug, Serialize)]
pub struct FrameChoice {
    pub frame: u64,
    pub time_s: f64,
    pub used: bool,
    pub reason: String,
    pub quality: Option<FaceQuality>,
}

/// A template taken from a video frame.
#[derive(Clone, Debug)]
pub struct FrameTemplate {
    pub frame: u64,
    pub time_s: f64,
    pub face: Face,
    pub quality: FaceQuality,
    pub template: NewTemplate,
}

#[derive(Clone, Debug)]
pub struct EnrollSelection {
    pub chosen: Vec<FrameTemplate>,
    /// Every frame looked at, in order, with its verdict.
    pub frames: Vec<FrameChoice>,
    pub dropped: u64,
}

/// How enrollment frames are picked.
#[derive(Clone, Debug)]
pub struct EnrollFromVideo {
    /// Templates to keep.
    pub count: usize,
    /// Chosen frames are at least this far apart in time.
    pub min_gap: Duration,
    /// ... and their embeddings at least this far apart (Euclidean, unit vectors).
    pub min_distance: f32,
    /// Stop after this many frames (a camera never ends by itself).
    pub max_frames: u64,
    pub rules: FrameQualityRules,
}

impl Default for EnrollFromVideo {
    fn default() -> Self {
        EnrollFromVideo {
            count: 3,
            min_gap: Duration::from_millis(500),
            min_distance: 0.15,
            max_frames: 300,
            rules: FrameQualityRules::default(),
        }
    }
}

/// A stop flag shared with a Ctrl-C handler: every loop here checks it between frames.
pub type StopFlag = std::sync::Arc<AtomicBool>;

fn stopped(stop: &StopFlag) -> bool {
    stop.load(Ordering::Relaxed)
}

/// The frame's own identity for duplicate detection: SHA-256 of its pixels.
fn frame_sha256(frame: &Frame) -> String {
    let digest = Sha256::digest(frame.image.as_raw());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Reads frames and picks the best `count` for enrollment. Nothing is stored.
pub fn select_enrollment_frames(
    engine: &Engine,
    source: &mut dyn FrameSource,
    settings: &EnrollFromVideo,
    stop: &StopFlag,
) -> Result<EnrollSelection, Error> {
    let mut frames = Vec::new();
    let mut candidates: Vec<FrameTemplate> = Vec::new();
    let name = source.describe();
    while let Some(frame) = source.next_frame()? {
        let time_s = frame.timestamp.as_secs_f64();
        let verdict = |used, reason: String, quality| FrameChoice {
            frame: frame.index,
            time_s,
            used,
            reason,
            quality,
        };
        let faces = engine.detect(&frame.image)?;
        match faces.len() {
            0 => frames.push(verdict(false, "no face".into(), None)),
            1 => {
                let face = &faces[0];
                let quality = FaceQuality::measure(&frame.image, face);
                let report = QualityReport::measure(&frame.image, face, 1);
                let gate = engine
                    .options()
                    .enroll_quality
                    .rules()
                    .map(|rules| report.failures(&rules))
                    .unwrap_or_default();
                let rejection = quality
                    .rejection(&settings.rules)
                    .or_else(|| (!gate.is_empty()).then(|| gate.join("; ")));
                match rejection {
                    Some(reason) => frames.push(verdict(false, reason, Some(quality))),
                    None => {
                        let embedding = engine
                            .embed_at(&frame.image, std::slice::from_ref(face))?
                            .remove(0);
                        candidates.push(FrameTemplate {
                            frame: frame.index,
                            time_s,
                            face: face.clone(),
                            quality,
                            template: NewTemplate {
                                embedding,
                                image_sha256: frame_sha256(&frame),
                                bbox: face.bbox,
                                detector_score: face.score,
                                source: format!("{name}@{time_s:.2}s"),
                                quality: serde_json::to_value(&report).ok(),
                            },
                        });
                        frames.push(verdict(false, "candidate".into(), Some(quality)));
                    }
                }
            }
            n => frames.push(verdict(
                false,
                format!("{n} faces (enrollment needs exactly one)"),
                None,
            )),
        }
        if frame.index + 1 >= settings.max_frames || stopped(stop) {
            break;
        }
    }
    // Best first; then keep those far enough (in time and in appearance) from the kept ones.
    candidates.sort_by(|a, b| b.quality.score().total_cmp(&a.quality.score()));
    let mut chosen: Vec<FrameTemplate> = Vec::new();
    let mut why_not: BTreeMap<u64, String> = BTreeMap::new();
    for c in candidates {
        if chosen.len() == settings.count {
            why_not.insert(
                c.frame,
                format!("{} better frames were kept", settings.count),
            );
            continue;
        }
        let near = chosen.iter().find(|k| {
            (k.time_s - c.time_s).abs() < settings.min_gap.as_secs_f64()
                || facegate_decide::euclidean(&k.template.embedding, &c.template.embedding)
                    < settings.min_distance
        });
        match near {
            Some(k) => {
                why_not.insert(
                    c.frame,
                    format!("too close to the better frame {} (same moment)", k.frame),
                );
            }
            None => chosen.push(c),
        }
    }
    for f in &mut frames {
        if chosen.iter().any(|c| c.frame == f.frame) {
            f.used = true;
            f.reason = "used".into();
        } else if let Some(reason) = why_not.remove(&f.frame) {
            f.reason = reason;
        }
    }
    chosen.sort_by_key(|c| c.frame);
    Ok(EnrollSelection {
        chosen,
        frames,
        dropped: source.dropped(),
    })
}

/// K-of-N verification settings.
#[derive(Clone, Copy, Debug)]
pub struct VerifyFromVideo {
    /// Matching frames needed ...
    pub k: usize,
    /// ... among a face's last N frames.
    pub n: usize,
    /// Give up (no match) after this much video time.
    pub timeout: Duration,
}

impl Default for VerifyFromVideo {
    fn default() -> Self {
        VerifyFromVideo {
            k: 3,
            n: 5,
            timeout: Duration::from_secs(10),
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct FrameDecision {
    pub frame: u64,
    pub time_s: f64,
    pub track: u64,
    pub distance: f32,
    pub is_match: bool,
    /// The frame's liveness score, when the engine checks liveness; a frame then counts
    /// towards K only if it is both a match and live.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub liveness: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub live: Option<bool>,
}

#[derive(Clone, Debug, Serialize)]
pub struct VideoVerifyOutcome {
    pub person: String,
    pub is_match: bool,
    /// The track (one person's face over time) that decided, when one did.
    pub track: Option<u64>,
    /// Its matching frames among its last N when the decision was taken.
    pub matching_frames: usize,
    pub k: usize,
    pub n: usize,
    pub frames_read: u64,
    pub frames_with_faces: u64,
    pub dropped: u64,
    /// Why it ended: "matched", "timeout", "end of video", "stopped".
    pub ended_by: String,
    pub decisions: Vec<FrameDecision>,
}

/// Is `person` in the video? Every face is compared with the person's templates; each tracked
/// face keeps its last N results, and the first to reach K matches decides "match".
pub fn verify_video(
    engine: &Engine,
    gallery: &dyn Gallery,
    person: &str,
    source: &mut dyn FrameSource,
    settings: &VerifyFromVideo,
    stop: &StopFlag,
) -> Result<VideoVerifyOutcome, Error> {
    let templates = gallery.templates_of(person, engine.model_id())?;
    let threshold = engine.threshold();
    let (k, n) = (settings.k.max(1), settings.n.max(settings.k).max(1));
    let mut tracker = Tracker::new(0.3, 2);
    let mut windows: BTreeMap<u64, VecDeque<bool>> = BTreeMap::new();
    let mut outcome = VideoVerifyOutcome {
        person: person.to_string(),
        is_match: false,
        track: None,
        matching_frames: 0,
        k,
        n,
        frames_read: 0,
        frames_with_faces: 0,
        dropped: 0,
        ended_by: "end of video".into(),
        decisions: Vec::new(),
    };
    loop {
        if stopped(stop) {
            outcome.ended_by = "stopped".into();
            break;
        }
        let Some(frame) = source.next_frame()? else {
            break;
        };
        outcome.frames_read += 1;
        if frame.timestamp > settings.timeout {
            outcome.ended_by = "timeout".into();
            break;
        }
        let faces = engine.detect(&frame.image)?;
        let update = tracker.update(frame.index, &faces);
        for ended in update.ended {
            windows.remove(&ended.id);
        }
        if faces.is_empty() {
            continue;
        }
        outcome.frames_with_faces += 1;
        let embeddings = engine.embed_at(&frame.image, &faces)?;
        for ((embedding, track), face) in embeddings.iter().zip(&update.assigned).zip(&faces) {
            let Some((_, distances)) = ops::closest(embedding, &templates, &threshold) else {
                continue;
            };
            let is_match = threshold.is_match(&distances);
            let liveness = engine.liveness(&frame.image, face)?;
            let accepted = is_match && liveness.as_ref().is_none_or(|l| l.live);
            outcome.decisions.push(FrameDecision {
                frame: frame.index,
                time_s: frame.timestamp.as_secs_f64(),
                track: *track,
                distance: distances.get(threshold.metric),
                is_match,
                liveness: liveness.as_ref().map(|l| l.score),
                live: liveness.as_ref().map(|l| l.live),
            });
            let window = windows.entry(*track).or_default();
            window.push_back(accepted);
            if window.len() > n {
                window.pop_front();
            }
            let matching = window.iter().filter(|m| **m).count();
            if matching >= k {
                outcome.is_match = true;
                outcome.track = Some(*track);
                outcome.matching_frames = matching;
                outcome.ended_by = "matched".into();
            }
        }
        if outcome.is_match {
            break;
        }
    }
    if !outcome.is_match {
        // Report the closest any face came.
        if let Some((track, matching)) = windows
            .iter()
            .map(|(t, w)| (*t, w.iter().filter(|m| **m).count()))
            .max_by_key(|(_, m)| *m)
        {
            outcome.track = Some(track);
            outcome.matching_frames = matching;
        }
    }
    outcome.dropped = source.dropped();
    Ok(outcome)
}

/// One line of `identify --video` output.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "lowercase")]
pub enum PresenceEvent {
    /// A face became stable (seen in `confirm` frames): who it is, or `null` for unknown.
    Enter {
        track: u64,
        person: Option<String>,
        distance: Option<f32>,
        frame: u64,
        time_s: f64,
    },
    /// The face has not been seen for a while (or the video ended).
    Leave {
        track: u64,
        person: Option<String>,
        frames: u64,
        first_s: f64,
        last_s: f64,
    },
    /// The end of the input.
    End {
        frames: u64,
        dropped: u64,
        reason: String,
        /// Frames searched whole for faces (the others only around faces already followed).
        searched_whole: u64,
    },
}

/// Identification on a stream settings.
#[derive(Clone, Copy, Debug)]
pub struct IdentifyFromVideo {
    /// Frames a face must be seen in before its `enter` event.
    pub confirm: u64,
    /// Frames a face may be missing before its `leave` event.
    pub max_missed: u64,
    /// Stop after this much video time (`None`: until the input ends).
    pub duration: Option<Duration>,
    /// Detect on the whole frame every this many frames, and between, only around the faces
    /// already followed ([`FaceFollower`]); 1: the whole frame every time.
    pub detect_every: u64,
    /// Embed a followed face on its first `confirm` frames (its decision); after that, 1:
    /// every frame; N > 1: again only when it is seen clearly better than at its best
    /// embedding so far (larger, sharper, more frontal), at most every N frames.
    pub embed_every: u64,
    /// Whole-frame searches look for faces at least this many pixels wide (fewer detector
    /// scales); `None`: the engine's minimum face size. Faces already followed are searched
    /// for at their own size.
    pub min_face_size: Option<u32>,
}

impl Default for IdentifyFromVideo {
    fn default() -> Self {
        IdentifyFromVideo {
            confirm: 2,
            max_missed: 3,
            duration: None,
            detect_every: 1,
            embed_every: 1,
            min_face_size: None,
        }
    }
}

impl IdentifyFromVideo {
    /// The whole frame searched at least every 0.2 s (a face entering is found within that),
    /// and a followed face embedded again at most every 0.4 s, at `fps` frames analysed per
    /// second; at 5 frames/s and below, every frame.
    pub fn following(fps: f64) -> IdentifyFromVideo {
        let frames = |seconds: f64| ((seconds * fps).round() as u64).clamp(1, 1000);
        IdentifyFromVideo {
            detect_every: frames(FIND_NEW_FACES_WITHIN_S),
            embed_every: frames(2.0 * FIND_NEW_FACES_WITHIN_S),
            ..IdentifyFromVideo::default()
        }
    }
}

/// The longest a face entering the picture may go unseen by [`IdentifyFromVideo::following`]:
/// short against the 300 ms from entering to a decision that a door camera needs.
const FIND_NEW_FACES_WITHIN_S: f64 = 0.2;

/// Detection on a stream that spends its work where the faces are. The whole frame is
/// searched every `full_every` frames; between, each face of the previous frame is searched
/// for only in a square twice its size around where it was, down to half its width (a few
/// detector scales instead of the whole pyramid). The whole frame is searched again at once
/// when a face is not found in its region, after a frame without faces, and after a cut to
/// another scene. New faces are therefore found within `full_every` frames, and a face lost
/// for a frame is looked for everywhere in the next.
#[derive(Clone, Debug)]
pub struct FaceFollower {
    full_every: u64,
    /// The smallest face whole-frame searches look for (0: the engine's minimum).
    min_face_size: u32,
    since_full: u64,
    previous: Vec<Face>,
    /// A face of the frame before was not found again around where it was.
    lost: bool,
    /// The previous frame's grey levels on a coarse grid: a cut to another scene is searched
    /// whole at once.
    glance: Vec<u8>,
    /// Frames seen, and of them searched whole.
    pub frames: u64,
    pub full_frames: u64,
}

impl FaceFollower {
    pub fn new(full_every: u64) -> FaceFollower {
        FaceFollower {
            full_every: full_every.max(1),
            min_face_size: 0,
            since_full: 0,
            previous: Vec::new(),
            lost: false,
            glance: Vec::new(),
            frames: 0,
            full_frames: 0,
        }
    }

    /// Whole-frame searches look for faces at least `pixels` wide (never below the engine's
    /// minimum).
    pub fn with_min_face_size(mut self, pixels: u32) -> FaceFollower {
        self.min_face_size = pixels;
        self
    }

    /// The faces of the next frame of the stream.
    pub fn detect(
        &mut self,
        engine: &Engine,
        image: &facegate_image::RgbImage,
    ) -> Result<Vec<Face>, Error> {
        self.frames += 1;
        let glance = glance(image);
        let cut = scene_changed(&self.glance, &glance);
        self.glance = glance;
        if self.full_every == 1
            || cut
            || self.lost
            || self.previous.is_empty()
            || self.since_full + 1 >= self.full_every
        {
            return self.whole(engine, image);
        }
        let mut found: Vec<Face> = Vec::with_capacity(self.previous.len());
        for face in &self.previous {
            // Two regions can find the same face when two faces were close. A face not found
            // again (turned away, hidden, gone) is left to the tracker, which keeps it for a
            // few frames, while the next frame is searched whole.
            if let Some(again) = search_around(engine, image, face)? {
                if found.iter().all(|f| f.iou(&again) < 0.5) {
                    found.push(again);
                }
            }
        }
        if found.is_empty() {
            return self.whole(engine, image);
        }
        // A face lost from its region (it moved fast, turned, was hidden for a moment) is
        // looked for in the whole next frame, before its track ends: measured on the shared
        // clips, a wider search around it instead missed people (docs/PERFORMANCE.md, "Video").
        self.lost = found.len() < self.previous.len();
        self.since_full += 1;
        self.previous = found.clone();
        Ok(found)
    }

    fn whole(
        &mut self,
        engine: &Engine,
        image: &facegate_image::RgbImage,
    ) -> Result<Vec<Face>, Error> {
        self.full_frames += 1;
        self.since_full = 0;
        self.lost = false;
        let faces = engine.detect_down_to(image, self.min_face_size)?;
        self.previous = faces.clone();
        Ok(faces)
    }
}

/// Grey levels of a 32 x 18 grid of the frame's pixels.
fn glance(image: &facegate_image::RgbImage) -> Vec<u8> {
    let (w, h) = image.dimensions();
    let mut out = Vec::with_capacity(32 * 18);
    for j in 0..18u32 {
        for i in 0..32u32 {
            let x = ((2 * i + 1) * w / 64).min(w.saturating_sub(1));
            let y = ((2 * j + 1) * h / 36).min(h.saturating_sub(1));
            let [r, g, b] = image.get_pixel(x, y).0;
            out.push(((u16::from(r) * 2 + u16::from(g) * 5 + u16::from(b)) / 8) as u8);
        }
    }
    out
}

/// A cut: the grid's grey levels moved by more than a seventh of their range on average
/// (people moving, or a camera panning, move far fewer of them by that much).
fn scene_changed(before: &[u8], now: &[u8]) -> bool {
    if before.len() != now.len() || before.is_empty() {
        return false;
    }
    let total: u32 = before
        .iter()
        .zip(now)
        .map(|(a, b)| u32::from(a.abs_diff(*b)))
        .sum();
    total > 36 * before.len() as u32
}

/// `face` found again in a square twice its size around where it was: the face there that
/// overlaps it most (at least 0.3), in the frame's coordinates.
fn search_around(
    engine: &Engine,
    image: &facegate_image::RgbImage,
    face: &Face,
) -> Result<Option<Face>, Error> {
    let (w, h) = (image.width() as f32, image.height() as f32);
    let side = 2.0 * face.width().max(face.height());
    let cx = (face.bbox[0] + face.bbox[2]) / 2.0;
    let cy = (face.bbox[1] + face.bbox[3]) / 2.0;
    let x0 = (cx - side / 2.0).clamp(0.0, w - 1.0).floor();
    let y0 = (cy - side / 2.0).clamp(0.0, h - 1.0).floor();
    let x1 = (cx + side / 2.0).clamp(x0 + 1.0, w).ceil();
    let y1 = (cy + side / 2.0).clamp(y0 + 1.0, h).ceil();
    let region = facegate_image::image_crop(
        image,
        x0 as u32,
        y0 as u32,
        (x1 - x0) as u32,
        (y1 - y0) as u32,
    );
    let min = (0.5 * face.width()).max(1.0) as u32;
    let faces = engine.detect_down_to(&region, min)?;
    let in_frame = faces.into_iter().map(|f| Face {
        bbox: [
            f.bbox[0] + x0,
            f.bbox[1] + y0,
            f.bbox[2] + x0,
            f.bbox[3] + y0,
        ],
        score: f.score,
        landmarks: f.landmarks.map(|[x, y]| [x + x0, y + y0]),
    });
    let best = in_frame
        .map(|f| (f.iou(face), f))
        .filter(|(overlap, _)| *overlap >= 0.3)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, f)| f);
    Ok(best)
}

/// How much better, in [`FaceQuality::score`] units, a followed face must be seen before it
/// is embedded again: about a tenth larger or sharper, or a twentieth more frontal.
const SEEN_BETTER: f32 = 0.1;

/// A face followed through a video, with the embedding of the frame it was seen best in.
#[derive(Clone, Debug)]
pub struct FollowedFace {
    pub track: u64,
    /// Frames it was found in.
    pub frames: u64,
    pub first_s: f64,
    /// Its best frame: when, the face there, how good it was, its embedding and the frame's
    /// SHA-256.
    pub best_s: f64,
    pub face: Face,
    pub quality: FaceQuality,
    pub embedding: Vec<f32>,
    pub image_sha256: String,
}

/// Every face in the video, followed from start to end (the whole frame searched every
/// frame), each with the embedding of its best-quality frame: who is in a clip, to enroll
/// them from it.
pub fn faces_in_video(
    engine: &Engine,
    source: &mut dyn FrameSource,
    stop: &StopFlag,
) -> Result<Vec<FollowedFace>, Error> {
    let mut tracker = Tracker::new(0.3, IdentifyFromVideo::default().max_missed);
    let mut best: BTreeMap<u64, FollowedFace> = BTreeMap::new();
    let mut followed = Vec::new();
    let mut finish = |track: Track, best: &mut BTreeMap<u64, FollowedFace>| {
        if let Some(mut face) = best.remove(&track.id) {
            face.frames = track.hits;
            followed.push(face);
        }
    };
    while let Some(frame) = source.next_frame()? {
        if stopped(stop) {
            break;
        }
        let time_s = frame.timestamp.as_secs_f64();
        let faces = engine.detect(&frame.image)?;
        let update = tracker.update(frame.index, &faces);
        for ended in update.ended {
            finish(ended, &mut best);
        }
        for (face, track) in faces.iter().zip(&update.assigned) {
            let quality = FaceQuality::measure(&frame.image, face);
            let better = best
                .get(track)
                .is_none_or(|b| quality.score() > b.quality.score() + SEEN_BETTER);
            if !better {
                continue;
            }
            let embedding = engine
                .embed_at(&frame.image, std::slice::from_ref(face))?
                .remove(0);
            let first_s = best.get(track).map_or(time_s, |b| b.first_s);
            best.insert(
                *track,
                FollowedFace {
                    track: *track,
                    frames: 0,
                    first_s,
                    best_s: time_s,
                    face: face.clone(),
                    quality,
                    embedding,
                    image_sha256: frame_sha256(&frame),
                },
            );
        }
    }
    for track in tracker.finish() {
        finish(track, &mut best);
    }
    followed.sort_by_key(|f| f.track);
    Ok(followed)
}

struct Presence {
    votes: BTreeMap<Option<String>, (u64, f32)>,
    announced: Option<Option<String>>,
    first_s: f64,
    last_s: f64,
}

impl Presence {
    /// The identity most frames agree on (ties: the closer one).
    fn identity(&self) -> (Option<String>, Option<f32>) {
        self.votes
            .iter()
            .max_by(|a, b| a.1 .0.cmp(&b.1 .0).then(b.1 .1.total_cmp(&a.1 .1)))
            .map(|(p, (_, d))| (p.clone(), p.as_ref().map(|_| *d)))
            .unwrap_or((None, None))
    }
}

/// Who appears in the video, as enter/leave events passed to `emit` as they happen.
pub fn identify_video(
    engine: &Engine,
    gallery: &dyn Gallery,
    source: &mut dyn FrameSource,
    settings: &IdentifyFromVideo,
    stop: &StopFlag,
    emit: &mut dyn FnMut(PresenceEvent),
) -> Result<(), Error> {
    let index = if gallery.searches_in_place() {
        None
    } else {
        Some(facegate_gallery::TemplateIndex::load(
            gallery,
            engine.model_id(),
        )?)
    };
    let searcher = match &index {
        Some(index) => Searcher::Index(index),
        None => Searcher::Gallery(gallery),
    };
    let mut tracker = Tracker::new(0.3, settings.max_missed);
    let mut follower = FaceFollower::new(settings.detect_every)
        .with_min_face_size(settings.min_face_size.unwrap_or(0));
    let mut present: BTreeMap<u64, Presence> = BTreeMap::new();
    // Each followed face's last embedding: its frame, and the best quality embedded so far.
    let mut embedded: BTreeMap<u64, (u64, f32)> = BTreeMap::new();
    let mut frames = 0u64;
    let leave = |track: Track,
                 present: &mut BTreeMap<u64, Presence>,
                 emit: &mut dyn FnMut(PresenceEvent)| {
        if let Some(p) = present.remove(&track.id) {
            if p.announced.is_some() {
                emit(PresenceEvent::Leave {
                    track: track.id,
                    person: p.identity().0,
                    frames: track.hits,
                    first_s: p.first_s,
                    last_s: p.last_s,
                });
            }
        }
    };
    let reason = loop {
        if stopped(stop) {
            break "stopped";
        }
        let Some(frame) = source.next_frame()? else {
            break "end of video";
        };
        frames += 1;
        let time_s = frame.timestamp.as_secs_f64();
        if settings.duration.is_some_and(|d| frame.timestamp > d) {
            break "duration reached";
        }
        let faces = follower.detect(engine, &frame.image)?;
        let update = tracker.update(frame.index, &faces);
        for ended in update.ended {
            embedded.remove(&ended.id);
            leave(ended, &mut present, emit);
        }
        let due: Vec<(Face, u64, Option<f32>)> = faces
            .iter()
            .zip(&update.assigned)
            .filter_map(|(face, track)| {
                let votes: u64 = present
                    .get(track)
                    .map_or(0, |p| p.votes.values().map(|v| v.0).sum());
                match embedded.get(track) {
                    Some(_) if votes >= settings.confirm && settings.embed_every > 1 => {}
                    _ => return Some((face.clone(), *track, None)),
                }
                let (at, best) = embedded.get(track).copied()?;
                if frame.index < at + settings.embed_every {
                    return None;
                }
                let quality = FaceQuality::measure(&frame.image, face).score();
                (quality > best + SEEN_BETTER).then(|| (face.clone(), *track, Some(quality)))
            })
            .collect();
        for track in &update.assigned {
            if let Some(p) = present.get_mut(track) {
                p.last_s = time_s;
            }
        }
        if due.is_empty() {
            continue;
        }
        let due_faces: Vec<Face> = due.iter().map(|(f, _, _)| f.clone()).collect();
        let embeddings = engine.embed_at(&frame.image, &due_faces)?;
        for (embedding, (face, track, quality)) in embeddings.iter().zip(&due) {
            let quality =
                quality.unwrap_or_else(|| FaceQuality::measure(&frame.image, face).score());
            let best = embedded.get(track).map_or(f32::NEG_INFINITY, |e| e.1);
            embedded.insert(*track, (frame.index, best.max(quality)));
            let (candidates, _, _) = ops::rank_people(engine, searcher, embedding, 1)?;
            let best = candidates.into_iter().next();
            let (who, distance) = match best {
                Some(c) if c.is_match => (Some(c.person), c.distance),
                Some(c) => (None, c.distance),
                None => (None, f32::INFINITY),
            };
            let p = present.entry(*track).or_insert(Presence {
                votes: BTreeMap::new(),
                announced: None,
                first_s: time_s,
                last_s: time_s,
            });
            p.last_s = time_s;
            let vote = p.votes.entry(who).or_insert((0, f32::INFINITY));
            vote.0 += 1;
            vote.1 = vote.1.min(distance);
            let seen: u64 = p.votes.values().map(|v| v.0).sum();
            if p.announced.is_none() && seen >= settings.confirm {
                let (person, distance) = p.identity();
                p.announced = Some(person.clone());
                emit(PresenceEvent::Enter {
                    track: *track,
                    person,
                    distance,
                    frame: frame.index,
                    time_s: p.first_s,
                });
            }
        }
    };
    for track in tracker.finish() {
        leave(track, &mut present, emit);
    }
    emit(PresenceEvent::End {
        frames,
        dropped: source.dropped(),
        reason: reason.to_string(),
        searched_whole: follower.full_frames,
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use facegate_image::{Rgb, RgbImage};

    #[test]
    fn following_searches_whole_frames_every_fifth_of_a_second() {
        let at = |fps: f64| {
            let s = IdentifyFromVideo::following(fps);
            (s.detect_every, s.embed_every)
        };
        assert_eq!(at(25.0), (5, 10));
        assert_eq!(at(30.0), (6, 12));
        assert_eq!(at(5.0), (1, 2));
        assert_eq!(at(1.0), (1, 1));
        let defaults = IdentifyFromVideo::default();
        assert_eq!((defaults.detect_every, defaults.embed_every), (1, 1));
        assert_eq!(IdentifyFromVideo::following(25.0).confirm, defaults.confirm);
    }

    #[test]
    fn a_cut_to_another_scene_is_seen_and_movement_within_one_is_not() {
        let dark = RgbImage::from_pixel(640, 360, Rgb([30, 30, 30]));
        let bright = RgbImage::from_pixel(640, 360, Rgb([200, 190, 180]));
        // The same scene with a person-sized block moved across it.
        let mut moved = dark.clone();
        for y in 100..300 {
            for x in 300..420 {
                moved.put_pixel(x, y, Rgb([220, 180, 160]));
            }
        }
        let (a, b, c) = (glance(&dark), glance(&bright), glance(&moved));
        assert_eq!(a.len(), 32 * 18);
        assert!(scene_changed(&a, &b));
        assert!(!scene_changed(&a, &c));
        assert!(!scene_changed(&a, &a));
        // The first frame has nothing to compare with.
        assert!(!scene_changed(&[], &a));
    }
}
