//! A real server on a loopback port per test (sharing one loaded engine), a blocking HTTP
//! client, and a checker that holds responses to the OpenAPI document.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use facegate::gallery::{Gallery, SqliteGallery};
use facegate::models::SilentObserver;
use facegate::{Engine, EngineOptions, Home};
use facegate_server::{ApiKeys, AppState, Limits, Role};
use serde_json::Value;

#[allow(unused_imports)] // each test binary uses some of the shared helpers
pub use facegate_testing::home;

#[allow(unused_imports)] // each test binary uses some of the shared helpers
pub use facegate_testing::{photo, photos_dir};

pub fn two_people_photo() -> Vec<u8> {
    std::fs::read(photos_dir().join(
        "train/jerry_seinfeld/httpwwweonlinecomresizewwweonlinecomeolimagesEntireSitersxjerryseinfeldjulialouisdreyfusjwjpg.jpg",
    ))
    .unwrap()
}

/// A PNG without a face (flat grey), or of noise (large, incompressible).
pub fn png(width: u32, height: u32, noise: bool) -> Vec<u8> {
    let mut state = 0x2545_f491_u32;
    let image = image::RgbImage::from_fn(width, height, |_, _| {
        if noise {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            let b = state.to_le_bytes();
            image::Rgb([b[0], b[1], b[2]])
        } else {
            image::Rgb([128, 128, 128])
        }
    });
    let mut bytes = Vec::new();
    image
        .write_to(
            &mut std::io::Cursor::new(&mut bytes),
            image::ImageFormat::Png,
        )
        .unwrap();
    bytes
}

pub fn b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

pub fn engine() -> Arc<Engine> {
    static ENGINE: OnceLock<Arc<Engine>> = OnceLock::new();
    ENGINE
        .get_or_init(|| {
            // Eyes on, as `facegate serve` loads them: challenges may ask for a blink.
            let options = EngineOptions {
                threads: 1,
                eyes: true,
                ..EngineOptions::default()
            };
            Arc::new(
                Engine::load(&Home::at(&home()), options, &SilentObserver).expect("load models"),
            )
        })
        .clone()
}

/// An engine that also checks liveness, as `facegate --liveness serve` runs.
pub fn liveness_engine() -> Arc<Engine> {
    static ENGINE: OnceLock<Arc<Engine>> = OnceLock::new();
    ENGINE
        .get_or_init(|| {
            let options = EngineOptions {
                threads: 1,
                liveness: true,
                ..EngineOptions::default()
            };
            Arc::new(
                Engine::load(&Home::at(&home()), options, &SilentObserver).expect("load models"),
            )
        })
        .clone()
}

pub struct Server {
    pub base: String,
    pub keys: Arc<ApiKeys>,
    pub gallery_path: PathBuf,
    pub dir: tempfile::TempDir,
    runtime: tokio::runtime::Runtime,
}

pub struct Reply {
    pub status: u16,
    pub json: Value,
    pub text: String,
    pub retry_after: Option<String>,
    pub content_type: String,
}

impl Reply {
    pub fn code(&self) -> &str {
        self.json["error"]["code"].as_str().unwrap_or("")
    }
}

pub enum Part<'a> {
    Text(&'a str, &'a str),
    File(&'a str, &'a str, Vec<u8>),
}

impl Server {
    pub fn start(limits: Limits) -> Server {
        Server::start_with(limits, true)
    }

    pub fn start_with(limits: Limits, auth: bool) -> Server {
        Server::start_inner(limits, auth, None)
    }

    /// No auth, with the given gallery in place of a SQLite one.
    pub fn start_with_gallery(limits: Limits, gallery: Arc<dyn Gallery>) -> Server {
        Server::start_inner(limits, false, Some(gallery))
    }

    /// With auth, gallery and keys at `location` (a PostgreSQL database, say).
    pub fn start_at(limits: Limits, location: &facegate::gallery::GalleryLocation) -> Server {
        let gallery = location.open().unwrap();
        let keys = Arc::new(ApiKeys::open(location).unwrap());
        Server::start_parts(limits, true, gallery, keys, tempfile::tempdir().unwrap())
    }

