//! `facegate eval liveness`: how often the challenge accepts attacks and refuses genuine
//! people, in the figures of ISO/IEC 30107-3.
//!
//! A manifest lists presentations, one per line (TSV, header `clip  label  attack_type  steps`,
//! and an optional fifth column `segments`):
//! - `clip`: a video file, or a still photo, presented as a print held in front of the camera
//!   (a rigid plane in 3-D, seen through a pinhole camera): moved at random, or, with an attack
//!   type starting `print_adaptive`, tilted toward each asked direction in turn by an attacker
//!   who knows the challenge (at most [`ADAPTIVE_TRIALS`] trials per line);
//! - `label`: `genuine` or `attack`;
//! - `attack_type`: a name to report APCER under (ignored for genuine lines);
//! - `steps`: a fixed challenge (`left,right,up`) judged once, or `random`: `--trials` random
//!   challenges, each judged against the clip;
//! - `segments` (optional): where the clip shows each movement, `front=0-2;right=2.2-5.6;...`
//!   (seconds, each movement with its return to the front). With segments, each trial is
//!   answered by a copy of the clip re-cut into the challenge's order ([`resequence`]): a
//!   genuine person following the prompts, or, labelled as an attack, an attacker who edits a
//!   recording of the victim to order.
//!
//! Every clip is analysed once (faces and their embeddings on each frame at the given rate);
//! trials replay that analysis. Identity is checked against the face seen at the start of the
//! same trial (no gallery): this measures the liveness decision, not recognition.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use facegate_challenge::{Failure, Rules, State, Step};
use facegate_face::Face;
use facegate_image::RgbImage;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use crate::challenge::{
    judge, read_eyes, ChallengeFrames, IdentityCheck, IdentityReference, SeenFrame,
};
use crate::{Engine, Error};

/// One analysed frame.
#[derive(Clone, Debug)]
pub struct AnalysedFrame {
    pub t: f64,
    pub faces: Vec<Face>,
    pub embeddings: Vec<Vec<f32>>,
    /// Each face's eye openness (empty when the engine does not read eyes).
    pub eyes: Vec<Option<[f32; 2]>>,
}

/// A line of the manifest.
#[derive(Clone, Debug)]
pub struct Presentation {
    pub clip: PathBuf,
    pub genuine: bool,
    pub attack_type: String,
    /// `None`: random challenges.
    pub steps: Option<Vec<Step>>,
    pub segments: Option<Segments>,
}

/// Where a clip shows the front and each movement (seconds).
#[derive(Clone, Debug, PartialEq)]
pub struct Segments {
    pub front: (f64, f64),
    pub moves: BTreeMap<&'static str, (Step, f64, f64)>,
}

/// Per presentation: how many trials, how many accepted.
#[derive(Clone, Debug, Serialize)]
pub struct ClipResult {
    pub clip: String,
    pub label: &'static str,
    pub attack_type: Option<String>,
    pub trials: usize,
    pub accepted: usize,
    pub non_responses: usize,
    /// Why the trials that failed failed, by reason.
    pub failures: BTreeMap<String, usize>,
    /// Median seconds from the first frame to the decision, over accepted trials.
    pub median_seconds_to_pass: Option<f64>,
}

/// The figures of ISO/IEC 30107-3 for the challenge.
#[derive(Clone, Debug, Serialize)]
pub struct LivenessReport {
    /// Attack presentations accepted, per attack type (the share of that type's trials).
    pub apcer_by_type: BTreeMap<String, f64>,
    /// The worst type's APCER (the figure that decides).
    pub apcer_max: f64,
    /// Genuine presentations refused (non-responses included).
    pub bpcer: f64,
    /// Trials with no usable face (no frontal start, face lost), of all trials.
    pub non_response_rate: f64,
    /// Median seconds to pass over the genuine trials that passed.
    pub genuine_median_seconds_to_pass: Option<f64>,
    pub clips: Vec<ClipResult>,
    pub trials_per_random_clip: usize,
    pub frames_per_second: f64,
    pub seed: u64,
    pub model: String,
}

/// A TSV manifest's header fields and its other rows, each its 1-based line number and
/// trimmed fields, without blank lines and `#` comments.
type ManifestRows = (Vec<String>, Vec<(usize, Vec<String>)>);

fn manifest_rows(path: &Path) -> Result<ManifestRows, Error> {
    let text = std::fs::read_to_string(path).map_err(|err| Error::EvalInput {
        path: path.to_path_buf(),
        message: format!("cannot be read: {err}"),
    })?;
    let mut rows = text
        .lines()
        .enumerate()
        .filter(|(_, l)| {
            let l = l.trim();
            !l.is_empty() && !l.starts_with('#')
        })
        .map(|(i, l)| (i + 1, l.split('\t').map(|f| f.trim().to_string()).collect()));
    let header = rows.next().map(|(_, fields)| fields).unwrap_or_default();
    Ok((header, rows.collect()))
}

/// An error at `line` of the manifest `path`.
fn manifest_error(path: &Path, line: usize, message: String) -> Error {
    Error::EvalInput {
        path: path.to_path_buf(),
        message: format!("line {line}: {message}"),
    }
}

