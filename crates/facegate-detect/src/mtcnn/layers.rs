//! Building blocks shared by the three MTCNN networks: PyTorch-layout layers whose weights come
//! from a facenet-pytorch state dict.
//!
//! ONNX Runtime runs these small networks fastest when every layer stays in its blocked
//! (NCHWc) convolution layout; a layer it cannot block costs two layout reorders. Hence a few
//! spellings below that compute the same function: channel counts padded to a multiple of 16
//! with zero filters, and the first dense layer written as a convolution over its whole input.

use facegate_models::torch_pt::StateDict;
use facegate_models::ModelError;
use facegate_nn::{GraphBuilder, Value};

/// ONNX Runtime's NCHWc block on AVX-512 machines; a multiple of the AVX2 block (8).
const CHANNEL_BLOCK: usize = 16;

/// `n` rounded up to a whole number of channel blocks.
pub fn blocked(n: usize) -> usize {
    n.div_ceil(CHANNEL_BLOCK) * CHANNEL_BLOCK
}

/// `nn.Conv2d(in, out, kernel)` with bias, stride 1, no padding, with zero filters added up to
/// `out_to` outputs and zero weights for inputs beyond the `in` real ones up to `in_to`
/// (`shape` is the real `[out, in, kh, kw]`). The extra output channels are exactly zero.
pub fn conv(
    g: &mut GraphBuilder,
    sd: &StateDict,
    name: &str,
    x: &Value,
    shape: [usize; 4],
    [out_to, in_to]: [usize; 2],
) -> Result<Value, ModelError> {
    let [out, inp, kh, kw] = shape;
    let weight = sd.tensor(&format!("{name}.weight"), &shape)?;
    let mut bias = sd.tensor(&format!("{name}.bias"), &shape[..1])?.data;
    let mut padded = vec![0.0; out_to * in_to * kh * kw];
    for o in 0..out {
        for i in 0..inp {
            let from = (o * inp + i) * kh * kw;
            let to = (o * in_to + i) * kh * kw;
            padded[to..to + kh * kw].copy_from_slice(&weight.data[from..from + kh * kw]);
        }
    }
    bias.resize(out_to, 0.0);
    let w = g.weight(&format!("{name}.weight"), &[out_to, in_to, kh, kw], padded);
    let b = g.weight(&format!("{name}.bias"), &[out_to], bias);
    Ok(g.conv(name, x, &w, Some(&b), [1, 1], [0, 0, 0, 0]))
}

/// `nn.PReLU(channels)` on an NCHW map of `padded_to` channels (the extra ones are zero, and
/// stay zero whatever their slope).
pub fn prelu_map(
    g: &mut GraphBuilder,
    sd: &StateDict,
    name: &str,
    x: &Value,
    channels: usize,
    padded_to: usize,
) -> Result<Value, ModelError> {
    let mut slope = sd.tensor(&format!("{name}.weight"), &[channels])?.data;
    slope.resize(padded_to, 0.0);
    Ok(g.prelu_channels(name, x, &slope))
}

/// `nn.PReLU(features)` on an `[N, features]` matrix.
pub fn prelu_vec(
    g: &mut GraphBuilder,
    sd: &StateDict,
    name: &str,
    x: &Value,
    features: usize,
) -> Result<Value, ModelError> {
    let slope = sd.tensor(&format!("{name}.weight"), &[features])?;
    let s = g.weight(&format!("{name}.weight"), &[features], slope.data);
    Ok(g.prelu(name, x, &s))
}

/// `nn.Linear(in, out)`.
pub fn linear(
    g: &mut GraphBuilder,
    sd: &StateDict,
    name: &str,
    x: &Value,
    out: usize,
    inp: usize,
) -> Result<Value, ModelError> {
    let weight = sd.tensor(&format!("{name}.weight"), &[out, inp])?;
    let bias = sd.tensor(&format!("{name}.bias"), &[out])?;
    let w = g.weight(&format!("{name}.weight"), &[out, inp], weight.data);
    let b = g.weight(&format!("{name}.bias"), &[out], bias.data);
    Ok(g.linear(name, x, &w, Some(&b)))
}

/// The first dense layer on an `[N, C, H, W]` map, as facenet-pytorch computes it: the map
/// flattened as `x.permute(0, 3, 2, 1)` (N, W, H, C), then `nn.Linear(C*H*W, out)`. Written as
/// one `H x W` convolution whose weights are the dense weights put back in (C, H, W) order, so
/// neither the permutation nor the flattening leaves the blocked layout. Returns `[N, out]`.
pub fn dense_over_map(
    g: &mut GraphBuilder,
    sd: &StateDict,
    name: &str,
    x: &Value,
    out: usize,
    [c, h, w]: [usize; 3],
) -> Result<Value, ModelError> {
    let dense = sd.tensor(&format!("{name}.weight"), &[out, w * h * c])?;
    let bias = sd.tensor(&format!("{name}.bias"), &[out])?;
    let mut kernel = vec![0.0; out * c * h * w];
    for o in 0..out {
        for (ci, hi, wi) in
            (0..c).flat_map(|ci| (0..h).flat_map(move |hi| (0..w).map(move |wi| (ci, hi, wi))))
        {
            kernel[((o * c + ci) * h + hi) * w + wi] =
                dense.data[o * w * h * c + (wi * h + hi) * c + ci];
        }
    }
    let k = g.weight(&format!("{name}.weight"), &[out, c, h, w], kernel);
    let b = g.weight(&format!("{name}.bias"), &[out], bias.data);
    let y = g.conv(name, x, &k, Some(&b), [1, 1], [0, 0, 0, 0]);
    Ok(g.flatten(&format!("{name}.flatten"), &y, 1))
}
