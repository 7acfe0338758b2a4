//! R-Net, the refinement network: scores and adjusts 24x24 candidate crops.
//! Outputs `(regression [N,4], probability [N,2])`.

use facegate_models::torch_pt::StateDict;
use facegate_models::ModelError;
use facegate_nn::graph::Dim;
use facegate_nn::GraphBuilder;

use super::layers::{blocked, conv, dense_over_map, linear, prelu_map, prelu_vec};

pub fn build(sd: &StateDict) -> Result<Vec<u8>, ModelError> {
    let mut g = GraphBuilder::new("mtcnn_rnet");
    let x = g.input(
        "image",
        &[Dim::Batch, Dim::Fixed(3), Dim::Fixed(24), Dim::Fixed(24)],
    );
    let c1 = blocked(28);
    let x = conv(&mut g, sd, "conv1", &x, [28, 3, 3, 3], [c1, 3])?;
    let x = prelu_map(&mut g, sd, "prelu1", &x, 28, c1)?;
    let x = g.max_pool("pool1", &x, [3, 3], [2, 2], true);
    let x = conv(&mut g, sd, "conv2", &x, [48, 28, 3, 3], [48, c1])?;
    let x = prelu_map(&mut g, sd, "prelu2", &x, 48, 48)?;
    let x = g.max_pool("pool2", &x, [3, 3], [2, 2], true);
    let x = conv(&mut g, sd, "conv3", &x, [64, 48, 2, 2], [64, 48])?;
    let x = prelu_map(&mut g, sd, "prelu3", &x, 64, 64)?;
    let x = dense_over_map(&mut g, sd, "dense4", &x, 128, [64, 3, 3])?;
    let x = prelu_vec(&mut g, sd, "prelu4", &x, 128)?;
    let a = linear(&mut g, sd, "dense5_1", &x, 2, 128)?;
    let a = g.softmax("softmax5_1", &a, 1);
    let b = linear(&mut g, sd, "dense5_2", &x, 4, 128)?;
    g.output("regression", &b);
    g.output("probability", &a);
    Ok(g.finish())
}