/// Reads a manifest; clip paths are relative to the manifest's folder.
pub fn read_manifest(path: &Path) -> Result<Vec<Presentation>, Error> {
    let bad = |line: usize, message: String| manifest_error(path, line, message);
    let base = path.parent().unwrap_or(Path::new("."));
    let (header, lines) = manifest_rows(path)?;
    if !header.starts_with(&["clip", "label", "attack_type", "steps"].map(String::from)) {
        return Err(bad(
            1,
            "the header must be `clip<TAB>label<TAB>attack_type<TAB>steps` (and optionally <TAB>segments)".into(),
        ));
    }
    let mut presentations = Vec::new();
    for (number, fields) in &lines {
        let number = *number;
        let fields: Vec<&str> = fields.iter().map(String::as_str).collect();
        if fields.len() < 4 {
            return Err(bad(
                number,
                format!(
                    "4 or 5 tab-separated fields expected, found {}",
                    fields.len()
                ),
            ));
        }
        let genuine = match fields[1] {
            "genuine" => true,
            "attack" => false,
            other => {
                return Err(bad(
                    number,
                    format!("label must be genuine or attack, not {other:?}"),
                ))
            }
        };
        let steps = match fields[3] {
            "random" => None,
            list => Some(Step::parse_list(list).map_err(|e| bad(number, e))?),
        };
        let segments = match fields.get(4).filter(|s| !s.is_empty()) {
            Some(text) => Some(parse_segments(text).map_err(|e| bad(number, e))?),
            None => None,
        };
        presentations.push(Presentation {
            clip: base.join(fields[0]),
            genuine,
            attack_type: fields[2].to_string(),
            steps,
            segments,
        });
    }
    if presentations.is_empty() {
        return Err(bad(1, "no presentations listed".into()));
    }
    Ok(presentations)
}

fn parse_segments(text: &str) -> Result<Segments, String> {
    let mut front = None;
    let mut moves = BTreeMap::new();
    for part in text.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, range) = part
            .split_once('=')
            .ok_or_else(|| format!("segment {part:?} is not name=start-end"))?;
        let (a, b) = range
            .split_once('-')
            .and_then(|(a, b)| Some((a.trim().parse::<f64>().ok()?, b.trim().parse::<f64>().ok()?)))
            .filter(|(a, b)| a < b)
            .ok_or_else(|| {
                format!("segment {part:?}: the range must be start-end in seconds, start < end")
            })?;
        match name.trim() {
            "front" => front = Some((a, b)),
            other => {
                let step = Step::parse_list(other)?[0];
                moves.insert(step.name(), (step, a, b));
            }
        }
    }
    let front = front.ok_or("segments need a front=start-end segment")?;
    Ok(Segments { front, moves })
}

/// Faces and embeddings of a video's frames, sampled at `fps`.
pub fn analyse_video(engine: &Engine, path: &Path, fps: f64) -> Result<Vec<AnalysedFrame>, Error> {
    use facegate_video::ffmpeg::{FfmpegInput, FfmpegSource};
    use facegate_video::FrameSource;
    let input = FfmpegInput::file(&path.to_string_lossy(), fps);
    let mut source = FfmpegSource::open(&input)?;
    let mut frames = Vec::new();
    while let Some(frame) = source.next_frame()? {
        frames.push(analyse(
            engine,
            &frame.image,
            frame.timestamp.as_secs_f64(),
        )?);
    }
    Ok(frames)
}

fn analyse(engine: &Engine, image: &RgbImage, t: f64) -> Result<AnalysedFrame, Error> {
    let faces = engine.detect(image)?;
    let embeddings = if faces.is_empty() {
        Vec::new()
    } else {
        engine.embed_at(image, &faces)?
    };
    let eyes = read_eyes(engine, image, &faces)?;
    Ok(AnalysedFrame {
        t,
        faces,
        embeddings,
        eyes,
    })
}

/// How a simulated print moves.
#[derive(Clone, Copy, Debug)]
enum PrintMotion {
    /// Smooth random tilts (up to 40 degrees about each axis), turns in the picture's plane
    /// (up to 20), moves, zooms and shake.
    Random,
    /// An attacker who knows the challenge: the picture is tilted (up to 60 degrees) toward
    /// each asked direction in turn and back, tilting one way (`1.0`) or the other (`-1.0`).
    Adaptive(f64),
}

