//! One error shape for every route: `{"error": {"code": "...", "message": "..."}}`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The body of every error response.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable machine-readable code, e.g. `no_face`, `unknown_person`, `unauthorized`.
    pub code: String,
    /// What happened and what to do, for people.
    pub message: String,
}

/// An error on its way to the client.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Seconds, sent as `Retry-After` (overload, rate limits).
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    pub fn payload_too_large(limit: usize) -> ApiError {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the request body is larger than the server's limit of {limit} bytes; send a smaller image (the server was started with --max-body-bytes {limit})"),
        )
    }

    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }

    pub fn retry_after(mut self, seconds: u64) -> ApiError {
        self.retry_after = Some(seconds.max(1));
        self
    }
}

impl From<facegate::Error> for ApiError {
    fn from(err: facegate::Error) -> ApiError {
        use facegate::ErrorCode as C;
        let kind = err.kind();
        let code = kind.as_str();
        // Exhaustive: a new kind of error has to be given its status here.
        let status = match kind {
            C::ImageTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            C::UnsupportedFormat => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            C::CorruptImage
            | C::NoFace
            | C::SeveralFaces
            | C::FaceTooSmall
            | C::InvalidName
            | C::PoorQuality
            | C::NotLive => StatusCode::UNPROCESSABLE_ENTITY,
            C::UnknownPerson | C::UnknownTemplate => StatusCode::NOT_FOUND,
            C::ChallengeInput => StatusCode::BAD_REQUEST,
            C::FaceMismatch | C::AddFacesForbidden => StatusCode::FORBIDDEN,
            C::PersonExists | C::ModelMismatch | C::EmptyGallery => StatusCode::CONFLICT,
            C::GalleryUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            C::UnreadableFile
            | C::ModelError
            | C::InvalidEmbedding
            | C::StorageFull
            | C::KeyMissing
            | C::WrongKey
            | C::NotEncrypted
            | C::InvalidKey
            | C::AuditKeyMismatch
            | C::TemplateTampered
            | C::GalleryError
            | C::NoSuchCamera
            | C::CameraBusy
            | C::FfmpegMissing
            | C::VideoError
            | C::NoHome
            | C::ConfigError
            | C::BadEvalInput => StatusCode::INTERNAL_SERVER_ERROR,
        };
        if kind == C::GalleryUnavailable {
            tracing::error!(code, "{err}");
            return ApiError::new(
                status,
                code,
                "the gallery database cannot be reached right now; try again shortly",
            )
            .retry_after(2);
        }
        if status.is_server_error() {
            // The details (file paths, database errors) are for the operator, not the client.
            tracing::error!(code, "{err}");
            return ApiError::new(
                status,
                code,
                format!("the server could not complete the request ({code}); the details are in the server's log"),
            );
        }
        ApiError::new(status, code, err.to_string())
    }
}

impl From<facegate::gallery::GalleryError> for ApiError {
    fn from(err: facegate::gallery::GalleryError) -> ApiError {
        facegate::Error::from(err).into()
    }
}

/// Malformed path segments and query strings are the client's to fix.
impl From<axum::extract::rejection::PathRejection> for ApiError {
    fn from(rejection: axum::extract::rejection::PathRejection) -> ApiError {
        ApiError::bad_request(rejection.body_text())
    }
}

impl From<axum::extract::rejection::QueryRejection> for ApiError {
    fn from(rejection: axum::extract::rejection::QueryRejection) -> ApiError {
        ApiError::bad_request(rejection.body_text())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::warn!(code = self.code, "{}", self.message);
        } else {
            tracing::debug!(code = self.code, "{}", self.message);
        }
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_string(),
                message: self.message,
            },
        };
        let mut response = (self.status, Json(body)).into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response.extensions_mut().insert(ErrorCode(self.code));
        response
    }
}

/// Left on error responses so the access log can name the code.
#[derive(Clone, Copy, Debug)]
pub struct ErrorCode(pub &'static str);
