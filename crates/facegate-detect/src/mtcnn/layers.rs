//! Building blocks shared by the three MTCNN networks: PyTorch-layout layers whose weights come
//! from a facenet-pytorch state dict.

use facegate_models::torch_pt::StateDict;
use facegate_models::ModelError;
use facegate_nn::{GraphBuilder, Value};

/// `nn.Conv2d(in, out, kernel)` with bias, stride 1, no padding.
pub fn conv(
    g: &mut GraphBuilder,
    sd: &StateDict,
    name: &str,
    x: &Value,
    shape: [usize; 4],
) -> Result<Value, ModelError> {
    let weight = sd.tensor(&format!("{name}.weight"), &shape)?;
    let bias = sd.tensor(&format!("{name}.bias"), &shape[..1])?;
    let w = g.weight(&format!("{name}.weight"), &shape, weight.data);
    let b = g.weight(&format!("{name}.bias"), &[shape[0]], bias.data);
    Ok(g.conv(name, x, &w, Some(&b), [1, 1], [0, 0, 0, 0]))
}

/// `nn.PReLU(channels)` on an NCHW map.
pub fn prelu_map(
    g: &mut GraphBuilder,
    sd: &StateDict,
    name: &str,
    x: &Value,
    channels: usize,
) -> Result<Value, ModelError> {
    let slope = sd.tensor(&format!("{name}.weight"), &[channels])?;
    let s = g.weight(&format!("{name}.weight"), &[channels, 1, 1], slope.data);
    Ok(g.prelu(name, x, &s))
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

/// facenet-pytorch flattens `x.permute(0, 3, 2, 1)` (N, W, H, C) into the first dense layer.
pub fn flatten_whc(g: &mut GraphBuilder, x: &Value) -> Value {
    let t = g.transpose("permute_nwhc", x, &[0, 3, 2, 1]);
    g.flatten("flatten", &t, 1)
}