/// A still photo presented as a print or a phone held in front of the camera, as a camera sees
/// it: the photo is a rigid plane in 3-D, rotated and moved, projected through a pinhole camera
/// (focal length 1.2 times the photo's larger side, the photo at that distance filling its own
/// size), on a grey background. Frames at `fps`.
fn simulate_print(
    engine: &Engine,
    photo: &Path,
    fps: f64,
    motion: PrintMotion,
    steps: &[Step],
    seed: u64,
) -> Result<Vec<AnalysedFrame>, Error> {
    let image = engine.load_image(photo)?.rgb;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut wave = |rate: f64| {
        let phase = rng.random_range(0.0..std::f64::consts::TAU);
        let speed = rate * rng.random_range(0.6..1.4);
        move |t: f64| (phase + speed * t).sin()
    };
    let (pitch_w, yaw_w, roll_w, zoom_w, pan_x, pan_y) = (
        wave(1.1),
        wave(0.9),
        wave(0.7),
        wave(0.5),
        wave(0.8),
        wave(0.6),
    );
    let (shake_x, shake_y) = (wave(11.0), wave(13.0));
    let deg = std::f64::consts::PI / 180.0;
    // The adaptive attacker's plan: front 1 s; per step 0.8 s to tilt, 0.6 s held, 0.8 s back;
    // front 1.5 s.
    let plan_seconds = 2.5 + 2.2 * steps.len() as f64;
    let seconds = match motion {
        PrintMotion::Random => 12.0,
        PrintMotion::Adaptive(_) => plan_seconds,
    };
    let adaptive_pose = |t: f64, sign: f64| -> (f64, f64) {
        let into = t - 1.0;
        if into < 0.0 {
            return (0.0, 0.0);
        }
        let index = (into / 2.2) as usize;
        let Some(step) = steps.get(index) else {
            return (0.0, 0.0);
        };
        let local = into - index as f64 * 2.2;
        let amount = if local < 0.8 {
            local / 0.8
        } else if local < 1.4 {
            1.0
        } else {
            (2.2 - local).max(0.0) / 0.8
        };
        let angle = 60.0 * deg * amount * sign;
        match step {
            Step::Left | Step::Right => (0.0, angle),
            // Faking a blink: the picture flicked back 50 degrees and forward in 0.3 s,
            // squashing its eyes (and the rest of the face) for a moment.
            Step::Blink => {
                let flick = (1.0 - (local - 1.0).abs() / 0.15).max(0.0);
                (50.0 * deg * flick * sign, 0.0)
            }
            Step::Up | Step::Down => (angle, 0.0),
        }
    };
    let (w, h) = (f64::from(image.width()), f64::from(image.height()));
    let (out_w, out_h) = ((w * 1.6) as u32, (h * 1.6) as u32);
    let focal = 1.2 * w.max(h);
    let count = (seconds * fps).round() as usize;
    let mut frames = Vec::with_capacity(count);
    for i in 0..count {
        let t = i as f64 / fps;
        let (pitch, yaw, roll, scale, tx, ty) = match motion {
            PrintMotion::Random => (
                40.0 * deg * pitch_w(t),
                40.0 * deg * yaw_w(t),
                20.0 * deg * roll_w(t),
                1.0 + 0.22 * zoom_w(t),
                0.12 * w * pan_x(t) + 2.5 * shake_x(t),
                0.12 * h * pan_y(t) + 2.5 * shake_y(t),
            ),
            PrintMotion::Adaptive(sign) => {
                let (pitch, yaw) = adaptive_pose(t, sign);
                (pitch, yaw, 0.0, 1.0, 2.5 * shake_x(t), 2.5 * shake_y(t))
            }
        };
        let pose = Pose::new(pitch, yaw, roll, focal / scale, [tx, ty]);
        let frame = render(&image, &pose, focal, out_w, out_h);
        frames.push(analyse(engine, &frame, t)?);
    }
    Ok(frames)
}

/// A rigid plane's place in front of the camera: its axes and origin (camera coordinates).
struct Pose {
    origin: [f64; 3],
    x_axis: [f64; 3],
    y_axis: [f64; 3],
    normal: [f64; 3],
}

impl Pose {
    /// Rotated by `pitch` (about the picture's horizontal axis), `yaw` (vertical) and `roll`
    /// (its own plane), at `distance` along the optical axis, moved by `shift` pixels.
    fn new(pitch: f64, yaw: f64, roll: f64, distance: f64, shift: [f64; 2]) -> Pose {
        let (sp, cp) = pitch.sin_cos();
        let (sy, cy) = yaw.sin_cos();
        let (sr, cr) = roll.sin_cos();
        // R = Ry(yaw) * Rx(pitch) * Rz(roll), applied to the picture's axes.
        let rotate = |v: [f64; 3]| {
            let v = [cr * v[0] - sr * v[1], sr * v[0] + cr * v[1], v[2]];
            let v = [v[0], cp * v[1] - sp * v[2], sp * v[1] + cp * v[2]];
            [cy * v[0] + sy * v[2], v[1], -sy * v[0] + cy * v[2]]
        };
        Pose {
            origin: [shift[0], shift[1], distance],
            x_axis: rotate([1.0, 0.0, 0.0]),
            y_axis: rotate([0.0, 1.0, 0.0]),
            normal: rotate([0.0, 0.0, 1.0]),
        }
    }
}

fn dot(a: [f64; 3], b: [f64; 3]) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}

