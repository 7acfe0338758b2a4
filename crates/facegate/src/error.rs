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

    #[error("{source_name} shows {count} faces; enrolling needs exactly one")]
    SeveralFaces { source_name: String, count: usize },

    #[error("the face in {source_name} is {size_px} px wide, smaller than the minimum of {min_face_size} px; use a closer or larger photo")]
    FaceTooSmall {
        source_name: String,
        size_px: u32,
        min_face_size: u32,
    },

    #[error("the face in {source_name} failed the {level} quality gate: {}. Use a better photo", reasons.join("; "))]
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

    #[error("liveness challenge: {0}")]
    Challenge(#[from] facegate_challenge::FrameError),

    #[error("liveness challenge: {message}")]
    ChallengeSteps { message: String },

    #[error("evaluation input {path}: {message}")]
    EvalInput {
        path: std::path::PathBuf,
        message: String,
    },
}

impl Error {
    /// What kind of failure this is: the stable code of `--json` output and the API.
    pub fn kind(&self) -> ErrorCode {
        use facegate_gallery::GalleryError as G;
        use facegate_image::ImageError as I;
        match self {
            Error::Image(I::TooLarge { .. }) => ErrorCode::ImageTooLarge,
            Error::Image(I::UnsupportedFormat { .. }) => ErrorCode::UnsupportedFormat,
            Error::Image(I::Empty { .. } | I::Corrupt { .. }) => ErrorCode::CorruptImage,
            Error::Image(I::Read { .. }) => ErrorCode::UnreadableFile,
            Error::Model(_)
            | Error::Runtime(_)
            | Error::Detect(_)
            | Error::Embed(_)
            | Error::Liveness(_) => ErrorCode::ModelError,
            Error::Gallery(G::UnknownPerson { .. }) => ErrorCode::UnknownPerson,
            Error::Gallery(G::Empty) => ErrorCode::EmptyGallery,
            Error::Gallery(G::ModelMismatch { .. } | G::DimensionMismatch { .. }) => {
                ErrorCode::ModelMismatch
            }
            Error::Gallery(G::InvalidName { .. }) => ErrorCode::InvalidName,
            Error::Gallery(G::PersonExists { .. }) => ErrorCode::PersonExists,
            Error::Gallery(G::UnknownTemplate { .. }) => ErrorCode::UnknownTemplate,
            Error::Gallery(G::InvalidEmbedding { .. }) => ErrorCode::InvalidEmbedding,
            Error::Gallery(G::StorageFull { .. }) => ErrorCode::StorageFull,
            Error::Gallery(G::KeyMissing { .. }) => ErrorCode::KeyMissing,
            Error::Gallery(G::WrongKey { .. }) => ErrorCode::WrongKey,
            Error::Gallery(G::NotEncrypted) => ErrorCode::NotEncrypted,
            Error::Gallery(
                G::InvalidKey { .. }
                | G::InvalidAuditKey { .. }
                | G::KeyFile { .. }
                | G::KeyFileExposed { .. },
            ) => ErrorCode::InvalidKey,
            Error::Gallery(G::AuditKeyMismatch { .. }) => ErrorCode::AuditKeyMismatch,
            Error::Gallery(G::TemplateTampered { .. }) => ErrorCode::TemplateTampered,
            Error::Gallery(g) if g.is_transient() => ErrorCode::GalleryUnavailable,
            Error::Gallery(_) => ErrorCode::GalleryError,
            Error::Video(facegate_video::VideoError::NoSuchCamera { .. }) => {
                ErrorCode::NoSuchCamera
            }
            Error::Video(facegate_video::VideoError::CameraBusy { .. }) => ErrorCode::CameraBusy,
            Error::Video(facegate_video::VideoError::FfmpegMissing(_)) => ErrorCode::FfmpegMissing,
            Error::Video(_) => ErrorCode::VideoError,
            Error::NoFace { .. } => ErrorCode::NoFace,
            Error::SeveralFaces { .. } => ErrorCode::SeveralFaces,
            Error::FaceTooSmall { .. } => ErrorCode::FaceTooSmall,
            Error::PoorQuality { .. } => ErrorCode::PoorQuality,
            Error::NotLive { .. } => ErrorCode::NotLive,
            Error::FaceMismatch { .. } => ErrorCode::FaceMismatch,
            Error::AddFacesForbidden { .. } => ErrorCode::AddFacesForbidden,
            Error::NoHome => ErrorCode::NoHome,
            Error::Config { .. } => ErrorCode::ConfigError,
            Error::EvalInput { .. } => ErrorCode::BadEvalInput,
            Error::Challenge(_) | Error::ChallengeSteps { .. } => ErrorCode::ChallengeInput,
        }
    }

