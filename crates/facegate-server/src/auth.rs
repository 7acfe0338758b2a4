//! Who may call what: every API route needs a key of a sufficient role; health checks, the web
//! page and the API description are public.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;

use crate::error::ApiError;
use crate::keys::{presented_id, Caller, Refusal, Role};
use crate::limits::too_many_failures;
use crate::state::SharedState;

/// The role a route needs, `None` for public routes. One table, so it can be read at a glance.
pub fn required_role(method: &Method, route: &str) -> Option<Role> {
    // The CompreFace-compatible API (`--compat compreface`) has a table of its own.
    if let Some(role) = crate::compat::compreface::required_role(method.as_str(), route) {
        return Some(role);
    }
    match (method.as_str(), route) {
        (_, "/healthz" | "/readyz" | "/openapi.json" | "/" | "/assets/{file}") => None,
        ("POST", "/v1/verify" | "/v1/detect") => Some(Role::Verify),
        ("POST", "/v1/liveness/challenges" | "/v1/liveness/challenges/{id}/frames") => {
            Some(Role::Verify)
        }
        ("POST", "/v1/identify") => Some(Role::Identify),
        ("GET", "/v1/people" | "/v1/people/{name}") => Some(Role::Identify),
        ("GET", "/metrics") => Some(Role::Admin),
        // The DeepStack-compatible face API (`--compat deepstack`).
        ("POST", "/v1/vision/face" | "/v1/vision/face/" | "/v1/vision/face/match")
        | ("POST", "/v1/vision/face/match/") => Some(Role::Verify),
        ("POST", "/v1/vision/face/recognize" | "/v1/vision/face/recognize/")
        | ("POST", "/v1/vision/face/list" | "/v1/vision/face/list/") => Some(Role::Identify),
        ("POST", "/v1/vision/face/register" | "/v1/vision/face/register/") => Some(Role::Enroll),
        ("POST", "/v1/vision/face/delete" | "/v1/vision/face/delete/") => Some(Role::Admin),
        ("POST", "/v1/people" | "/v1/people/{name}/faces") => Some(Role::Enroll),
        ("DELETE", "/v1/people/{name}" | "/v1/people/{name}/faces/{template_id}") => {
            Some(Role::Admin)
        }
        // Unknown routes fall through to 404; anything else new must be added above.
        _ => Some(Role::Admin),
    }
}

/// The key from `Authorization: Bearer KEY` or `X-API-Key: KEY`.
fn presented_key(request: &Request) -> Option<&str> {
    let headers = request.headers();
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let value = value.to_str().ok()?;
        return value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .map(str::trim);
    }
    headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

pub async fn authorize(
    State(state): State<SharedState>,
    mut request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let Some(route) = request
        .extensions()
        .get::<MatchedPath>()
        .map(|route| route.as_str().to_string())
    else {
        return Ok(next.run(request).await);
    };
    let Some(required) = required_role(request.method(), route.as_str()) else {
        return Ok(next.run(request).await);
    };
    let caller = match &state.keys {
        None => {
            no_auth_request_allowed(&request)?;
            Caller::anonymous()
        }
        Some(_) => {
            let Some(presented) = presented_key(&request) else {
                if key_in_form(route.as_str()) {
                    // The handler reads the key from the form and checks it with `authenticate`.
                    return Ok(next.run(request).await);
                }
                return Err(unauthorized("this route needs an API key: send `Authorization: Bearer KEY` (create one with `facegate keys create --role verify`)"));
            };
            let client = request
                .extensions()
                .get::<ConnectInfo<SocketAddr>>()
                .map(|info| info.0.ip());
            authenticate(&state, presented, client).await?
        }
    };
    permit(&state, &caller, required, request.method(), route.as_str())?;
    request.extensions_mut().insert(caller);
    Ok(next.run(request).await)
}

/// Routes of compatible APIs whose clients send the key as a form field (DeepStack's
/// `api_key`): without a key header, their handlers check the key themselves.
pub fn key_in_form(route: &str) -> bool {
    route.starts_with("/v1/vision/face")
}

/// Checks a presented key: the failure limiter first, then the key store (off the async
/// threads, within the key-check limit). The caller it names, or the refusal to answer with.
pub async fn authenticate(
    state: &SharedState,
    presented: &str,
    client: Option<IpAddr>,
) -> Result<Caller, ApiError> {
    let Some(keys) = &state.keys else {
        return Ok(Caller::anonymous());
    };
    let named_id = presented_id(presented);
    let waiting = state
        .failures
        .as_ref()
        .and_then(|f| f.waiting(client, named_id.as_deref()));
    let Ok(_slot) = state.key_checks.clone().try_acquire_owned() else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded",
            "the server is checking too many API keys at once; retry after the time in Retry-After",
        )
        .retry_after(1));
    };
    let keys = keys.clone();
    let presented = presented.to_string();
    let allow_slow_check = waiting.is_none();
    let outcome =
        tokio::task::spawn_blocking(move || keys.authenticate(&presented, allow_slow_check))
            .await
            .map_err(|err| ApiError::internal(format!("key check failed: {err}")))?
            .map_err(key_store_error)?;
    outcome.map_err(|refusal| refused(state, client, refusal, waiting))
}