/// What a pinhole camera of focal length `focal` sees of `image` placed at `pose` (one photo
/// pixel per unit of the plane), sampled bilinearly on a grey background.
fn render(image: &RgbImage, pose: &Pose, focal: f64, width: u32, height: u32) -> RgbImage {
    let (w, h) = (i64::from(image.width()), i64::from(image.height()));
    let (cx, cy) = (f64::from(width) / 2.0, f64::from(height) / 2.0);
    let towards = dot(pose.origin, pose.normal);
    RgbImage::from_fn(width, height, |x, y| {
        let ray = [f64::from(x) + 0.5 - cx, f64::from(y) + 0.5 - cy, focal];
        let facing = dot(ray, pose.normal);
        let background = image::Rgb([118, 118, 118]);
        if facing.abs() < 1e-9 {
            return background;
        }
        let t = towards / facing;
        if t <= 0.0 {
            return background;
        }
        let hit = [
            ray[0] * t - pose.origin[0],
            ray[1] * t - pose.origin[1],
            ray[2] * t - pose.origin[2],
        ];
        let u = dot(hit, pose.x_axis) + w as f64 / 2.0 - 0.5;
        let v = dot(hit, pose.y_axis) + h as f64 / 2.0 - 0.5;
        let (u0, v0) = (u.floor() as i64, v.floor() as i64);
        if u0 < 0 || v0 < 0 || u0 + 1 >= w || v0 + 1 >= h {
            return background;
        }
        let (fu, fv) = (u - u0 as f64, v - v0 as f64);
        let at = |x: i64, y: i64| image.get_pixel(x as u32, y as u32).0;
        let (a, b, c, d) = (
            at(u0, v0),
            at(u0 + 1, v0),
            at(u0, v0 + 1),
            at(u0 + 1, v0 + 1),
        );
        let mut out = [0u8; 3];
        for k in 0..3 {
            let top = f64::from(a[k]) * (1.0 - fu) + f64::from(b[k]) * fu;
            let bottom = f64::from(c[k]) * (1.0 - fu) + f64::from(d[k]) * fu;
            out[k] = (top * (1.0 - fv) + bottom * fv).round().clamp(0.0, 255.0) as u8;
        }
        image::Rgb(out)
    })
}

/// One stretch of a re-cut answer: the front, or one step's segment.
#[derive(Clone, Debug)]
pub struct Part<'f> {
    /// The step the segment shows (`None`: the front).
    pub step: Option<Step>,
    pub frames: Vec<&'f AnalysedFrame>,
    /// For a movement: the first frame of its way back to the front (the last frame turned at
    /// least half as far as the segment's furthest), where a person who has done the step
    /// picks up after letting go of the pose.
    pub return_from: Option<usize>,
}

/// The clip's segments in the order `steps` asks: the front, each step (a movement with its
/// return to the front, or a blink), the front again.
pub fn resequence<'f>(
    frames: &'f [AnalysedFrame],
    segments: &Segments,
    steps: &[Step],
) -> Result<Vec<Part<'f>>, String> {
    let cut = |step: Option<Step>, (a, b): (f64, f64)| {
        let frames: Vec<&AnalysedFrame> = frames.iter().filter(|f| f.t >= a && f.t <= b).collect();
        let return_from = step
            .filter(|s| s.is_movement())
            .and_then(|_| return_point(&frames));
        Part {
            step,
            frames,
            return_from,
        }
    };
    let mut parts = vec![cut(None, segments.front)];
    for step in steps {
        let (_, a, b) = segments
            .moves
            .get(step.name())
            .ok_or_else(|| format!("the clip's segments show no {step} movement"))?;
        parts.push(cut(Some(*step), (*a, *b)));
    }
    parts.push(cut(None, segments.front));
    Ok(parts)
}

/// Where a movement segment's way back starts (see [`Part::return_from`]).
fn return_point(frames: &[&AnalysedFrame]) -> Option<usize> {
    let largest = |f: &AnalysedFrame| {
        f.faces
            .iter()
            .max_by(|a, b| a.area().total_cmp(&b.area()))
            .cloned()
    };
    let first = frames.iter().find_map(|f| largest(f))?;
    let turned: Vec<f32> = frames
        .iter()
        .map(|f| {
            largest(f)
                .and_then(|face| facegate_challenge::head_offset(&first, &face))
                .map_or(0.0, |o| o.x.hypot(o.y))
        })
        .collect();
    let furthest = turned.iter().copied().fold(0.0, f32::max);
    if furthest <= 0.0 {
        return None;
    }
    turned.iter().rposition(|m| *m >= 0.5 * furthest)
}

/// A re-cut answer played as a person following the prompts would: each part until its
/// request is met, then, after [`REACTION_SECONDS`], the way back to the front (a movement's
/// hold is not waited out), then the next part once the face has been checked at the front.
/// Times are continuous: each frame follows the previous by the clip's own interval.
struct Following<'f> {
    parts: Vec<Part<'f>>,
    part: usize,
    index: usize,
    played: usize,
    t: f64,
    previous: Option<&'f AnalysedFrame>,
    interval: f64,
    reaction: usize,
    /// `played` when the current part's request was met.
    done_at: Option<usize>,
    jumped: bool,
    /// `played` at the last identity check.
    checked_at: Option<usize>,
    /// The last state seen, as (kind, step): a step's clock restarting is not a change.
    phase: (&'static str, usize),
}

/// How long a person takes to notice the next prompt.
pub const REACTION_SECONDS: f64 = 0.3;