    /// [`Self::kind`] as its stable text.
    pub fn code(&self) -> &'static str {
        self.kind().as_str()
    }
}

/// The stable codes of facegate's errors, one per kind of failure a caller can act on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    ImageTooLarge,
    UnsupportedFormat,
    CorruptImage,
    UnreadableFile,
    ModelError,
    UnknownPerson,
    EmptyGallery,
    InvalidName,
    PersonExists,
    UnknownTemplate,
    InvalidEmbedding,
    StorageFull,
    KeyMissing,
    WrongKey,
    NotEncrypted,
    InvalidKey,
    AuditKeyMismatch,
    TemplateTampered,
    GalleryUnavailable,
    GalleryError,
    NoSuchCamera,
    CameraBusy,
    FfmpegMissing,
    VideoError,
    NoFace,
    SeveralFaces,
    FaceTooSmall,
    PoorQuality,
    NotLive,
    FaceMismatch,
    AddFacesForbidden,
    NoHome,
    ConfigError,
    BadEvalInput,
    ModelMismatch,
    /// Frames a challenge cannot take: out of order, or after it ended.
    ChallengeInput,
}

impl ErrorCode {
    /// The code as `--json` output and the API write it.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::ImageTooLarge => "image_too_large",
            ErrorCode::UnsupportedFormat => "unsupported_format",
            ErrorCode::CorruptImage => "corrupt_image",
            ErrorCode::UnreadableFile => "unreadable_file",
            ErrorCode::ModelError => "model_error",
            ErrorCode::UnknownPerson => "unknown_person",
            ErrorCode::EmptyGallery => "empty_gallery",
            ErrorCode::InvalidName => "invalid_name",
            ErrorCode::PersonExists => "person_exists",
            ErrorCode::UnknownTemplate => "unknown_template",
            ErrorCode::InvalidEmbedding => "invalid_embedding",
            ErrorCode::StorageFull => "storage_full",
            ErrorCode::KeyMissing => "key_missing",
            ErrorCode::WrongKey => "wrong_key",
            ErrorCode::NotEncrypted => "not_encrypted",
            ErrorCode::InvalidKey => "invalid_key",
            ErrorCode::AuditKeyMismatch => "audit_key_mismatch",
            ErrorCode::TemplateTampered => "template_tampered",
            ErrorCode::GalleryUnavailable => "gallery_unavailable",
            ErrorCode::GalleryError => "gallery_error",
            ErrorCode::NoSuchCamera => "no_such_camera",
            ErrorCode::CameraBusy => "camera_busy",
            ErrorCode::FfmpegMissing => "ffmpeg_missing",
            ErrorCode::VideoError => "video_error",
            ErrorCode::NoFace => "no_face",
            ErrorCode::SeveralFaces => "several_faces",
            ErrorCode::FaceTooSmall => "face_too_small",
            ErrorCode::PoorQuality => "poor_quality",
            ErrorCode::NotLive => "not_live",
            ErrorCode::FaceMismatch => "face_mismatch",
            ErrorCode::AddFacesForbidden => "add_faces_forbidden",
            ErrorCode::NoHome => "no_home",
            ErrorCode::ConfigError => "config_error",
            ErrorCode::BadEvalInput => "bad_eval_input",
            ErrorCode::ModelMismatch => "model_mismatch",
            ErrorCode::ChallengeInput => "challenge_input",
        }
    }
}
