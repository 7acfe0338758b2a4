//! The audit log, from the server's side: who asked (the API key's id) and what was decided.

use std::convert::Infallible;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use facegate::service;

use crate::keys::{Caller, Role};

/// Who made a request: the API key (`key:<id>`, who may see who is enrolled when its role may
/// identify), or `anonymous` when the server runs without keys.
#[derive(Clone, Debug)]
pub struct Actor(pub service::Actor);

impl<S: Send + Sync> FromRequestParts<S> for Actor {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Actor, Infallible> {
        Ok(Actor(match parts.extensions.get::<Caller>() {
            Some(caller) => {
                service::Actor::api_key(&caller.key_id, caller.role.allows(Role::Identify))
            }
            None => service::Actor::anonymous(),
        }))
    }
}
