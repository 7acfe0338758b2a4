//! The audit log, from the server's side: who asked (the API key's id) and what was decided.

use std::convert::Infallible;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use facegate::gallery::{Gallery, GalleryError, NewAuditEvent};

use crate::keys::Caller;

/// Who made a request, as the audit log names them: `key:<id>`, or `anonymous` when the
/// server runs without keys.
#[derive(Clone, Debug)]
pub struct Actor(pub String);

impl<S: Send + Sync> FromRequestParts<S> for Actor {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Actor, Infallible> {
        Ok(Actor(match parts.extensions.get::<Caller>() {
            Some(caller) => format!("key:{}", caller.key_id),
            None => "anonymous".to_string(),
        }))
    }
}

impl Actor {
    /// Appends `event(actor)` to the gallery's audit log.
    pub fn record(
        &self,
        gallery: &dyn Gallery,
        event: impl FnOnce(&str) -> NewAuditEvent,
    ) -> Result<(), GalleryError> {
        gallery.append_audit(&event(&self.0))
    }
}