impl<'f> Following<'f> {
    fn new(parts: Vec<Part<'f>>, fps: f64) -> Following<'f> {
        let interval = 1.0 / fps.max(1.0);
        Following {
            parts,
            part: 0,
            index: 0,
            played: 0,
            t: 0.0,
            previous: None,
            interval,
            reaction: (REACTION_SECONDS / interval).round() as usize,
            done_at: None,
            jumped: false,
            checked_at: None,
            phase: ("starting", 0),
        }
    }

    fn next_part(&mut self) {
        self.part += 1;
        self.index = 0;
        self.done_at = None;
        self.jumped = false;
    }

    fn next(&mut self) -> Option<(f64, &'f AnalysedFrame)> {
        loop {
            let part = self.parts.get(self.part)?;
            let last_part = self.part + 1 == self.parts.len();
            if let Some(done) = self.done_at {
                if self.played >= done + self.reaction {
                    if !last_part && self.checked_at.is_some_and(|c| c >= done) {
                        self.next_part();
                        continue;
                    }
                    if let Some(back) = part.return_from.filter(|_| !self.jumped) {
                        self.index = self.index.max(back);
                        self.jumped = true;
                    }
                }
            }
            let Some(&frame) = part.frames.get(self.index) else {
                if last_part {
                    return None;
                }
                self.next_part();
                continue;
            };
            let step = match self.previous {
                Some(prev) if frame.t > prev.t && frame.t - prev.t < 2.0 * self.interval => {
                    frame.t - prev.t
                }
                _ => self.interval,
            };
            self.t = if self.played == 0 { 0.0 } else { self.t + step };
            self.index += 1;
            self.played += 1;
            self.previous = Some(frame);
            return Some((self.t, frame));
        }
    }

    fn state_changed(&mut self, state: &State) {
        let phase = match state {
            State::Starting => ("starting", 0),
            State::Step { step, .. } => ("step", *step),
            State::Ending { .. } => ("ending", 0),
            State::Passed { .. } | State::Failed(_) => ("final", 0),
        };
        if phase != self.phase {
            self.phase = phase;
            if self.done_at.is_none() {
                self.done_at = Some(self.played);
            }
        }
    }
}

/// Steps in a random challenge: 3 of the 4 movements and the blink, never the same twice in
/// a row (80 challenges: a recording passes by chance about 1 time in 80 at most). The
/// server, the camera page and the CLI ask for the same number.
pub const CHALLENGE_LENGTH: usize = crate::challenge::DEFAULT_CHALLENGE_LENGTH;

/// Trials per adaptive-print line at most (each renders and analyses its own frames).
pub const ADAPTIVE_TRIALS: usize = 10;

/// How a trial's frames are played.
enum Player<'a> {
    /// As analysed, in order.
    Recorded(std::vec::IntoIter<&'a AnalysedFrame>),
    /// Re-cut to the challenge and played as a person following it.
    Following(Box<Following<'a>>),
}

/// Analysed frames replayed for one trial.
struct Replay<'a> {
    engine: &'a Engine,
    player: Player<'a>,
    current: Option<&'a AnalysedFrame>,
    reference: IdentityReference<'a>,
}

impl ChallengeFrames for Replay<'_> {
    fn state_changed(&mut self, state: &State) {
        if let Player::Following(following) = &mut self.player {
            following.state_changed(state);
        }
    }

    fn next_frame(&mut self) -> Result<Option<SeenFrame>, Error> {
        let next = match &mut self.player {
            Player::Recorded(frames) => frames.next().map(|f| (f.t, f)),
            Player::Following(following) => following.next(),
        };
        Ok(next.map(|(t, frame)| {
            self.current = Some(frame);
            SeenFrame {
                t,
                faces: frame.faces.clone(),
                eyes: frame.eyes.clone(),
            }
        }))
    }

    fn identify(&mut self, face: &Face, t: f64) -> Result<IdentityCheck, Error> {
        if let Player::Following(following) = &mut self.player {
            following.checked_at = Some(following.played);
        }
        let embedding = self.current.and_then(|frame| {
            frame
                .faces
                .iter()
                .position(|f| f == face)
                .and_then(|i| frame.embeddings.get(i))
        });
        match embedding {
            Some(embedding) => self.reference.check(self.engine, embedding, t),
            None => Ok(IdentityCheck {
                time_s: t,
                person: None,
                distance: None,
                threshold: self.engine.threshold().value,
            }),
        }
    }
}

/// Judges one trial on `frames`.
fn trial<'a>(
    engine: &'a Engine,
    player: Player<'a>,
    steps: Vec<Step>,
    rules: &Rules,
) -> Result<State, Error> {
    let reference = IdentityReference::FirstFace(None);
    let expected = reference.expected();
    let mut replay = Replay {
        engine,
        player,
        current: None,
        reference,
    };
    Ok(judge(
        &mut replay,
        steps,
        rules.clone(),
        expected,
        engine.model_id(),
        &mut |_| {},
    )?
    .state)
}

