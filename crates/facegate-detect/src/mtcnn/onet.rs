//! O-Net, the output network: final score, box adjustment and five landmarks on 48x48 crops.
//! Outputs `(regression [N,4], landmarks [N,10] as x1..x5 y1..y5, probability [N,2])`.

use facegate_models::torch_pt::StateDict;
use facegate_models::ModelError;
use facegate_nn::graph::Dim;
use facegate_nn::GraphBuilder;

use super::layers::{conv, dense_over_map, linear, prelu_map, prelu_vec};

pub fn build(sd: &StateDict) -> Result<Vec<u8>, ModelError> {
    let mut g = GraphBuilder::new("mtcnn_onet");
    let x = g.input(
        "image",
        &[Dim::Batch, Dim::Fixed(3), Dim::Fixed(48), Dim::Fixed(48)],
    );
    let x = conv(&mut g, sd, "conv1", &x, [32, 3, 3, 3], [32, 3])?;
    let x = prelu_map(&mut g, sd, "prelu1", &x, 32, 32)?;
    let x = g.max_pool("pool1", &x, [3, 3], [2, 2], true);
    let x = conv(&mut g, sd, "conv2", &x, [64, 32, 3, 3], [64, 32])?;
    let x = prelu_map(&mut g, sd, "prelu2", &x, 64, 64)?;
    let x = g.max_pool("pool2", &x, [3, 3], [2, 2], true);
    let x = conv(&mut g, sd, "conv3", &x, [64, 64, 3, 3], [64, 64])?;
    let x = prelu_map(&mut g, sd, "prelu3", &x, 64, 64)?;
    let x = g.max_pool("pool3", &x, [2, 2], [2, 2], true);
    let x = conv(&mut g, sd, "conv4", &x, [128, 64, 2, 2], [128, 64])?;
    let x = prelu_map(&mut g, sd, "prelu4", &x, 128, 128)?;
    let x = dense_over_map(&mut g, sd, "dense5", &x, 256, [128, 3, 3])?;
    let x = prelu_vec(&mut g, sd, "prelu5", &x, 256)?;
    let a = linear(&mut g, sd, "dense6_1", &x, 2, 256)?;
    let a = g.softmax("softmax6_1", &a, 1);
    let b = linear(&mut g, sd, "dense6_2", &x, 4, 256)?;
    let c = linear(&mut g, sd, "dense6_3", &x, 10, 256)?;
    g.output("regression", &b);
    g.output("landmarks", &c);
    g.output("probability", &a);
    Ok(g.finish())
}
