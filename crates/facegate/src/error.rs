/// Everything that can go wrong in facegate, each with a message that says what to do.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Image(#[from] facegate_image::ImageError),
    #[error(transparent)]
    Model(#[from] facegate_models::ModelError),
    #[error(transparent)]
    Runtime(#[from] facegate_nn::RuntimeError),
    #[error(transparent)]
    Detect(#[from] facegate_detect::DetectError),
    #[error(transparent)]
    Embed(#[from] facegate_embed::EmbedError),
    #[error(transparent)]
    Gallery(#[from] facegate_gallery::GalleryError),

    #[error(transparent)]
    Video(#[from] facegate_video::VideoError),

    #[error("no face found in {source_name} (faces down to {min_face_size} px were searched for); use a photo where the face is clearly visible and at least {min_face_size} px wide")]
    NoFace {
        source_name: String,
        min_face_size: u32,
    },

    #[error("{source_name} shows {count} faces; enrolling needs exactly one. Crop the photo, or pass --largest to use the largest face")]
    SeveralFaces { source_name: String, count: usize },

    #[error("the face in {source_name} is {size_px} px wide, smaller than the minimum of {min_face_size} px; use a closer or larger photo, or lower --min-face-size")]
    FaceTooSmall {
        source_name: String,
        size_px: u32,
        min_face_size: u32,
    },

    #[error("the face in {source_name} failed the {level} quality gate: {}. Use a better photo, or pass --quality off to store it anyway", reasons.join("; "))]
    PoorQuality {
        source_name: String,
        level: &'static str,
        reasons: Vec<String>,
        report: Box<crate::quality::QualityReport>,
    },

    #[error("the face in {source_name} did not pass the liveness check (score {score:.2}, needs {threshold:.2}): it may be a photo of a photo or of a screen. Use a live capture of the person")]
    NotLive {
        source_name: String,
        score: f32,
        threshold: f32,
    },

    #[error("the face in {source_name} does not match {person}'s enrolled faces (distance {distance:.3}, threshold {threshold:.3}); adding a face that does not match the person needs the admin role")]
    FaceMismatch {
        source_name: String,
        person: String,
        distance: f32,
        threshold: f32,
    },

    #[error("{person} already has enrolled faces, and this deployment lets only administrators add faces to a person who has some")]
    AddFacesForbidden { person: String },

    #[error(transparent)]
    Liveness(#[from] facegate_liveness::LivenessError),

    #[error(
        "no default home directory is known on this system; pass --home DIR or set FACEGATE_HOME"
    )]
    NoHome,

    #[error("facegate's config {path} could not be read or written: {message}. Fix or delete the file (it only holds calibrated thresholds)")]
    Config {
        path: std::path::PathBuf,
        message: String,
    },

    #[error("evaluation input {path}: {message}")]
    EvalInput {
        path: std::path::PathBuf,
        message: String,
    },
}

impl Error {
    /// A stable machine-readable code for `--json` output and the API.
    pub fn code(&self) -> &'static str {
        use facegate_gallery::GalleryError as G;
        use facegate_image::ImageError as I;
        match self {
            Error::Image(I::TooLarge { .. }) => "image_too_large",
            Error::Image(I::UnsupportedFormat { .. }) => "unsupported_format",
            Error::Image(I::Empty { .. } | I::Corrupt { .. }) => "corrupt_image",
            Error::Image(I::Read { .. }) => "unreadable_file",
            Error::Model(_)
            | Error::Runtime(_)
            | Error::Detect(_)
            | Error::Embed(_)
            | Error::Liveness(_) => "model_error",
            Error::Gallery(G::UnknownPerson { .. }) => "unknown_person",
            Error::Gallery(G::Empty) => "empty_gallery",
            Error::Gallery(G::ModelMismatch { .. } | G::DimensionMismatch { .. }) => {
                "model_mismatch"
            }
            Error::Gallery(G::InvalidName { .. }) => "invalid_name",
            Error::Gallery(G::PersonExists { .. }) => "person_exists",
            Error::Gallery(G::UnknownTemplate { .. }) => "unknown_template",
            Error::Gallery(G::InvalidEmbedding { .. }) => "invalid_embedding",
            Error::Gallery(G::StorageFull { .. }) => "storage_full",
            Error::Gallery(G::KeyMissing { .. }) => "key_missing",
            Error::Gallery(G::WrongKey { .. }) => "wrong_key",
            Error::Gallery(G::NotEncrypted) => "not_encrypted",
            Error::Gallery(
                G::InvalidKey { .. }
                | G::InvalidAuditKey { .. }
                | G::KeyFile { .. }
                | G::KeyFileExposed { .. },
            ) => "invalid_key",
            Error::Gallery(G::AuditKeyMismatch { .. }) => "audit_key_mismatch",
            Error::Gallery(G::TemplateTampered { .. }) => "template_tampered",
            Error::Gallery(g) if g.is_transient() => "gallery_unavailable",
            Error::Gallery(_) => "gallery_error",
            Error::Video(facegate_video::VideoError::NoSuchCamera { .. }) => "no_such_camera",
            Error::Video(facegate_video::VideoError::CameraBusy { .. }) => "camera_busy",
            Error::Video(facegate_video::VideoError::FfmpegMissing(_)) => "ffmpeg_missing",
            Error::Video(_) => "video_error",
            Error::NoFace { .. } => "no_face",
            Error::SeveralFaces { .. } => "several_faces",
            Error::FaceTooSmall { .. } => "face_too_small",
            Error::PoorQuality { .. } => "poor_quality",
            Error::NotLive { .. } => "not_live",
            Error::FaceMismatch { .. } => "face_mismatch",
            Error::AddFacesForbidden { .. } => "add_faces_forbidden",
            Error::NoHome => "no_home",
            Error::Config { .. } => "config_error",
            Error::EvalInput { .. } => "bad_eval_input",
        }
    }
}