/// Runs every presentation of the manifest: `trials` random challenges for `random` lines.
pub fn evaluate(
    engine: &Engine,
    presentations: &[Presentation],
    trials: usize,
    seed: u64,
    fps: f64,
    rules: &Rules,
    progress: &mut dyn FnMut(&Presentation),
) -> Result<LivenessReport, Error> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut clips = Vec::new();
    let mut analysed: std::collections::HashMap<PathBuf, Vec<AnalysedFrame>> = Default::default();
    for (index, p) in presentations.iter().enumerate() {
        progress(p);
        let is_video = !matches!(
            p.clip
                .extension()
                .and_then(|e| e.to_str())
                .map(str::to_ascii_lowercase)
                .as_deref(),
            Some("jpg" | "jpeg" | "png" | "webp" | "bmp")
        );
        let clip_seed = seed ^ (index as u64).wrapping_mul(0x9e37_79b9);
        let adaptive = !is_video && p.attack_type.starts_with("print_adaptive");
        // A clip listed on several lines is analysed once; an adaptive print is rendered for
        // each challenge.
        if !adaptive && !analysed.contains_key(&p.clip) {
            let frames = if is_video {
                analyse_video(engine, &p.clip, fps)?
            } else {
                simulate_print(engine, &p.clip, fps, PrintMotion::Random, &[], clip_seed)?
            };
            analysed.insert(p.clip.clone(), frames);
        }
        let trials = if adaptive {
            trials.clamp(1, ADAPTIVE_TRIALS)
        } else {
            trials.max(1)
        };
        let challenges: Vec<Vec<Step>> = match &p.steps {
            Some(steps) => vec![steps.clone()],
            None => (0..trials)
                .map(|_| {
                    Step::random(
                        &mut rng,
                        CHALLENGE_LENGTH,
                        crate::challenge::askable_steps(engine),
                    )
                })
                .collect(),
        };
        let mut result = ClipResult {
            clip: p.clip.display().to_string(),
            label: if p.genuine { "genuine" } else { "attack" },
            attack_type: (!p.genuine).then(|| p.attack_type.clone()),
            trials: challenges.len(),
            accepted: 0,
            non_responses: 0,
            failures: BTreeMap::new(),
            median_seconds_to_pass: None,
        };
        let mut times = Vec::new();
        for (number, steps) in challenges.into_iter().enumerate() {
            let rendered;
            let frames: &[AnalysedFrame] = if adaptive {
                let sign = if number % 2 == 0 { 1.0 } else { -1.0 };
                rendered = simulate_print(
                    engine,
                    &p.clip,
                    fps,
                    PrintMotion::Adaptive(sign),
                    &steps,
                    clip_seed ^ number as u64,
                )?;
                &rendered
            } else {
                &analysed[&p.clip]
            };
            let player = match &p.segments {
                Some(segments) => Player::Following(Box::new(Following::new(
                    resequence(frames, segments, &steps).map_err(|message| Error::EvalInput {
                        path: p.clip.clone(),
                        message,
                    })?,
                    fps,
                ))),
                None => Player::Recorded(frames.iter().collect::<Vec<_>>().into_iter()),
            };
            match trial(engine, player, steps, rules)? {
                State::Passed { seconds, .. } => {
                    result.accepted += 1;
                    times.push(seconds);
                }
                State::Failed(failure) => {
                    if matches!(
                        failure,
                        Failure::NoFrontalStart { .. } | Failure::FaceLost { .. }
                    ) {
                        result.non_responses += 1;
                    }
                    let reason = serde_json::to_value(&failure)
                        .ok()
                        .and_then(|v| v["reason"].as_str().map(str::to_string))
                        .unwrap_or_else(|| "failed".into());
                    *result.failures.entry(reason).or_default() += 1;
                }
                _ => {}
            }
        }
        result.median_seconds_to_pass = median(&mut times);
        clips.push(result);
    }
    let rate = |accepted: usize, trials: usize| {
        if trials == 0 {
            0.0
        } else {
            accepted as f64 / trials as f64
        }
    };
    let mut by_type: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    let (mut genuine_trials, mut genuine_refused, mut all_trials, mut non_responses) = (0, 0, 0, 0);
    for c in &clips {
        all_trials += c.trials;
        non_responses += c.non_responses;
        match &c.attack_type {
            Some(kind) => {
                let entry = by_type.entry(kind.clone()).or_default();
                entry.0 += c.accepted;
                entry.1 += c.trials;
            }
            None => {
                genuine_trials += c.trials;
                genuine_refused += c.trials - c.accepted;
            }
        }
    }
    let apcer_by_type: BTreeMap<String, f64> = by_type
        .into_iter()
        .map(|(k, (a, n))| (k, rate(a, n)))
        .collect();
    let mut genuine_times: Vec<f64> = Vec::new();
    for c in clips.iter().filter(|c| c.attack_type.is_none()) {
        if let Some(t) = c.median_seconds_to_pass {
            genuine_times.push(t);
        }
    }
    Ok(LivenessReport {
        apcer_max: apcer_by_type.values().copied().fold(0.0, f64::max),
        apcer_by_type,
        bpcer: rate(genuine_refused, genuine_trials),
        non_response_rate: rate(non_responses, all_trials),
        genuine_median_seconds_to_pass: median(&mut genuine_times),
        clips,
        trials_per_random_clip: trials.max(1),
        frames_per_second: fps,
        seed,
        model: engine.model_id().to_string(),
    })
}

