//! Request bodies: JSON (images as base64 or data URLs) or multipart/form-data (images as
//! files). Both become one [`Form`], so every route accepts either.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{FromRequest, Multipart, Request};
use axum::http::{header, StatusCode};
use base64::Engine as _;
use serde_json::Value;
use tokio::sync::OwnedSemaphorePermit;

use crate::error::ApiError;
use crate::state::SharedState;

/// One uploaded image, still encoded.
pub struct Upload {
    /// A name for messages: the file name, or `field` for JSON uploads.
    pub name: String,
    pub bytes: Vec<u8>,
    /// The share of the server's body budget the request holds, given back when the request's
    /// last image is dropped (see [`crate::Limits::max_body_bytes_in_flight`]).
    budget: Option<Arc<OwnedSemaphorePermit>>,
}

impl Upload {
    /// Decodes the image, refusing more than `max_pixels` before allocating them.
    pub fn decode(&self, max_pixels: u64) -> Result<facegate::image::LoadedImage, facegate::Error> {
        Ok(facegate::image::decode(
            &self.bytes,
            &self.name,
            max_pixels,
        )?)
    }
}

/// The fields of a request: text values and images, by field name.
#[derive(Default)]
pub struct Form {
    texts: BTreeMap<String, String>,
    files: BTreeMap<String, Vec<Upload>>,
}

/// Fields that hold images, in JSON as a base64 string or an array of them.
/// `file`, `source_image` and `target_image` are CompreFace's.
const IMAGE_FIELDS: [&str; 6] = [
    "image",
    "images",
    "reference_image",
    "file",
    "source_image",
    "target_image",
];

impl Form {
    /// Refuses fields the route does not know (a misspelt field should not be silently ignored).
    pub fn only(&self, allowed: &[&str]) -> Result<(), ApiError> {
        let unknown: Vec<&str> = self
            .texts
            .keys()
            .chain(self.files.keys())
            .map(String::as_str)
            .filter(|k| !allowed.contains(k))
            .collect();
        if unknown.is_empty() {
            Ok(())
        } else {
            Err(ApiError::bad_request(format!(
                "unknown field(s) {}; this route takes {}",
                unknown.join(", "),
                allowed.join(", ")
            )))
        }
    }

    pub fn text(&self, field: &str) -> Option<&str> {
        self.texts.get(field).map(String::as_str)
    }

    pub fn flag(&self, field: &str) -> Result<bool, ApiError> {
        match self.text(field) {
            None => Ok(false),
            Some("true" | "1" | "on") => Ok(true),
            Some("false" | "0" | "off") => Ok(false),
            Some(other) => Err(ApiError::bad_request(format!(
                "{field} must be true or false, not {other:?}"
            ))),
        }
    }

