//! APIs of other face services, for clients written against them (`facegate serve --compat`).
//! Each speaks its original's routes, fields and answer shapes over facegate's application
//! service, so decisions, limits, roles and the audit log are the native API's.

pub mod compreface;
pub mod deepstack;

use axum::http::Method;
use utoipa::openapi::path::{HttpMethod, OperationBuilder};
use utoipa::openapi::security::SecurityRequirement;
use utoipa::openapi::{OpenApi, ResponseBuilder};

use crate::auth::required_role;

/// One route of a compatible API, for the OpenAPI document.
pub struct DocumentedRoute {
    pub method: Method,
    pub path: &'static str,
    pub summary: &'static str,
    /// The success status and what the answer holds.
    pub answer: (&'static str, &'static str),
}

/// Adds a compatible API's routes to the OpenAPI document, under a tag of their own: what each
/// takes and answers in the original's terms, the role it needs, how the key is sent.
pub fn document(
    openapi: &mut OpenApi,
    tag: &str,
    routes: &[DocumentedRoute],
    key: &str,
    errors: &str,
) {
    for route in routes {
        let role = required_role(&route.method, route.path)
            .map_or("none".to_string(), |r| r.name().to_string());
        let method = match route.method {
            Method::GET => HttpMethod::Get,
            Method::PUT => HttpMethod::Put,
            Method::DELETE => HttpMethod::Delete,
            _ => HttpMethod::Post,
        };
        let (status, answer) = route.answer;
        let mut operation = OperationBuilder::new()
            .tag(tag)
            .summary(Some(route.summary))
            .description(Some(format!(
                "{key} Needs a key of the role `{role}` or higher. Errors: {errors}"
            )))
            .response(status, ResponseBuilder::new().description(answer).build());
        if tag == compreface::TAG {
            operation = operation.security(SecurityRequirement::new(
                "api_key_header",
                Vec::<String>::new(),
            ));
        }
        openapi
            .paths
            .add_path_operation(route.path, vec![method], operation.build());
    }
}
