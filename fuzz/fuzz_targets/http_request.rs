//! Any bytes as the body of a request to each API route, as JSON, multipart or neither: an
//! HTTP answer that is not a server error, never a panic. Runs the real router (no network)
//! with a real engine and gallery. Needs the models as the `detect` target does.
#![no_main]

use std::sync::{Arc, OnceLock};

use axum::body::Body;
use axum::http::{header, Method, Request};
use facegate::gallery::{Gallery, SqliteGallery};
use facegate_server::{AppState, Limits};
use libfuzzer_sys::fuzz_target;
use tower::ServiceExt as _;

#[path = "support.rs"]
mod support;

const ROUTES: [(&str, &str); 7] = [
    ("POST", "/v1/verify"),
    ("POST", "/v1/identify"),
    ("POST", "/v1/detect"),
    ("POST", "/v1/people"),
    ("POST", "/v1/people/alice/faces"),
    ("GET", "/v1/people?limit=3"),
    ("DELETE", "/v1/people/alice/faces/1"),
];

const BOUNDARY: &str = "fuzzboundary";

struct Fixture {
    runtime: tokio::runtime::Runtime,
    router: axum::Router,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("facegate-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("scratch directory");
        let path = dir.join("http.db");
        let _ = std::fs::remove_file(&path);
        let gallery: Arc<dyn Gallery> = Arc::new(SqliteGallery::open(&path).expect("gallery"));
        let limits = Limits {
            max_pixels: 4_000_000,
            ..Limits::default()
        };
        let state = AppState::new(support::engine_arc(), gallery, None, limits);
        Fixture {
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime"),
            router: facegate_server::router(state),
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let f = fixture();
    let (method, uri) = ROUTES[usize::from(selector & 7) % ROUTES.len()];
    let mut request = Request::builder()
        .method(Method::from_bytes(method.as_bytes()).expect("method"))
        .uri(uri);
    request = match selector >> 3 & 3 {
        0 => request.header(header::CONTENT_TYPE, "application/json"),
        1 => request.header(
            header::CONTENT_TYPE,
            format!("multipart/form-data; boundary={BOUNDARY}"),
        ),
        2 => request.header(header::CONTENT_TYPE, "application/octet-stream"),
        _ => request,
    };
    let request = request.body(Body::from(body.to_vec())).expect("request");
    let response = f
        .runtime
        .block_on(f.router.clone().oneshot(request))
        .expect("the router always answers");
    assert!(
        !response.status().is_server_error() || response.status().as_u16() == 503,
        "{method} {uri}: {}",
        response.status()
    );
});
