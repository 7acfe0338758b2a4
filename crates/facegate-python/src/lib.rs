//! `facegate._facegate`: the native half of the `facegate` Python package.
//!
//! It is a thin layer over the library every front end uses: [`facegate::Engine`] for
//! detection and embeddings, [`facegate::service::FaceService`] for enroll, verify and identify
//! (audited as the CLI's are), the same gallery backends, keys and home folder. The Python
//! half (`python/facegate/__init__.py`) turns paths, bytes, numpy arrays and PIL images into
//! the three image forms this module takes, results into typed objects, and error codes into
//! exception classes.
//!
//! Every call that decodes, detects, embeds or touches the gallery releases the GIL, so Python
//! threads run side by side; the engine and the gallery are shared safely between them.
//! Results cross as JSON documents (the CLI's `--json` shapes), embeddings as raw float32.

use std::path::PathBuf;
use std::sync::Arc;

use facegate::gallery::{audit_chain, AuditKey, Gallery, GalleryLocation, TemplateKey};
use facegate::image::{LoadedImage, RgbImage};
use facegate::models::SilentObserver;
use facegate::service::{Actor, EnrollMode, FaceService, Verification};
use facegate::{ops, Engine, EngineOptions, Error, FacePolicy, Home, ModelChoice};
use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

pyo3::create_exception!(
    _facegate,
    NativeError,
    PyException,
    "An error from facegate's engine: args are (code, message), the code as the CLI's --json gives it."
);

/// A facegate error as a Python exception carrying its stable code.
fn raise(err: Error) -> PyErr {
    NativeError::new_err((err.code().to_string(), err.to_string()))
}

/// A refusal of the caller's input that facegate's engine would give the same code to.
fn refuse(code: &str, message: String) -> PyErr {
    NativeError::new_err((code.to_string(), message))
}

fn to_json<T: serde::Serialize>(value: &T) -> PyResult<String> {
    serde_json::to_string(value).map_err(|e| refuse("model_error", e.to_string()))
}

/// An image as the Python half passes it.
enum ImageInput {
    /// A file to read.
    Path(PathBuf),
    /// Encoded bytes (JPEG, PNG, WebP, BMP), with a name for messages.
    Encoded(Vec<u8>, String),
    /// Packed 8-bit RGB pixels, row by row.
    Rgb {
        pixels: Vec<u8>,
        width: u32,
        height: u32,
        name: String,
    },
}

impl ImageInput {
    /// `("path", str)`, `("encoded", bytes, name)` or `("rgb", bytes, width, height, name)`.
    fn extract(value: &Bound<'_, PyAny>) -> PyResult<ImageInput> {
        let kind: String = value.get_item(0)?.extract()?;
        match kind.as_str() {
            "path" => Ok(ImageInput::Path(value.get_item(1)?.extract()?)),
            "encoded" => Ok(ImageInput::Encoded(
                value.get_item(1)?.extract()?,
                value.get_item(2)?.extract()?,
            )),
            "rgb" => Ok(ImageInput::Rgb {
                pixels: value.get_item(1)?.extract()?,
                width: value.get_item(2)?.extract()?,
                height: value.get_item(3)?.extract()?,
                name: value.get_item(4)?.extract()?,
            }),
            other => Err(refuse(
                "unsupported_format",
                format!("unknown image form {other:?}"),
            )),
        }
    }

    /// Decodes (without the GIL) as the CLI would, under the engine's pixel limit.
    fn load(self, engine: &Engine) -> PyResult<LoadedImage> {
        let max_pixels = engine.options().max_pixels;
        match self {
            ImageInput::Path(path) => engine.load_image(&path).map_err(raise),
            ImageInput::Encoded(bytes, name) => {
                facegate::image::decode(&bytes, &name, max_pixels).map_err(|e| raise(e.into()))
            }
            ImageInput::Rgb {
                pixels,
                width,
                height,
                name,
            } => {
                let count = u64::from(width) * u64::from(height);
                if count > max_pixels {
                    return Err(raise(
                        facegate::image::ImageError::TooLarge {
                            source_name: name,
                            width,
                            height,
                            pixels: count,
                            limit: max_pixels,
                        }
                        .into(),
                    ));
                }
                let sha256 = facegate::image::sha256_hex(&pixels);
                let rgb = RgbImage::from_raw(width, height, pixels).ok_or_else(|| {
                    refuse(
                        "corrupt_image",
                        format!("{name}: the pixel buffer is not {width}x{height}x3 bytes"),
                    )
                })?;
                Ok(LoadedImage {
                    rgb,
                    sha256,
                    source_name: name,
                })
            }
        }
    }
}

