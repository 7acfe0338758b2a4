//! P-Net, the proposal network: fully convolutional over one pyramid level. Outputs
//! `(regression [1,4,H',W'], face logits [1,2,H',W'])`; [`face_probability`] turns the logits
//! into facenet-pytorch's softmax probability (done here rather than in the graph, where a
//! channel softmax leaves ONNX Runtime's blocked layout and cost more than the convolutions it
//! follows).

use facegate_models::torch_pt::StateDict;
use facegate_models::ModelError;
use facegate_nn::graph::Dim;
use facegate_nn::GraphBuilder;

use super::layers::{blocked, conv, prelu_map};

pub fn build(sd: &StateDict) -> Result<Vec<u8>, ModelError> {
    let mut g = GraphBuilder::new("mtcnn_pnet");
    let x = g.input(
        "image",
        &[
            Dim::Batch,
            Dim::Fixed(3),
            Dim::Dynamic("height"),
            Dim::Dynamic("width"),
        ],
    );
    let c1 = blocked(10);
    let x = conv(&mut g, sd, "conv1", &x, [10, 3, 3, 3], [c1, 3])?;
    let x = prelu_map(&mut g, sd, "prelu1", &x, 10, c1)?;
    let x = g.max_pool("pool1", &x, [2, 2], [2, 2], true);
    let x = conv(&mut g, sd, "conv2", &x, [16, 10, 3, 3], [16, c1])?;
    let x = prelu_map(&mut g, sd, "prelu2", &x, 16, 16)?;
    let x = conv(&mut g, sd, "conv3", &x, [32, 16, 3, 3], [32, 16])?;
    let x = prelu_map(&mut g, sd, "prelu3", &x, 32, 32)?;
    let a = conv(&mut g, sd, "conv4_1", &x, [2, 32, 1, 1], [2, 32])?;
    let b = conv(&mut g, sd, "conv4_2", &x, [4, 32, 1, 1], [4, 32])?;
    g.output("regression", &b);
    g.output("logits", &a);
    Ok(g.finish())
}

/// The face probability at each of the `plane` positions of P-Net's `[1, 2, H', W']` logits:
/// the second entry of a softmax over the two channels.
pub fn face_probability(logits: &[f32], plane: usize) -> Vec<f32> {
    let (background, face) = logits.split_at(plane);
    background
        .iter()
        .zip(face)
        .map(|(&b, &f)| {
            let top = b.max(f);
            let (eb, ef) = ((b - top).exp(), (f - top).exp());
            ef / (eb + ef)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_channel_softmax() {
        let p = face_probability(&[0.0, 1.0, -2.0, 1.0, 0.0, 3.0], 3);
        // Background logits 0, 1, -2; face logits 1, 0, 3.
        let expected = [
            1.0 / (1.0 + (-1.0f32).exp()),
            1.0 / (1.0 + 1.0f32.exp()),
            1.0 / (1.0 + (-5.0f32).exp()),
        ];
        for (a, b) in p.iter().zip(expected) {
            assert!((a - b).abs() < 1e-6, "{a} vs {b}");
        }
    }
}
