//! ONNX Runtime, loaded at run time from the pinned `onnxruntime` wheel's shared library.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock, TryLockError};

use ort::environment::Environment;
use ort::session::builder::{GraphOptimizationLevel, SessionBuilder};
use ort::session::Session;
use ort::value::Tensor;

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("could not load ONNX Runtime from {path}: {message}. Run `facegate models fetch` to reinstall it")]
    Load { path: PathBuf, message: String },
    #[error("ONNX Runtime rejected the {network} network: {message}. The cached model may be damaged; run `facegate models fetch --force`")]
    Build { network: String, message: String },
    #[error("running the {network} network failed: {message}")]
    Run { network: String, message: String },
}

/// The process-wide ONNX Runtime. ONNX Runtime allows one environment per process, so the first
/// successful [`Runtime::load`] wins and later calls reuse it.
#[derive(Clone, Debug)]
pub struct Runtime {
    library: PathBuf,
}

static LOADED: OnceLock<(PathBuf, Environment)> = OnceLock::new();
static LOADING: Mutex<()> = Mutex::new(());

impl Runtime {
    pub fn load(library: &Path) -> Result<Runtime, RuntimeError> {
        let _guard = LOADING
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some((existing, _)) = LOADED.get() {
            return Ok(Runtime {
                library: existing.clone(),
            });
        }
        let load_error = |message: String| RuntimeError::Load {
            path: library.to_path_buf(),
            message,
        };
        let environment = ort::init_from(library).map_err(|e| load_error(e.to_string()))?;
        let environment = environment
            .with_name("facegate")
            .build()
            .map_err(|e| load_error(e.to_string()))?;
        // Sessions borrow the environment; it lives as long as the process.
        let _ = LOADED.set((library.to_path_buf(), environment));
        Ok(Runtime {
            library: library.to_path_buf(),
        })
    }

    pub fn library(&self) -> &Path {
        &self.library
    }

    /// Compiles an ONNX model into a runnable network. `threads` = 0 lets ONNX Runtime choose.
    pub fn network(
        &self,
        name: &str,
        onnx: &[u8],
        threads: usize,
    ) -> Result<Network, RuntimeError> {
        self.network_pool(name, onnx, threads, 1, InputShapes::Fixed)
    }

    /// Like [`Runtime::network`], with `replicas` sessions that can run at the same time:
    /// several inputs side by side, one per replica.
    pub fn network_pool(
        &self,
        name: &str,
        onnx: &[u8],
        threads: usize,
        replicas: usize,
        shapes: InputShapes,
    ) -> Result<Network, RuntimeError> {
        self.pool(
            name,
            replicas,
            |builder| builder.commit_from_memory(onnx),
            threads,
            shapes,
        )
    }

    /// Like [`Runtime::network_pool`], reading the model file directly: large models are not
    /// held in memory twice while ONNX Runtime loads them.
    pub fn network_pool_from_file(
        &self,
        name: &str,
        path: &Path,
        threads: usize,
        replicas: usize,
        shapes: InputShapes,
    ) -> Result<Network, RuntimeError> {
        self.pool(
            name,
            replicas,
            |builder| builder.commit_from_file(path),
            threads,
            shapes,
        )
    }