/// The home folder: given, else `FACEGATE_HOME`, else the platform's folders (as the CLI).
fn home(explicit: Option<PathBuf>) -> PyResult<Home> {
    let explicit = explicit.or_else(|| std::env::var_os("FACEGATE_HOME").map(PathBuf::from));
    Home::resolve(explicit.as_deref()).map_err(raise)
}

/// The models, the detector and the thresholds: `facegate.Engine`'s native half.
#[pyclass(frozen, module = "facegate._facegate")]
struct NativeEngine {
    engine: Arc<Engine>,
    home: Home,
}

#[pymethods]
impl NativeEngine {
    /// Loads the engine (fetching and converting the models on first use). `model`: a name
    /// as for `--model`; `onnxruntime`: the ONNX Runtime library to load instead of fetching
    /// the pinned one.
    #[new]
    #[pyo3(signature = (model=None, home=None, threads=None, onnxruntime=None))]
    fn new(
        py: Python<'_>,
        model: Option<String>,
        home: Option<PathBuf>,
        threads: Option<usize>,
        onnxruntime: Option<PathBuf>,
    ) -> PyResult<NativeEngine> {
        let model = match model.or_else(|| std::env::var("FACEGATE_MODEL").ok()) {
            Some(name) => ModelChoice::parse(&name).map_err(|m| refuse("model_error", m))?,
            None => ModelChoice::default(),
        };
        let home = self::home(home)?;
        let options = EngineOptions {
            model,
            threads: threads.unwrap_or(0),
            onnxruntime_library: onnxruntime,
            ..EngineOptions::default()
        };
        let loaded = {
            let home = home.clone();
            py.allow_threads(move || Engine::load(&home, options, &SilentObserver))
        };
        Ok(NativeEngine {
            engine: Arc::new(loaded.map_err(raise)?),
            home,
        })
    }

    /// The model id templates are stored under.
    #[getter]
    fn model(&self) -> String {
        self.engine.model_id().to_string()
    }

    /// Every face, as `facegate detect --json` gives them: `{faces, quality, min_face_size}`.
    fn detect(&self, py: Python<'_>, image: &Bound<'_, PyAny>) -> PyResult<String> {
        let input = ImageInput::extract(image)?;
        let engine = &self.engine;
        let detection = py.allow_threads(|| {
            let image = input.load(engine)?;
            ops::detect(engine, &image).map_err(raise)
        })?;
        to_json(&detection)
    }

    /// The largest face's embedding (float32 bytes, unit length) and the face as JSON
    /// (`{face, faces_found, quality}`).
    fn embed<'py>(
        &self,
        py: Python<'py>,
        image: &Bound<'_, PyAny>,
    ) -> PyResult<(Bound<'py, PyBytes>, String)> {
        let input = ImageInput::extract(image)?;
        let engine = &self.engine;
        let (embedded, found) = py.allow_threads(|| {
            let image = input.load(engine)?;
            let (mut faces, found) = engine
                .embed_faces(&image, FacePolicy::Largest)
                .map_err(raise)?;
            Ok::<_, PyErr>((faces.remove(0), found))
        })?;
        let bytes: Vec<u8> = embedded
            .embedding
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let doc = serde_json::json!({
            "face": embedded.face,
            "faces_found": found,
            "quality": embedded.quality,
        });
        Ok((PyBytes::new(py, &bytes), to_json(&doc)?))
    }

    /// Two images, no gallery: `facegate compare --json`'s document.
    fn compare(
        &self,
        py: Python<'_>,
        a: &Bound<'_, PyAny>,
        b: &Bound<'_, PyAny>,
    ) -> PyResult<String> {
        let (a, b) = (ImageInput::extract(a)?, ImageInput::extract(b)?);
        let engine = &self.engine;
        let outcome = py.allow_threads(|| {
            let (a, b) = (a.load(engine)?, b.load(engine)?);
            ops::compare(engine, &a, &b).map_err(raise)
        })?;
        to_json(&outcome)
    }
}

