//! The HTTP API: routes, their handlers, and the OpenAPI document built from the same code.

mod health;
pub mod liveness;
mod people;
mod recognition;
pub mod types;

use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{ErrorBody, ErrorDetail};
use crate::state::SharedState;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "facegate",
        description = "One-shot face verification: enroll people from photos, verify (1:1) and identify (1:N) faces. Every /v1 route and /metrics need an API key (`Authorization: Bearer KEY`); errors are `{\"error\": {\"code\", \"message\"}}`.",
    ),
    components(schemas(ErrorBody, ErrorDetail)),
    modifiers(&SecurityAddon),
    tags(
        (name = "people", description = "Enrolled people and their face templates"),
        (name = "recognition", description = "Verify, identify, detect"),
        (name = "liveness", description = "Liveness by challenge: random head movements and blinks, answered with camera frames"),
        (name = "health", description = "Health, readiness, metrics"),
    )
)]
struct ApiDoc;

struct SecurityAddon;

impl Modify for SecurityAddon {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("An API key from `facegate keys create`"))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "api_key_header",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-API-Key"))),
        );
    }
}

/// Every API route, and the OpenAPI document describing exactly those routes.
pub fn routes() -> (axum::Router<SharedState>, utoipa::openapi::OpenApi) {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(people::list_people, people::create_person))
        .routes(routes!(people::get_person, people::delete_person))
        .routes(routes!(people::add_faces))
        .routes(routes!(people::delete_template))
        .routes(routes!(recognition::verify))
        .routes(routes!(recognition::identify))
        .routes(routes!(recognition::detect))
        .routes(routes!(liveness::create_challenge))
        .routes(routes!(liveness::challenge_frames))
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
        .routes(routes!(health::metrics))
        .split_for_parts()
}