    fn pool(
        &self,
        name: &str,
        replicas: usize,
        commit: impl Fn(&mut SessionBuilder) -> ort::Result<Session>,
        threads: usize,
        shapes: InputShapes,
    ) -> Result<Network, RuntimeError> {
        let sessions = (0..replicas.max(1))
            .map(|_| self.session(name, &commit, threads, shapes).map(Mutex::new))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Network {
            name: name.to_string(),
            sessions,
            next: AtomicUsize::new(0),
        })
    }

    fn session(
        &self,
        name: &str,
        commit: &impl Fn(&mut SessionBuilder) -> ort::Result<Session>,
        threads: usize,
        shapes: InputShapes,
    ) -> Result<Session, RuntimeError> {
        let build_error = |message: String| RuntimeError::Build {
            network: name.to_string(),
            message,
        };
        let (_, environment) = LOADED
            .get()
            .ok_or_else(|| build_error("ONNX Runtime is not loaded".into()))?;
        let mut builder = Session::builder(environment)
            .map_err(|e| build_error(e.to_string()))?
            .with_optimization_level(GraphOptimizationLevel::Level3)
            .map_err(|e| build_error(e.to_string()))?;
        // Each network has its own thread pool; spinning pools steal cores from each other
        // (docs/PERFORMANCE.md, "Design measurements").
        builder = builder
            .with_intra_op_spinning(false)
            .map_err(|e| build_error(e.to_string()))?;
        if shapes == InputShapes::Varying {
            // A memory plan per input shape, and an arena sized to the largest input ever
            // seen, only pay off when shapes repeat; with a new shape on most calls they keep
            // growing (hundreds of MiB over a video stream). Plain allocations instead.
            builder = builder
                .with_memory_pattern(false)
                .map_err(|e| build_error(e.to_string()))?
                .with_execution_providers([ort::ep::CPU::default()
                    .with_arena_allocator(false)
                    .build()])
                .map_err(|e| build_error(e.to_string()))?;
        }
        if threads > 0 {
            builder = builder
                .with_intra_threads(threads)
                .map_err(|e| build_error(e.to_string()))?;
        }
        commit(&mut builder).map_err(|e| build_error(e.to_string()))
    }
}

/// Whether a network's input shapes repeat from call to call (a fixed-size face crop) or
/// change with most calls (a detector's image pyramid, a varying number of candidates): the
/// memory ONNX Runtime keeps between calls is planned accordingly.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InputShapes {
    Fixed,
    Varying,
}

/// How a network uses the cores: `replicas` sessions that can run at the same time, each with
/// `per_run` intra-op threads (0 = ONNX Runtime's default).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Threads {
    pub per_run: usize,
    pub replicas: usize,
}

impl From<usize> for Threads {
    /// One session with this many threads.
    fn from(per_run: usize) -> Threads {
        Threads {
            per_run,
            replicas: 1,
        }
    }
}

impl Threads {
    /// `replicas` sessions sharing the machine's cores (unless `per_run` is given).
    pub fn shared(per_run: usize, replicas: usize) -> Threads {
        let replicas = replicas.max(1);
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let per_run = match (per_run, replicas) {
            (0, 1) => 0,
            (0, r) => (cores / r).max(1),
            (n, _) => n,
        };
        Threads { per_run, replicas }
    }
}

/// One output tensor, copied out of ONNX Runtime.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorOutput {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// A compiled network: one or more sessions (replicas). A run takes a free replica, or waits
/// for one; ONNX Runtime parallelises inside each run.
pub struct Network {
    name: String,
    sessions: Vec<Mutex<Session>>,
    next: AtomicUsize,
}

impl std::fmt::Debug for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Network").field("name", &self.name).finish()
    }
}

impl Network {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// How many runs can proceed at once.
    pub fn replicas(&self) -> usize {
        self.sessions.len()
    }

    fn acquire(&self) -> MutexGuard<'_, Session> {
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let n = self.sessions.len();
        for i in 0..n {
            match self.sessions[(start + i) % n].try_lock() {
                Ok(guard) => return guard,
                Err(TryLockError::Poisoned(poisoned)) => return poisoned.into_inner(),
                Err(TryLockError::WouldBlock) => {}
            }
        }
        self.sessions[start % n]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Runs the network on one float input of the given shape, returning every output in
    /// the graph's output order.
    pub fn run(&self, shape: &[usize], data: Vec<f32>) -> Result<Vec<TensorOutput>, RuntimeError> {
        let run_error = |message: String| RuntimeError::Run {
            network: self.name.clone(),
            message,
        };
        let dims: Vec<i64> = shape.iter().map(|&d| d as i64).collect();
        let input = Tensor::from_array((dims, data)).map_err(|e| run_error(e.to_string()))?;
        let mut session = self.acquire();
        let outputs = session
            .run(ort::inputs![input])
            .map_err(|e| run_error(e.to_string()))?;
        let mut result = Vec::with_capacity(outputs.len());
        for (_, value) in outputs.iter() {
            let (shape, data) = value
                .try_extract_tensor::<f32>()
                .map_err(|e| run_error(e.to_string()))?;
            result.push(TensorOutput {
                shape: shape.iter().map(|&d| d.max(0) as usize).collect(),
                data: data.to_vec(),
            });
        }
        Ok(result)
    }
}