/// A gallery opened with the CLI's keys: `facegate.Gallery`'s native half.
#[pyclass(frozen, module = "facegate._facegate")]
struct NativeGallery {
    gallery: Arc<dyn Gallery>,
    engine: Arc<Engine>,
    location: String,
}

/// The gallery's location: given, else `FACEGATE_GALLERY`, else `<home>/gallery.db`.
fn location(given: Option<String>, home: &Home) -> GalleryLocation {
    match given.or_else(|| std::env::var("FACEGATE_GALLERY").ok()) {
        Some(text) => GalleryLocation::parse(&text),
        None => GalleryLocation::Sqlite(home.default_gallery()),
    }
}

/// The template key: the file given, else `FACEGATE_KEY_FILE`, else `FACEGATE_KEY`.
fn template_key(key_file: Option<PathBuf>) -> Result<Option<Arc<TemplateKey>>, Error> {
    let file = key_file.or_else(|| std::env::var_os("FACEGATE_KEY_FILE").map(PathBuf::from));
    let key = match file {
        Some(path) => Some(TemplateKey::from_file(&path)?),
        None => TemplateKey::from_env()?,
    };
    Ok(key.map(Arc::new))
}

/// The audit key: `FACEGATE_AUDIT_KEY_FILE`, else `audit.key` in the data folder (created
/// where missing), as the CLI's.
fn audit_key(home: &Home) -> Result<Arc<AuditKey>, Error> {
    let path = std::env::var_os("FACEGATE_AUDIT_KEY_FILE")
        .map(PathBuf::from)
        .unwrap_or_else(|| home.default_audit_key());
    Ok(Arc::new(AuditKey::load_or_create(&path)?))
}

fn open_gallery(
    location: &GalleryLocation,
    home: &Home,
    key_file: Option<PathBuf>,
) -> Result<Arc<dyn Gallery>, Error> {
    let key = template_key(key_file)?;
    let audit = audit_key(home)?;
    let gallery = location.open_with_keys(key.clone(), Some(audit.clone()))?;
    audit_chain::check_key(gallery.as_ref(), &audit)?;
    facegate::gallery::seal::check_key(gallery.as_ref(), key.as_deref())?;
    Ok(gallery)
}

#[pymethods]
impl NativeGallery {
    #[new]
    #[pyo3(signature = (engine, location=None, key_file=None))]
    fn new(
        py: Python<'_>,
        engine: &NativeEngine,
        location: Option<String>,
        key_file: Option<PathBuf>,
    ) -> PyResult<NativeGallery> {
        let home = engine.home.clone();
        let location = self::location(location, &home);
        let gallery = py
            .allow_threads(|| open_gallery(&location, &home, key_file))
            .map_err(raise)?;
        Ok(NativeGallery {
            gallery,
            engine: engine.engine.clone(),
            location: location.to_string(),
        })
    }

    /// Where the gallery is (a PostgreSQL password shown as `***`).
    #[getter]
    fn location(&self) -> String {
        self.location.clone()
    }

    /// The model the gallery's templates were made with, as a `--model` name, if it has any.
    #[staticmethod]
    #[pyo3(signature = (location=None, home=None))]
    fn model_of(
        py: Python<'_>,
        location: Option<String>,
        home: Option<PathBuf>,
    ) -> PyResult<Option<String>> {
        let home = self::home(home)?;
        let location = self::location(location, &home);
        if !location.exists() {
            return Ok(None);
        }
        let id = py.allow_threads(|| {
            let gallery = location.open().map_err(|e| raise(e.into()))?;
            gallery.model_id().map_err(|e| raise(e.into()))
        })?;
        // As a name `--model` takes (`mobilefacenet+dlib`), not the stored id.
        Ok(id
            .as_deref()
            .and_then(ModelChoice::from_model_id)
            .map(|choice| {
                choice
                    .kinds()
                    .iter()
                    .map(|k| k.name())
                    .collect::<Vec<_>>()
                    .join("+")
            }))
    }