    fn start_inner(limits: Limits, auth: bool, gallery: Option<Arc<dyn Gallery>>) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let gallery_path = dir.path().join("gallery.db");
        let gallery =
            gallery.unwrap_or_else(|| Arc::new(SqliteGallery::open(&gallery_path).unwrap()));
        let keys = Arc::new(
            ApiKeys::open(&facegate::gallery::GalleryLocation::Sqlite(
                gallery_path.clone(),
            ))
            .unwrap(),
        );
        Server::start_parts(limits, auth, gallery, keys, dir)
    }

    /// No auth, a fresh SQLite gallery, and `engine` in place of the shared one.
    pub fn start_with_engine(limits: Limits, engine: Arc<Engine>) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let gallery_path = dir.path().join("gallery.db");
        let gallery: Arc<dyn Gallery> = Arc::new(SqliteGallery::open(&gallery_path).unwrap());
        let keys = Arc::new(
            ApiKeys::open(&facegate::gallery::GalleryLocation::Sqlite(
                gallery_path.clone(),
            ))
            .unwrap(),
        );
        Server::start_engine(limits, false, gallery, keys, dir, engine)
    }

    fn start_parts(
        limits: Limits,
        auth: bool,
        gallery: Arc<dyn Gallery>,
        keys: Arc<ApiKeys>,
        dir: tempfile::TempDir,
    ) -> Server {
        Server::start_engine(limits, auth, gallery, keys, dir, engine())
    }

    fn start_engine(
        limits: Limits,
        auth: bool,
        gallery: Arc<dyn Gallery>,
        keys: Arc<ApiKeys>,
        dir: tempfile::TempDir,
        engine: Arc<Engine>,
    ) -> Server {
        let gallery_path = dir.path().join("gallery.db");
        let state = AppState::new(engine, gallery, auth.then(|| keys.clone()), limits);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        runtime.spawn(async move {
            axum::serve(listener, facegate_server::router(state))
                .await
                .unwrap()
        });
        Server {
            base: format!("http://{addr}"),
            keys,
            gallery_path,
            dir,
            runtime,
        }
    }

    pub fn key(&self, role: Role) -> String {
        self.keys.create(role, "test").unwrap().key
    }

    fn agent() -> ureq::Agent {
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(120)))
            .build()
            .into()
    }

    fn reply(response: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Reply {
        let mut response = response.expect("HTTP request failed");
        let status = response.status().as_u16();
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let retry_after = header("retry-after");
        let content_type = header("content-type").unwrap_or_default();
        let text = response
            .body_mut()
            .with_config()
            .limit(50 << 20)
            .read_to_string()
            .unwrap();
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        Reply {
            status,
            json,
            text,
            retry_after,
            content_type,
        }
    }

    pub fn get(&self, path: &str, key: Option<&str>) -> Reply {
        let mut request = Self::agent().get(format!("{}{path}", self.base));
        if let Some(key) = key {
            request = request.header("Authorization", format!("Bearer {key}"));
        }
        Self::reply(request.call())
    }

    pub fn delete(&self, path: &str, key: Option<&str>) -> Reply {
        let mut request = Self::agent().delete(format!("{}{path}", self.base));
        if let Some(key) = key {
            request = request.header("Authorization", format!("Bearer {key}"));
        }
        Self::reply(request.call())
    }

    pub fn post_json(&self, path: &str, key: Option<&str>, body: &Value) -> Reply {
        let mut request = Self::agent().post(format!("{}{path}", self.base));
        if let Some(key) = key {
            request = request.header("Authorization", format!("Bearer {key}"));
        }
        Self::reply(request.send_json(body))
    }

    pub fn post_raw(
        &self,
        path: &str,
        key: Option<&str>,
        content_type: &str,
        body: Vec<u8>,
    ) -> Reply {
        let mut request = Self::agent()
            .post(format!("{}{path}", self.base))
            .header("Content-Type", content_type);
        if let Some(key) = key {
            request = request.header("Authorization", format!("Bearer {key}"));
        }
        Self::reply(request.send(&body[..]))
    }

    pub fn post_multipart(&self, path: &str, key: Option<&str>, parts: Vec<Part<'_>>) -> Reply {
        let boundary = "facegate-test-boundary-7d93";
        let mut body = Vec::new();
        for part in parts {
            body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
            match part {
                Part::Text(name, value) => {
                    body.extend_from_slice(
                        format!(
                            "Content-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
                        )
                        .as_bytes(),
                    );
                }
                Part::File(name, file_name, bytes) => {
                    body.extend_from_slice(
                        format!(
                            "Content-Disposition: form-data; name=\"{name}\"; filename=\"{file_name}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
                        )
                        .as_bytes(),
                    );
                    body.extend_from_slice(&bytes);
                    body.extend_from_slice(b"\r\n");
                }
            }
        }
        body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
        self.post_raw(
            path,
            key,
            &format!("multipart/form-data; boundary={boundary}"),
            body,
        )
    }

    pub fn openapi(&self) -> Value {
        let reply = self.get("/openapi.json", None);
        assert_eq!(reply.status, 200);
        reply.json
    }

    pub fn gallery_files_contain(&self, needle: &[u8]) -> bool {
        files_contain(self.dir.path(), needle)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // Let the runtime go without waiting on idle connections.
        let runtime = std::mem::replace(
            &mut self.runtime,
            tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap(),
        );
        runtime.shutdown_background();
    }
}