/// Whether `caller` may call `method route`, which needs `required` (and, for a scoped key,
/// must be within its scope); also counts the request against the key's rate limit.
pub fn permit(
    state: &SharedState,
    caller: &Caller,
    required: Role,
    method: &Method,
    route: &str,
) -> Result<(), ApiError> {
    let what = format!("{method} {route}");
    if let Some(scope) = caller.scope.filter(|scope| !scope.covers(route)) {
        let usable = match scope {
            crate::keys::KeyScope::CompreFace(service) => format!(
                "only on the CompreFace-compatible {} routes (/api/v1/{}/...)",
                service.name(),
                service.name()
            ),
            crate::keys::KeyScope::Unknown => {
                "only by a newer facegate that knows its scope".to_string()
            }
        };
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("this key can be used {usable}, not for {what}"),
        ));
    }
    if !caller.role.allows(required) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "this key has the role {}, but {what} needs the role {} or higher",
                caller.role.name(),
                required.name()
            ),
        ));
    }
    if let Some(rate) = &state.rate {
        rate.check(&caller.key_id)?;
    }
    Ok(())
}

/// Without keys anyone who can reach the port has every right, so only requests made to a
/// loopback name and from the same origin are served: a web page elsewhere cannot drive the
/// API from a visitor's browser (cross-site requests), nor through a name of its own that
/// resolves to 127.0.0.1 (DNS rebinding).
fn no_auth_request_allowed(request: &Request) -> Result<(), ApiError> {
    let headers = request.headers();
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !is_loopback_host(host) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("this server runs without API keys and serves only requests to a loopback address (localhost, 127.0.0.1, [::1]), not to {host:?}"),
        ));
    }
    let cross_site = headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|site| site == "cross-site");
    let other_origin = headers
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|origin| {
            let authority = origin
                .strip_prefix("http://")
                .or_else(|| origin.strip_prefix("https://"));
            authority != Some(host)
        });
    if cross_site || other_origin {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "this server runs without API keys and serves no cross-site requests",
        ));
    }
    Ok(())
}

/// Whether a `Host` header names a loopback address: `localhost`, `127.x.y.z` or `[::1]`, with
/// or without a port.
fn is_loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    name.eq_ignore_ascii_case("localhost")
        || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The answer to a refused key: 401, or 429 once the client (or the key it names) has failed
/// more often than the limit allows.
fn refused(
    state: &SharedState,
    client: Option<IpAddr>,
    refusal: Refusal,
    waiting: Option<Duration>,
) -> ApiError {
    let real_key = match &refusal {
        Refusal::WrongSecret { id } | Refusal::SlowCheckRefused { id } => Some(id.as_str()),
        Refusal::Malformed | Refusal::Unknown | Refusal::Revoked => None,
    };
    let wait = state
        .failures
        .as_ref()
        .and_then(|f| f.record_failure(client, real_key))
        .or(waiting);
    if let Some(wait) = wait {
        return too_many_failures(wait);
    }
    match refusal {
        Refusal::Revoked => {
            unauthorized("this API key has been revoked; ask an administrator for a new one")
        }
        _ => unauthorized(
            "the API key is not valid; check that it was copied whole (keys start with `fgk_`)",
        ),
    }
}

fn unauthorized(message: &str) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
}

/// The key store failed: a gallery database that is down is the client's to retry (503);
/// anything else is for the operator's log, not the client.
fn key_store_error(err: crate::keys::KeyError) -> ApiError {
    match err {
        crate::keys::KeyError::Gallery(gallery) => facegate::Error::from(gallery).into(),
        other => {
            tracing::error!("API key check failed: {other}");
            ApiError::internal(
                "the server could not check the API key; the details are in the server's log",
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts_are_told_from_others() {
        for host in [
            "localhost",
            "localhost:8080",
            "127.0.0.1:80",
            "127.1.2.3",
            "[::1]:8080",
            "LOCALHOST",
        ] {
            assert!(is_loopback_host(host), "{host}");
        }
        for host in [
            "",
            "evil.example:8080",
            "localhost.evil.example",
            "10.0.0.1:8080",
            "[::2]:80",
            "0.0.0.0",
        ] {
            assert!(!is_loopback_host(host), "{host}");
        }
    }

    fn request(headers: &[(&str, &str)]) -> Request {
        let mut builder = Request::builder().uri("/v1/people");
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(axum::body::Body::empty()).unwrap()
    }

    #[test]
    fn without_keys_only_same_origin_loopback_requests_are_served() {
        let allowed = [
            request(&[("host", "127.0.0.1:8080")]),
            request(&[
                ("host", "localhost:8080"),
                ("origin", "http://localhost:8080"),
            ]),
            request(&[
                ("host", "127.0.0.1:8080"),
                ("sec-fetch-site", "same-origin"),
            ]),
        ];
        for r in &allowed {
            assert!(no_auth_request_allowed(r).is_ok(), "{:?}", r.headers());
        }
        let refused = [
            request(&[("host", "rebound.example:8080")]),
            request(&[
                ("host", "127.0.0.1:8080"),
                ("origin", "http://evil.example"),
            ]),
            request(&[
                ("host", "127.0.0.1:8080"),
                ("origin", "http://127.0.0.1:9999"),
            ]),
            request(&[("host", "127.0.0.1:8080"), ("sec-fetch-site", "cross-site")]),
            request(&[]),
        ];
        for r in &refused {
            assert_eq!(
                no_auth_request_allowed(r).unwrap_err().status,
                StatusCode::FORBIDDEN
            );
        }
    }
}