    pub fn number(&self, field: &str, default: usize, max: usize) -> Result<usize, ApiError> {
        match self.text(field) {
            None => Ok(default),
            Some(text) => text
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=max).contains(n))
                .ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "{field} must be a whole number from 1 to {max}, not {text:?}"
                    ))
                }),
        }
    }

    /// Every image sent under `field` (and, for `image`, under `images`).
    pub fn take_images(&mut self, field: &str) -> Vec<Upload> {
        let mut images = self.files.remove(field).unwrap_or_default();
        if field == "image" {
            images.extend(self.files.remove("images").unwrap_or_default());
        }
        images
    }

    /// Every image sent, whatever its field's name (for APIs that let clients name them).
    pub fn take_all_images(&mut self) -> Vec<Upload> {
        std::mem::take(&mut self.files)
            .into_values()
            .flatten()
            .collect()
    }

    /// Exactly one image under `field`, if any was sent.
    pub fn take_one_image(&mut self, field: &str) -> Result<Option<Upload>, ApiError> {
        let mut images = self.take_images(field);
        match images.len() {
            0 => Ok(None),
            1 => Ok(images.pop()),
            n => Err(ApiError::bad_request(format!(
                "{n} images were sent as {field}; this route takes one"
            ))),
        }
    }

    fn add_file(&mut self, field: &str, upload: Upload) {
        self.files
            .entry(field.to_string())
            .or_default()
            .push(upload);
    }

    /// Makes every image of the form hold `budget` until it is dropped.
    fn hold(&mut self, budget: OwnedSemaphorePermit) {
        let budget = Arc::new(budget);
        for upload in self.files.values_mut().flatten() {
            upload.budget = Some(budget.clone());
        }
    }

    fn count_files(&self) -> usize {
        self.files.values().map(Vec::len).sum()
    }

    fn from_json(bytes: &[u8]) -> Result<Form, ApiError> {
        let value: Value = serde_json::from_slice(bytes)
            .map_err(|err| ApiError::bad_request(format!("the body is not valid JSON: {err}")))?;
        let Value::Object(fields) = value else {
            return Err(ApiError::bad_request("the JSON body must be an object"));
        };
        let mut form = Form::default();
        for (key, value) in fields {
            if IMAGE_FIELDS.contains(&key.as_str()) {
                let (items, listed) = match value {
                    Value::Array(items) => (items, true),
                    other => (vec![other], false),
                };
                for (index, item) in items.into_iter().enumerate() {
                    let Value::String(text) = item else {
                        return Err(ApiError::bad_request(format!(
                            "{key} must hold base64-encoded image bytes (or a data: URL)"
                        )));
                    };
                    let name = if listed {
                        format!("{key}[{index}]")
                    } else {
                        key.clone()
                    };
                    let bytes = decode_base64(&text).ok_or_else(|| {
                        ApiError::bad_request(format!(
                            "{name} is not valid base64 (standard alphabet, or a data: URL)"
                        ))
                    })?;
                    form.add_file(
                        &key,
                        Upload {
                            name,
                            bytes,
                            budget: None,
                        },
                    );
                }
                continue;
            }
            let text = match value {
                Value::String(s) => s,
                Value::Bool(b) => b.to_string(),
                Value::Number(n) => n.to_string(),
                Value::Null => continue,
                _ => {
                    return Err(ApiError::bad_request(format!(
                        "{key} must be a string, number or boolean"
                    )))
                }
            };
            form.texts.insert(key, text);
        }
        Ok(form)
    }

    async fn from_multipart(mut multipart: Multipart, max_images: usize) -> Result<Form, ApiError> {
        let mut form = Form::default();
        let multipart_error = |err: axum::extract::multipart::MultipartError| {
            if err.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "payload_too_large",
                    err.body_text(),
                )
            } else {
                ApiError::bad_request(format!(
                    "the multipart body could not be read: {}",
                    err.body_text()
                ))
            }
        };
        while let Some(field) = multipart.next_field().await.map_err(multipart_error)? {
            let key = field.name().unwrap_or_default().to_string();
            let file_name = field.file_name().map(sanitize_file_name);
            let bytes = field.bytes().await.map_err(multipart_error)?;
            // An image field, or any part sent as a file (clients of compatible APIs name their
            // image fields as they like).
            if IMAGE_FIELDS.contains(&key.as_str()) || file_name.is_some() {
                if form.count_files() >= max_images {
                    return Err(too_many_images(max_images));
                }
                let name = file_name.unwrap_or_else(|| key.clone());
                form.add_file(
                    &key,
                    Upload {
                        name,
                        bytes: bytes.to_vec(),
                        budget: None,
                    },
                );
            } else {
                let text = String::from_utf8(bytes.to_vec()).map_err(|_| {
                    ApiError::bad_request(format!("the field {key} is not UTF-8 text"))
                })?;
                form.texts.insert(key, text);
            }
        }
        Ok(form)
    }
}

/// Beyond this, an oversized body is not drained: the connection is simply closed.
const DRAIN_CAP: usize = 64 << 20;

async fn drain(body: axum::body::Body, cap: usize) {
    use http_body_util::BodyExt as _;
    let mut body = body;
    let mut seen = 0usize;
    while let Some(Ok(frame)) = body.frame().await {
        seen += frame.data_ref().map_or(0, |d| d.len());
        if seen > cap {
            break;
        }
    }
}

fn too_many_images(max: usize) -> ApiError {
    ApiError::bad_request(format!("at most {max} images can be sent in one request"))
}

/// Accepts plain base64 or a `data:image/...;base64,` URL (what a browser canvas gives).
fn decode_base64(text: &str) -> Option<Vec<u8>> {
    let payload = match text.strip_prefix("data:") {
        Some(rest) => rest.split_once(";base64,")?.1,
        None => text,
    };
    let compact: String = payload.chars().filter(|c| !c.is_whitespace()).collect();
    base64::engine::general_purpose::STANDARD
        .decode(compact.as_bytes())
        .ok()
}

/// File names end up in messages and logs: keep them short and printable.
fn sanitize_file_name(name: &str) -> String {
    let base = name.rsplit(['/', '\\']).next().unwrap_or(name);
    base.chars().filter(|c| !c.is_control()).take(80).collect()
}

