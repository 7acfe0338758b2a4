//! dlib's face-recognition ResNet (Davis King, CC0) from `face-recognition-models==0.3.0`:
//! 150x150 chips in, 128-d out.

pub mod chip;
pub mod landmarks;
pub mod resnet;

use facegate_image::RgbImage;
use facegate_models::dlib_dat;
use facegate_models::{pins, FetchObserver, ModelError, ModelStore};
use facegate_nn::{Network, Runtime};

use crate::{batch_input, load_network, unit_vectors, EmbedError, Embedder};

/// Bump when the emitted graph changes, so cached ONNX files are rebuilt.
const GRAPH_REVISION: u32 = 1;
pub const INPUT_SIZE: u32 = 150;
pub const DIMENSION: usize = 128;
pub const MODEL_ID: &str = "dlib-resnet-v1";

/// dlib's own input normalisation: `(pixel - mean) / 256` per channel (the means are read from
/// the model file; these are their values, used to check it).
pub const INPUT_MEANS: [f32; 3] = [122.782, 117.001, 104.298];

pub struct DlibResnet {
    network: Network,
    means: [f32; 3],
    shape_predictor: landmarks::ShapePredictor,
}

/// dlib's chip geometry for this network.
pub const CHIP_PADDING: f64 = 0.25;

impl DlibResnet {
    pub fn load(
        store: &ModelStore,
        runtime: &Runtime,
        threads: impl Into<facegate_nn::Threads>,
        observer: &dyn FetchObserver,
    ) -> Result<DlibResnet, EmbedError> {
        let file = &pins::DLIB_RESNET;
        let artifact = format!(
            "dlib-resnet-v1-{}-r{GRAPH_REVISION}.onnx",
            file.package.version
        );
        let network = load_network(
            store,
            runtime,
            "dlib resnet",
            &artifact,
            file,
            threads.into(),
            observer,
            |dat| {
                let net = dlib_dat::read_resnet(dat)?;
                if net.input_means != INPUT_MEANS || net.input_size != INPUT_SIZE as usize {
                    return Err(ModelError::Format {
                        path: dat.to_path_buf(),
                        message: format!(
                            "unexpected input layer: means {:?}, size {}",
                            net.input_means, net.input_size
                        ),
                    });
                }
                resnet::build(&net, dat)
            },
        )?;
        let predictor = store.file(&pins::DLIB_SHAPE_PREDICTOR_5, observer)?;
        Ok(DlibResnet {
            network,
            means: INPUT_MEANS,
            shape_predictor: landmarks::ShapePredictor::new(dlib_dat::read_shape_predictor(
                &predictor,
            )?),
        })
    }

    /// dlib's input tensor for a chip: planar RGB, `(pixel - mean) / 256`.
    pub fn preprocess(&self, chip: &RgbImage) -> Vec<f32> {
        let plane = (chip.width() * chip.height()) as usize;
        let mut out = vec![0.0; 3 * plane];
        for (i, p) in chip.pixels().enumerate() {
            for c in 0..3 {
                out[c * plane + i] = (f32::from(p.0[c]) - self.means[c]) / 256.0;
            }
        }
        out
    }

    /// The raw (not normalised) descriptors, as dlib returns them.
    pub fn descriptors(&self, chips: &[RgbImage]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let size = INPUT_SIZE as usize;
        let input = batch_input(chips, INPUT_SIZE, |chip| self.preprocess(chip))?;
        let outputs = self.network.run(&[chips.len(), 3, size, size], input)?;
        Ok(outputs[0]
            .data
            .chunks(DIMENSION)
            .map(<[f32]>::to_vec)
            .collect())
    }
}

impl Embedder for DlibResnet {
    fn embed(&self, faces: &[RgbImage]) -> Result<Vec<Vec<f32>>, EmbedError> {
        if faces.is_empty() {
            return Ok(Vec::new());
        }
        Ok(unit_vectors(self.descriptors(faces)?))
    }

    fn input_size(&self) -> u32 {
        INPUT_SIZE
    }

    fn dimension(&self) -> usize {
        DIMENSION
    }

    fn model_id(&self) -> &str {
        MODEL_ID
    }

    fn alignment_id(&self) -> Option<&str> {
        Some("dlib-shape5-chip")
    }

    /// dlib's own preprocessing: its 5-point shape predictor (started from a dlib-style box
    /// placed from MTCNN's landmarks), then its 150x150 chip with padding 0.25.
    fn align(&self, image: &RgbImage, face: &facegate_face::Face) -> Option<RgbImage> {
        let rect = landmarks::rect_from_mtcnn(face.bbox, &face.landmarks);
        let points = self.shape_predictor.predict(image, rect);
        let details = chip::chip_details(&points, INPUT_SIZE, CHIP_PADDING);
        Some(chip::extract_chip(image, &details))
    }
}