fn median(values: &mut [f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    Some(if values.len().is_multiple_of(2) {
        (values[mid - 1] + values[mid]) / 2.0
    } else {
        values[mid]
    })
}

/// A clip with its annotated blinks, for `facegate eval blinks`.
#[derive(Clone, Debug, PartialEq)]
pub struct BlinkClip {
    pub clip: PathBuf,
    /// When the eyes close, in seconds (empty: the clip shows none).
    pub blinks: Vec<f64>,
}

/// Reads a blink manifest: TSV with header `clip  blinks`, blinks a comma list of seconds or
/// `-` for none; clip paths relative to the manifest's folder.
pub fn read_blink_manifest(path: &Path) -> Result<Vec<BlinkClip>, Error> {
    let bad = |line: usize, message: String| manifest_error(path, line, message);
    let base = path.parent().unwrap_or(Path::new("."));
    let (header, lines) = manifest_rows(path)?;
    if header != ["clip", "blinks"] {
        return Err(bad(1, "the header must be `clip<TAB>blinks`".into()));
    }
    let mut clips = Vec::new();
    for (number, fields) in &lines {
        let number = *number;
        let fields: Vec<&str> = fields.iter().map(String::as_str).collect();
        let [clip, blinks] = fields[..] else {
            return Err(bad(
                number,
                format!("2 tab-separated fields expected, found {}", fields.len()),
            ));
        };
        let blinks = match blinks {
            "-" | "" => Vec::new(),
            list => list
                .split(',')
                .map(|t| {
                    t.trim()
                        .parse::<f64>()
                        .ok()
                        .filter(|t| t.is_finite() && *t >= 0.0)
                        .ok_or_else(|| bad(number, format!("{t:?} is not a time in seconds")))
                })
                .collect::<Result<Vec<f64>, Error>>()?,
        };
        clips.push(BlinkClip {
            clip: base.join(clip),
            blinks,
        });
    }
    Ok(clips)
}

/// Blink detection on one clip.
#[derive(Clone, Debug, Serialize)]
pub struct BlinkClipResult {
    pub clip: String,
    /// The annotated blink times.
    pub annotated: Vec<f64>,
    /// The blinks found.
    pub detected: Vec<facegate_challenge::Blink>,
    /// Annotations matched by a detection.
    pub matched: usize,
    pub precision: f64,
    pub recall: f64,
    /// Frames with a face whose eyes were read, of all frames.
    pub frames_read: usize,
    pub frames: usize,
}

/// Blink detection against annotations, over every clip.
#[derive(Clone, Debug, Serialize)]
pub struct BlinkReport {
    pub precision: f64,
    pub recall: f64,
    pub annotated: usize,
    pub detected: usize,
    pub matched: usize,
    /// A detection matches an annotation this close, in seconds.
    pub tolerance_seconds: f64,
    pub frames_per_second: f64,
    pub clips: Vec<BlinkClipResult>,
}

/// Reads each clip's largest face's eye openness at `fps` and finds its blinks with `rules`.
pub fn evaluate_blinks(
    engine: &Engine,
    clips: &[BlinkClip],
    fps: f64,
    rules: &facegate_challenge::BlinkRules,
    tolerance: f64,
    progress: &mut dyn FnMut(&BlinkClip),
) -> Result<BlinkReport, Error> {
    use facegate_challenge::blink::{blinks_in, BlinkMatch};
    use facegate_video::ffmpeg::{FfmpegInput, FfmpegSource};
    use facegate_video::FrameSource;
    if !engine.sees_eyes() {
        return Err(Error::ChallengeSteps {
            message: "blink evaluation needs an engine loaded with the eye landmark network".into(),
        });
    }
    let mut results = Vec::new();
    for clip in clips {
        progress(clip);
        let input = FfmpegInput::file(&clip.clip.to_string_lossy(), fps);
        let mut source = FfmpegSource::open(&input)?;
        let mut series = Vec::new();
        while let Some(frame) = source.next_frame()? {
            let faces = engine.detect(&frame.image)?;
            let eyes = match faces.iter().max_by(|a, b| a.area().total_cmp(&b.area())) {
                Some(face) => engine
                    .eye_openness(&frame.image, face)?
                    .map(|o| [o.image_left, o.image_right]),
                None => None,
            };
            series.push((frame.timestamp.as_secs_f64(), eyes));
        }
        let detected = blinks_in(&series, rules);
        let times: Vec<f64> = detected.iter().map(|b| b.at).collect();
        let matched = BlinkMatch::of(&clip.blinks, &times, tolerance);
        results.push(BlinkClipResult {
            clip: clip.clip.display().to_string(),
            annotated: clip.blinks.clone(),
            matched: matched.matched,
            precision: matched.precision(),
            recall: matched.recall(),
            detected,
            frames_read: series.iter().filter(|(_, e)| e.is_some()).count(),
            frames: series.len(),
        });
    }
    let total = BlinkMatch {
        annotated: results.iter().map(|r| r.annotated.len()).sum(),
        detected: results.iter().map(|r| r.detected.len()).sum(),
        matched: results.iter().map(|r| r.matched).sum(),
    };
    Ok(BlinkReport {
        precision: total.precision(),
        recall: total.recall(),
        annotated: total.annotated,
        detected: total.detected,
        matched: total.matched,
        tolerance_seconds: tolerance,
        frames_per_second: fps,
        clips: results,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifests_and_segments_are_read_or_refused_with_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.tsv");
        std::fs::write(
            &path,
            "clip\tlabel\tattack_type\tsteps\tsegments\n# a comment\na.mp4\tgenuine\t-\trandom\tfront=0-2;left=2.2-4;right=4.5-6\nb.jpg\tattack\tprint\tleft,up\n",
        )
        .unwrap();
        let rows = read_manifest(&path).unwrap();
        assert_eq!(rows.len(), 2);
        assert!(rows[0].genuine && rows[0].steps.is_none());
        let segments = rows[0].segments.as_ref().unwrap();
        assert_eq!(segments.front, (0.0, 2.0));
        assert_eq!(segments.moves["left"], (Step::Left, 2.2, 4.0));
        assert_eq!(rows[1].steps.as_deref(), Some(&[Step::Left, Step::Up][..]));
        assert_eq!(rows[1].clip, dir.path().join("b.jpg"));

        std::fs::write(
            &path,
            "clip\tlabel\tattack_type\tsteps\nx\tmaybe\t-\trandom\n",
        )
        .unwrap();
        let err = read_manifest(&path).unwrap_err().to_string();
        assert!(
            err.contains("line 2") && err.contains("genuine or attack"),
            "{err}"
        );
        std::fs::write(&path, "clip,label\n").unwrap();
        assert!(read_manifest(&path)
            .unwrap_err()
            .to_string()
            .contains("header"));
        assert!(
            parse_segments("left=1-2").is_err(),
            "a front segment is needed"
        );
        assert!(parse_segments("front=2-1").is_err());
    }

    #[test]
    fn resequenced_answers_follow_the_asked_order_with_continuous_times() {
        let frame = |t: f64| AnalysedFrame {
            t,
            faces: Vec::new(),
            embeddings: Vec::new(),
            eyes: Vec::new(),
        };
        let frames: Vec<AnalysedFrame> = (0..100).map(|i| frame(f64::from(i) * 0.1)).collect();
        let segments = parse_segments("front=0-0.95;left=2-2.95;up=5-5.45").unwrap();
        let parts = resequence(&frames, &segments, &[Step::Up, Step::Left]).unwrap();
        let steps: Vec<Option<Step>> = parts.iter().map(|p| p.step).collect();
        assert_eq!(steps, [None, Some(Step::Up), Some(Step::Left), None]);
        let lengths: Vec<usize> = parts.iter().map(|p| p.frames.len()).collect();
        assert_eq!(lengths, [10, 5, 10, 10]);
        assert!(resequence(&frames, &segments, &[Step::Right]).is_err());

        // Nobody reacting: every part whole, one after the other, times continuous.
        let mut player = Following::new(parts.clone(), 10.0);
        let mut played = Vec::new();
        while let Some((t, f)) = player.next() {
            played.push((t, (f.t * 10.0).round() / 10.0));
        }
        assert_eq!(played.len(), 35);
        assert_eq!(played[10].1, 5.0);
        assert_eq!(played[15].1, 2.0);
        assert!(
            played
                .windows(2)
                .all(|w| (w[1].0 - w[0].0 - 0.1).abs() < 1e-6),
            "continuous"
        );

        // The start is judged on the third frame and the face checked: after the reaction
        // time the next part starts.
        let mut player = Following::new(parts, 10.0);
        let mut sources = Vec::new();
        for n in 0..8 {
            let (_, f) = player.next().unwrap();
            sources.push((f.t * 10.0).round() / 10.0);
            if n == 2 {
                player.checked_at = Some(player.played);
                player.state_changed(&State::Step {
                    step: 0,
                    asked: Step::Up,
                    since: 0.2,
                });
            }
        }
        assert_eq!(sources, [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 5.0, 5.1]);
    }

    #[test]
    fn a_picture_facing_the_camera_at_the_focal_distance_is_seen_as_it_is() {
        let photo = RgbImage::from_fn(40, 30, |x, y| {
            image::Rgb([(x * 6) as u8, (y * 8) as u8, 77])
        });
        let pose = Pose::new(0.0, 0.0, 0.0, 100.0, [0.0, 0.0]);
        let seen = render(&photo, &pose, 100.0, 64, 48);
        // The photo sits in the middle: canvas (12..52, 9..39) shows photo (0..40, 0..30).
        assert_eq!(seen.get_pixel(12 + 10, 9 + 5), photo.get_pixel(10, 5));
        assert_eq!(seen.get_pixel(12 + 30, 9 + 20), photo.get_pixel(30, 20));
        assert_eq!(seen.get_pixel(2, 2).0, [118, 118, 118]);
        // Tilted about its vertical axis, one side comes closer and looks larger.
        let tilted = render(
            &photo,
            &Pose::new(0.0, 0.5, 0.0, 100.0, [0.0, 0.0]),
            100.0,
            64,
            48,
        );
        let columns = |img: &RgbImage, y: u32| {
            (0..64)
                .filter(|&x| img.get_pixel(x, y).0 != [118, 118, 118])
                .count()
        };
        assert!(columns(&tilted, 24) < columns(&seen, 24), "foreshortened");
    }
}