    /// Enrolls a person from photos (each must show exactly one face, unless `largest`): the
    /// person created or given more faces, audited as the CLI's enroll. JSON:
    /// `{person, created_person, added, duplicates, faces}`.
    #[pyo3(signature = (name, images, largest=false))]
    fn enroll(
        &self,
        py: Python<'_>,
        name: String,
        images: Vec<Bound<'_, PyAny>>,
        largest: bool,
    ) -> PyResult<String> {
        let inputs = images
            .iter()
            .map(ImageInput::extract)
            .collect::<PyResult<Vec<_>>>()?;
        let (engine, gallery) = (&self.engine, self.gallery.as_ref());
        let doc = py.allow_threads(|| {
            let mut prepared = Vec::with_capacity(inputs.len());
            for input in inputs {
                let image = input.load(engine)?;
                prepared.push(ops::prepare_template(engine, &image, largest).map_err(raise)?);
            }
            let service = FaceService::new(engine, gallery);
            let actor = Actor::local_user();
            let admitted = service
                .admit_enrollment(&actor, &name, EnrollMode::CreateOrAdd)
                .map_err(raise)?;
            let templates: Vec<_> = prepared.iter().map(|p| p.template.clone()).collect();
            let report = service
                .enroll(&actor, &admitted, &templates)
                .map_err(raise)?;
            let faces: Vec<_> = prepared
                .iter()
                .map(|p| serde_json::json!({"face": p.face, "quality": p.quality, "faces_found": p.faces_found}))
                .collect();
            Ok::<_, PyErr>(serde_json::json!({
                "person": admitted.person(),
                "created_person": report.created_person,
                "added": report.added,
                "duplicates": report.duplicates,
                "faces": faces,
                "model": engine.model_id(),
            }))
        })?;
        to_json(&doc)
    }

    /// 1:1, audited: `facegate verify --json`'s document.
    fn verify(&self, py: Python<'_>, name: String, image: &Bound<'_, PyAny>) -> PyResult<String> {
        let input = ImageInput::extract(image)?;
        let (engine, gallery) = (&self.engine, self.gallery.as_ref());
        let outcome = py.allow_threads(|| {
            let image = input.load(engine)?;
            FaceService::new(engine, gallery)
                .verify(&Actor::local_user(), &name, &image, false)
                .map_err(raise)
        })?;
        match outcome {
            Verification::Compared(outcome) => to_json(&outcome),
            // The local user sees who is enrolled: an unknown name is an error, not this.
            Verification::NoSuchPerson { person, .. } => Err(raise(
                facegate::gallery::GalleryError::UnknownPerson { name: person }.into(),
            )),
        }
    }

    /// 1:N, audited: `facegate identify --json`'s document.
    #[pyo3(signature = (image, top=1))]
    fn identify(&self, py: Python<'_>, image: &Bound<'_, PyAny>, top: usize) -> PyResult<String> {
        let input = ImageInput::extract(image)?;
        let (engine, gallery) = (&self.engine, self.gallery.as_ref());
        let outcome = py.allow_threads(|| {
            let image = input.load(engine)?;
            FaceService::new(engine, gallery)
                .identify(&Actor::local_user(), &image, top.max(1), false)
                .map_err(raise)
        })?;
        to_json(&outcome)
    }

    /// Everyone enrolled: `[{name, created, template_count}]`.
    fn people(&self, py: Python<'_>) -> PyResult<String> {
        let gallery = self.gallery.as_ref();
        let people = py
            .allow_threads(|| gallery.people())
            .map_err(|e| raise(e.into()))?;
        to_json(&people)
    }

    /// Erases a person and their templates (audited); how many templates went.
    fn forget(&self, py: Python<'_>, name: String) -> PyResult<usize> {
        let gallery = self.gallery.as_ref();
        py.allow_threads(|| facegate::service::forget(gallery, &Actor::local_user(), &name))
            .map_err(raise)
    }
}

/// The pinned ONNX Runtime version, for the Python half to check an installed wheel against.
#[pyfunction]
fn onnxruntime_version() -> &'static str {
    facegate::models::pins::ONNXRUNTIME_LINUX_X86_64.version
}

/// The ONNX Runtime library member inside the pinned wheel (`onnxruntime/capi/...`).
#[pyfunction]
fn onnxruntime_library_member() -> &'static str {
    facegate::models::pins::ONNXRUNTIME_LIBRARY.member
}

#[pymodule]
fn _facegate(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("NativeError", m.py().get_type::<NativeError>())?;
    m.add_class::<NativeEngine>()?;
    m.add_class::<NativeGallery>()?;
    m.add_function(wrap_pyfunction!(onnxruntime_version, m)?)?;
    m.add_function(wrap_pyfunction!(onnxruntime_library_member, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