pub fn files_contain(dir: &Path, needle: &[u8]) -> bool {
    std::fs::read_dir(dir).unwrap().any(|entry| {
        let path = entry.unwrap().path();
        path.is_file()
            && std::fs::read(&path)
                .unwrap()
                .windows(needle.len())
                .any(|w| w == needle)
    })
}

/// Checks `reply` against the OpenAPI document: the status must be documented for the
/// operation, and a JSON body must match the documented schema (types, required fields, and
/// no undocumented fields).
pub fn assert_documented(doc: &Value, method: &str, route: &str, reply: &Reply) {
    let operation = &doc["paths"][route][method];
    assert!(
        operation.is_object(),
        "{method} {route} is not in the OpenAPI document"
    );
    let response = &operation["responses"][reply.status.to_string()];
    assert!(
        response.is_object(),
        "{method} {route} answered {} ({}), which the OpenAPI document does not list",
        reply.status,
        reply.text
    );
    if let Some(schema) = response["content"]["application/json"].get("schema") {
        if let Err(problem) = check_schema(doc, schema, &reply.json, "$") {
            panic!(
                "{method} {route} {}: body does not match the document: {problem}\n{}",
                reply.status, reply.text
            );
        }
    }
}

pub fn check_schema(doc: &Value, schema: &Value, value: &Value, at: &str) -> Result<(), String> {
    if let Some(reference) = schema["$ref"].as_str() {
        let name = reference
            .strip_prefix("#/components/schemas/")
            .ok_or_else(|| format!("unsupported $ref {reference}"))?;
        let target = &doc["components"]["schemas"][name];
        if target.is_null() {
            return Err(format!("{at}: $ref {reference} is not defined"));
        }
        return check_schema(doc, target, value, at);
    }
    for combinator in ["oneOf", "anyOf"] {
        if let Some(options) = schema[combinator].as_array() {
            let problems: Vec<String> = options
                .iter()
                .filter_map(|o| check_schema(doc, o, value, at).err())
                .collect();
            if problems.len() == options.len() {
                return Err(format!("{at}: matches none of {combinator}: {problems:?}"));
            }
            return Ok(());
        }
    }
    if let Some(all) = schema["allOf"].as_array() {
        for s in all {
            check_schema(doc, s, value, at)?;
        }
    }
    let types: Vec<&str> = match &schema["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    if !types.is_empty() {
        let actual = match value {
            Value::Null => "null",
            Value::Bool(_) => "boolean",
            Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
            Value::Number(_) => "number",
            Value::String(_) => "string",
            Value::Array(_) => "array",
            Value::Object(_) => "object",
        };
        let ok = types.contains(&actual) || (actual == "integer" && types.contains(&"number"));
        if !ok {
            return Err(format!("{at}: expected {types:?}, found {actual}"));
        }
    }
    if let Value::Object(fields) = value {
        let properties = schema["properties"].as_object();
        if let Some(required) = schema["required"].as_array() {
            for name in required.iter().filter_map(Value::as_str) {
                if !fields.contains_key(name) {
                    return Err(format!("{at}: required field {name} is missing"));
                }
            }
        }
        if let Some(properties) = properties {
            for (name, field) in fields {
                let Some(field_schema) = properties.get(name) else {
                    return Err(format!("{at}: field {name} is not documented"));
                };
                check_schema(doc, field_schema, field, &format!("{at}.{name}"))?;
            }
        }
    }
    if let (Value::Array(items), Some(item_schema)) = (value, schema.get("items")) {
        for (i, item) in items.iter().enumerate() {
            check_schema(doc, item_schema, item, &format!("{at}[{i}]"))?;
        }
    }
    Ok(())
}
