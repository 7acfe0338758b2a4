//! P-Net, the proposal network: fully convolutional, run on every pyramid level.
//! Outputs `(regression [N,4,H',W'], probability [N,2,H',W'])`, channel 1 = face.

use facegate_models::torch_pt::StateDict;
use facegate_models::ModelError;
use facegate_nn::graph::Dim;
use facegate_nn::GraphBuilder;

use super::layers::{conv, prelu_map};

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
    let x = conv(&mut g, sd, "conv1", &x, [10, 3, 3, 3])?;
    let x = prelu_map(&mut g, sd, "prelu1", &x, 10)?;
    let x = g.max_pool("pool1", &x, [2, 2], [2, 2], true);
    let x = conv(&mut g, sd, "conv2", &x, [16, 10, 3, 3])?;
    let x = prelu_map(&mut g, sd, "prelu2", &x, 16)?;
    let x = conv(&mut g, sd, "conv3", &x, [32, 16, 3, 3])?;
    let x = prelu_map(&mut g, sd, "prelu3", &x, 32)?;
    let a = conv(&mut g, sd, "conv4_1", &x, [2, 32, 1, 1])?;
    let a = g.softmax("softmax4_1", &a, 1);
    let b = conv(&mut g, sd, "conv4_2", &x, [4, 32, 1, 1])?;
    g.output("regression", &b);
    g.output("probability", &a);
    Ok(g.finish())
}