impl FromRequest<SharedState> for Form {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &SharedState) -> Result<Form, ApiError> {
        let limit = state.limits.max_body_bytes;
        let content_type = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase();
        let declared = request
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        if declared.is_some_and(|n| n > limit) {
            // Read and drop what the client is sending, so that it gets to read the 413
            // instead of a reset connection; memory stays constant.
            drain(request.into_body(), DRAIN_CAP).await;
            return Err(ApiError::payload_too_large(limit));
        }
        let json = content_type.starts_with("application/json");
        // Plain HTML-style forms carry text fields only (DeepStack's clients send them for
        // calls without images).
        let url_encoded = content_type.starts_with("application/x-www-form-urlencoded");
        if !json && !url_encoded && !content_type.starts_with("multipart/form-data") {
            return Err(unsupported_media_type());
        }
        // The body is read into memory: first a share of the server's budget for bodies in
        // flight, as much as the client declares (the whole limit when it does not say).
        let Some(budget) = admit_body(state, declared.unwrap_or(limit).min(limit)).await else {
            drain(request.into_body(), DRAIN_CAP).await;
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "overloaded",
                "the server is receiving too many request bodies at once; retry after the time in Retry-After",
            )
            .retry_after(1));
        };
        let mut form = if url_encoded {
            let bytes = axum::body::to_bytes(request.into_body(), limit)
                .await
                .map_err(|_| ApiError::payload_too_large(limit))?;
            let mut form = Form::default();
            for (key, value) in form_urlencoded::parse(&bytes) {
                form.texts.insert(key.into_owned(), value.into_owned());
            }
            form
        } else if json {
            let bytes = axum::body::to_bytes(request.into_body(), limit)
                .await
                .map_err(|_| ApiError::payload_too_large(limit))?;
            let form = Form::from_json(&bytes)?;
            if form.count_files() > state.limits.max_images {
                return Err(too_many_images(state.limits.max_images));
            }
            form
        } else {
            let multipart = Multipart::from_request(request, state)
                .await
                .map_err(|err| ApiError::bad_request(err.body_text()))?;
            Form::from_multipart(multipart, state.limits.max_images).await?
        };
        form.hold(budget);
        Ok(form)
    }
}

/// A share of the body budget for `bytes` (in KiB), waiting as long as a request may wait for
/// an inference slot; `None` when it did not come in time.
async fn admit_body(state: &SharedState, bytes: usize) -> Option<OwnedSemaphorePermit> {
    let kib = bytes
        .min(state.limits.max_body_bytes_in_flight)
        .div_ceil(1024)
        .clamp(1, u32::MAX as usize) as u32;
    match state.body_budget.clone().try_acquire_many_owned(kib) {
        Ok(permit) => Some(permit),
        Err(_) => tokio::time::timeout(
            state.limits.queue_wait,
            state.body_budget.clone().acquire_many_owned(kib),
        )
        .await
        .ok()
        .and_then(Result::ok),
    }
}

fn unsupported_media_type() -> ApiError {
    ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        "send the request as application/json (images base64-encoded) or multipart/form-data (images as files)",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_images_may_be_base64_or_data_urls() {
        let form = Form::from_json(
            br#"{"person": "ann", "image": "data:image/jpeg;base64,AQID", "images": ["BAUG", "Bw=="], "top_k": 3, "all_faces": true}"#,
        )
        .unwrap();
        let mut form = form;
        assert_eq!(form.text("person"), Some("ann"));
        assert_eq!(form.number("top_k", 5, 10).unwrap(), 3);
        assert!(form.flag("all_faces").unwrap());
        let images = form.take_images("image");
        let bytes: Vec<Vec<u8>> = images.into_iter().map(|u| u.bytes).collect();
        assert_eq!(bytes, vec![vec![1, 2, 3], vec![4, 5, 6], vec![7]]);
    }

    #[test]
    fn bad_json_fields_are_refused() {
        assert!(Form::from_json(b"[1]").is_err());
        assert!(Form::from_json(br#"{"image": "@@@"}"#).is_err());
        assert!(Form::from_json(br#"{"image": 5}"#).is_err());
        let form = Form::from_json(br#"{"persn": "x"}"#).unwrap();
        let err = form.only(&["person", "image"]).unwrap_err();
        assert_eq!(err.code, "bad_request");
        assert!(err.message.contains("persn"));
        let form = Form::from_json(br#"{"top_k": 0}"#).unwrap();
        assert!(form.number("top_k", 5, 10).is_err());
    }

    #[test]
    fn file_names_are_cut_to_their_base() {
        assert_eq!(sanitize_file_name("../../etc/passwd"), "passwd");
        assert_eq!(sanitize_file_name("C:\\x\\a\nb.jpg"), "ab.jpg");
    }
}
