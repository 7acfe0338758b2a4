/// Writes `data` to a per-process scratch file (the model readers take paths) and returns it.
#[allow(dead_code)]
pub fn scratch_file(name: &str, data: &[u8]) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("facegate-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch directory");
    let path = dir.join(name);
    std::fs::write(&path, data).expect("scratch file");
    path
}

/// The engine the API and `facegate detect` use, loaded once per fuzzing process from the
/// model cache the tests fill (`target/facegate-test-home`) or `FACEGATE_FUZZ_HOME`.
#[allow(dead_code)]
pub fn engine_arc() -> std::sync::Arc<facegate::Engine> {
    static ENGINE: std::sync::OnceLock<std::sync::Arc<facegate::Engine>> =
        std::sync::OnceLock::new();
    ENGINE
        .get_or_init(|| {
            let home = std::env::var_os("FACEGATE_FUZZ_HOME")
                .map(std::path::PathBuf::from)
                .unwrap_or_else(|| {
                    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                        .join("../target/facegate-test-home")
                });
            let options = facegate::EngineOptions {
                threads: 1,
                ..facegate::EngineOptions::default()
            };
            let engine = facegate::Engine::load(
                &facegate::Home::at(&home),
                options,
                &facegate::models::SilentObserver,
            )
            .expect("load the models (run `cargo test` once to fetch them)");
            std::sync::Arc::new(engine)
        })
        .clone()
}

#[allow(dead_code)]
pub fn engine() -> &'static facegate::Engine {
    static ENGINE: std::sync::OnceLock<std::sync::Arc<facegate::Engine>> =
        std::sync::OnceLock::new();
    ENGINE.get_or_init(engine_arc)
}
