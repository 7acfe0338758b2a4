//! TF ops to ONNX operators.
//!
//! The graph stays in TensorFlow's NHWC layout throughout: convolutions and pools are wrapped
//! in Transposes to ONNX's NCHW and back, and ONNX Runtime's layout optimiser removes the
//! pairs that cancel. Everything else (broadcasting per-channel constants, Reshape/Flatten
//! order, reduction axes) then means exactly what it meant in TensorFlow.

use std::collections::HashMap;

use facegate_models::tfjs::{TfData, TfNode, TfjsGraph};
use facegate_nn::graph::{self, Dim, GraphBuilder, Value};

/// Every TF op [`convert`] understands.
pub const SUPPORTED_OPS: &[&str] = &[
    "Placeholder",
    "Const",
    "Identity",
    "Conv2D",
    "_FusedConv2D",
    "DepthwiseConv2dNative",
    "FusedDepthwiseConv2dNative",
    "MaxPool",
    "Add",
    "AddV2",
    "Sub",
    "Mul",
    "Maximum",
    "Minimum",
    "Abs",
    "Relu",
    "Sigmoid",
    "Softmax",
    "Rsqrt",
    "Square",
    "MatMul",
    "_FusedMatMul",
    "Reshape",
    "Squeeze",
    "Sum",
    "Mean",
    "Pad",
    "Prelu",
    "ConcatV2",
];

#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    #[error("node {node}: TF op {op} is not supported by facegate's TF.js converter (it supports {supported})")]
    UnsupportedOp {
        node: String,
        op: String,
        supported: String,
    },
    #[error("node {node} ({op}): {message}")]
    Unsupported {
        node: String,
        op: String,
        message: String,
    },
    #[error("node {node} reads {input}, which is not in the graph")]
    MissingInput { node: String, input: String },
    #[error("the graph has a cycle through {node}")]
    Cycle { node: String },
    #[error("the graph declares no outputs")]
    NoOutputs,
}

/// Converts `graph` into an ONNX model. Inputs keep their TF shapes (NHWC) with a free batch
/// dimension; outputs are named by their signature keys.
pub fn convert(graph: &TfjsGraph, name: &str) -> Result<Vec<u8>, ConvertError> {
    let mut outputs = graph.outputs.clone();
    if outputs.is_empty() {
        // No signature: every non-constant node nobody reads.
        outputs = graph
            .nodes
            .iter()
            .filter(|n| n.op != "Const" && graph.consumers(&n.name).next().is_none())
            .map(|n| (n.name.clone(), n.name.clone()))
            .collect();
    }
    if outputs.is_empty() {
        return Err(ConvertError::NoOutputs);
    }
    let mut converter = Converter {
        graph,
        nodes: graph.nodes.iter().map(|n| (n.name.as_str(), n)).collect(),
        builder: GraphBuilder::new(name),
        values: HashMap::new(),
        in_progress: Vec::new(),
    };
    for (key, node) in &outputs {
        let value = converter.value(node, "graph output")?;
        converter.builder.output(key, &value);
    }
    Ok(converter.builder.finish())
}

struct Converter<'a> {
    graph: &'a TfjsGraph,
    nodes: HashMap<&'a str, &'a TfNode>,
    builder: GraphBuilder,
    values: HashMap<String, Value>,
    in_progress: Vec<String>,
}

/// NHWC to NCHW and back.
const TO_NCHW: [usize; 4] = [0, 3, 1, 2];
const TO_NHWC: [usize; 4] = [0, 2, 3, 1];

impl<'a> Converter<'a> {
    /// The ONNX value of TF node `name`'s output, converting it (and what it reads) first.
    fn value(&mut self, name: &str, reader: &str) -> Result<Value, ConvertError> {
        if let Some(v) = self.values.get(name) {
            return Ok(v.clone());
        }
        let node = *self
            .nodes
            .get(name)
            .ok_or_else(|| ConvertError::MissingInput {
                node: reader.to_string(),
                input: name.to_string(),
            })?;
        if self.in_progress.iter().any(|n| n == name) {
            return Err(ConvertError::Cycle {
                node: name.to_string(),
            });
        }
        self.in_progress.push(name.to_string());
        let value = self.node(node)?;
        self.in_progress.pop();
        self.values.insert(name.to_string(), value.clone());
        Ok(value)
    }

    fn input(&mut self, node: &TfNode, index: usize) -> Result<Value, ConvertError> {
        let name = node
            .inputs
            .get(index)
            .ok_or_else(|| unsupported(node, format!("expects at least {} inputs", index + 1)))?;
        self.value(name, &node.name)
    }

    /// The float constant feeding `node` at `index`, with its shape.
    fn float_constant(
        &self,
        node: &TfNode,
        index: usize,
    ) -> Result<(Vec<usize>, &'a [f32]), ConvertError> {
        let name = node
            .inputs
            .get(index)
            .ok_or_else(|| unsupported(node, format!("expects at least {} inputs", index + 1)))?;
        match self.graph.constants.get(name) {
            Some(t) => match &t.data {
                TfData::F32(data) => Ok((t.shape.clone(), data)),
                TfData::I32(_) => Err(unsupported(node, format!("{name} is not a float tensor"))),
            },
            None => Err(unsupported(
                node,
                format!("input {name} must be a constant (weights computed in the graph are not supported)"),
            )),
        }
    }

    fn int_constant(&self, node: &TfNode, index: usize) -> Result<Vec<i64>, ConvertError> {
        let name = node
            .inputs
            .get(index)
            .ok_or_else(|| unsupported(node, format!("expects at least {} inputs", index + 1)))?;
        match self.graph.constants.get(name).map(|t| &t.data) {
            Some(TfData::I32(v)) => Ok(v.iter().map(|&x| i64::from(x)).collect()),
            _ => Err(unsupported(
                node,
                format!("input {name} must be an int32 constant"),
            )),
        }
    }

    fn node(&mut self, node: &TfNode) -> Result<Value, ConvertError> {
        let out = format!("tf:{}", node.name);
        let unary = |op: &str| Some(op.to_string());
        let elementwise_unary = match node.op.as_str() {
            "Abs" => unary("Abs"),
            "Relu" => unary("Relu"),
            "Sigmoid" => unary("Sigmoid"),
            _ => None,
        };
        if let Some(op) = elementwise_unary {
            let x = self.input(node, 0)?;
            return Ok(self.builder.op(&op, &out, &[&x], Vec::new()));
        }
        let binary = match node.op.as_str() {
            "Add" | "AddV2" => Some("Add"),
            "Sub" => Some("Sub"),
            "Mul" => Some("Mul"),
            "Maximum" => Some("Max"),
            "Minimum" => Some("Min"),
            _ => None,
        };
        if let Some(op) = binary {
            let a = self.input(node, 0)?;
            let b = self.input(node, 1)?;
            return Ok(self.builder.op(op, &out, &[&a, &b], Vec::new()));
        }
        match node.op.as_str() {
            "Placeholder" => {
                let dims = match node.attr("shape") {
                    Some(facegate_models::tfjs::TfAttr::Shape(dims)) if !dims.is_empty() => dims
                        .iter()
                        .enumerate()
                        .map(|(i, &d)| match (i, d) {
                            (0, _) => Dim::Batch,
                            (_, d) if d > 0 => Dim::Fixed(d),
                            _ => Dim::Dynamic("size"),
                        })
                        .collect::<Vec<_>>(),
                    _ => return Err(unsupported(node, "an input without a known shape".into())),
                };
                Ok(self.builder.input(&node.name, &dims))
            }
            "Const" => {
                let tensor = self
                    .graph
                    .constants
                    .get(&node.name)
                    .ok_or_else(|| unsupported(node, "constant without a value".into()))?;
                Ok(match &tensor.data {
                    TfData::F32(data) => self.builder.weight(&out, &tensor.shape, data.clone()),
                    TfData::I32(data) => {
                        let data: Vec<i64> = data.iter().map(|&v| i64::from(v)).collect();
                        self.builder.int64_constant(&out, &data)
                    }
                })
            }
            "Identity" => self.input(node, 0),
            "Conv2D" | "_FusedConv2D" => self.conv(node, &out, false),
            "DepthwiseConv2dNative" | "FusedDepthwiseConv2dNative" => self.conv(node, &out, true),
            "MaxPool" => {
                check_nhwc(node)?;
                let kernel = spatial(node, "ksize")?;
                let strides = spatial(node, "strides")?;
                let x = self.input(node, 0)?;
                let x = self.builder.transpose(&format!("{out}/nchw"), &x, &TO_NCHW);
                let y = self.builder.op(
                    "MaxPool",
                    &format!("{out}/pool"),
                    &[&x],
                    vec![
                        graph::ints("kernel_shape", &kernel),
                        graph::ints("strides", &strides),
                        graph::string("auto_pad", auto_pad(node)?),
                    ],
                );
                Ok(self.builder.transpose(&out, &y, &TO_NHWC))
            }
            "Softmax" => {
                let x = self.input(node, 0)?;
                Ok(self.builder.softmax(&out, &x, -1))
            }
            "Rsqrt" => {
                let x = self.input(node, 0)?;
                let root = self
                    .builder
                    .op("Sqrt", &format!("{out}/sqrt"), &[&x], Vec::new());
                Ok(self.builder.op("Reciprocal", &out, &[&root], Vec::new()))
            }
            "Square" => {
                let x = self.input(node, 0)?;
                Ok(self.builder.mul(&out, &x, &x))
            }
            "MatMul" | "_FusedMatMul" => self.matmul(node, &out),
            "Reshape" => {
                let shape = self.int_constant(node, 1)?;
                let x = self.input(node, 0)?;
                let shape = self.builder.int64_constant(&format!("{out}/shape"), &shape);
                Ok(self.builder.op("Reshape", &out, &[&x, &shape], Vec::new()))
            }
            "Squeeze" => {
                let x = self.input(node, 0)?;
                let axes = node.ints_attr("squeeze_dims").unwrap_or(&[]).to_vec();
                if axes.is_empty() {
                    return Ok(self.builder.op("Squeeze", &out, &[&x], Vec::new()));
                }
                let axes = self.builder.int64_constant(&format!("{out}/axes"), &axes);
                Ok(self.builder.op("Squeeze", &out, &[&x, &axes], Vec::new()))
            }
            "Sum" | "Mean" => {
                let axes = self.int_constant(node, 1)?;
                let x = self.input(node, 0)?;
                let keep = i64::from(node.bool_attr("keep_dims").unwrap_or(false));
                if node.op == "Sum" {
                    let axes = self.builder.int64_constant(&format!("{out}/axes"), &axes);
                    Ok(self.builder.op(
                        "ReduceSum",
                        &out,
                        &[&x, &axes],
                        vec![graph::int("keepdims", keep)],
                    ))
                } else {
                    // Opset 17's ReduceMean takes its axes as an attribute.
                    Ok(self.builder.op(
                        "ReduceMean",
                        &out,
                        &[&x],
                        vec![
                            graph::signed_ints("axes", &axes),
                            graph::int("keepdims", keep),
                        ],
                    ))
                }
            }
            "Pad" => {
                let paddings = self.int_constant(node, 1)?;
                // TF: [[before, after]; rank]; ONNX: all befores, then all afters.
                let pads: Vec<i64> = paddings
                    .iter()
                    .step_by(2)
                    .chain(paddings.iter().skip(1).step_by(2))
                    .copied()
                    .collect();
                let x = self.input(node, 0)?;
                let pads = self.builder.int64_constant(&format!("{out}/pads"), &pads);
                Ok(self.builder.op(
                    "Pad",
                    &out,
                    &[&x, &pads],
                    vec![graph::string("mode", "constant")],
                ))
            }
            "Prelu" => {
                let (shape, alpha) = self.float_constant(node, 1)?;
                let x = self.input(node, 0)?;
                let alpha = self
                    .builder
                    .weight(&format!("{out}/alpha"), &shape, alpha.to_vec());
                Ok(self.builder.op("PRelu", &out, &[&x, &alpha], Vec::new()))
            }
            "ConcatV2" => {
                let count = node.inputs.len().saturating_sub(1);
                if count == 0 {
                    return Err(unsupported(node, "no tensors to concatenate".into()));
                }
                let axis = match self.int_constant(node, count)?[..] {
                    [axis] => axis,
                    ref other => return Err(unsupported(node, format!("axis {other:?}"))),
                };
                let parts = (0..count)
                    .map(|i| self.input(node, i))
                    .collect::<Result<Vec<_>, _>>()?;
                let parts: Vec<&Value> = parts.iter().collect();
                Ok(self
                    .builder
                    .op("Concat", &out, &parts, vec![graph::int("axis", axis)]))
            }
            other => Err(ConvertError::UnsupportedOp {
                node: node.name.clone(),
                op: other.to_string(),
                supported: SUPPORTED_OPS.join(", "),
            }),
        }
    }

    fn conv(&mut self, node: &TfNode, out: &str, depthwise: bool) -> Result<Value, ConvertError> {
        check_nhwc(node)?;
        let strides = spatial(node, "strides")?;
        let dilations = match node.ints_attr("dilations") {
            Some(_) => spatial(node, "dilations")?,
            None => vec![1, 1],
        };
        let (fshape, filter) = self.float_constant(node, 1)?;
        let [kh, kw, cin, m] = fshape[..] else {
            return Err(unsupported(
                node,
                format!("filter shape {fshape:?} is not 4-D"),
            ));
        };
        // TF filters are [H, W, in, out] (depthwise: [H, W, channels, multiplier]); ONNX wants
        // [out, in / group, H, W], and a depthwise output channel is `c * multiplier + m`.
        let (out_channels, group, per_group) = if depthwise {
            (cin * m, cin, 1)
        } else {
            (m, 1, cin)
        };
        let mut weight = vec![0.0f32; filter.len()];
        for y in 0..kh {
            for x in 0..kw {
                for i in 0..cin {
                    for o in 0..m {
                        let src = ((y * kw + x) * cin + i) * m + o;
                        let (oc, ic) = if depthwise { (i * m + o, 0) } else { (o, i) };
                        weight[((oc * per_group + ic) * kh + y) * kw + x] = filter[src];
                    }
                }
            }
        }
        let weight = self.builder.weight(
            &format!("{out}/weight"),
            &[out_channels, per_group, kh, kw],
            weight,
        );
        let (bias, activation) = self.fused(node, out_channels)?;
        let x = self.input(node, 0)?;
        let x = self.builder.transpose(&format!("{out}/nchw"), &x, &TO_NCHW);
        let mut inputs = vec![&x, &weight];
        inputs.extend(bias.as_ref());
        let y = self.builder.op(
            "Conv",
            &format!("{out}/conv"),
            &inputs,
            vec![
                graph::ints("strides", &strides),
                graph::ints("dilations", &dilations),
                graph::int("group", group as i64),
                graph::string("auto_pad", auto_pad(node)?),
            ],
        );
        match activation {
            Activation::None => Ok(self.builder.transpose(out, &y, &TO_NHWC)),
            Activation::Relu => {
                let y = self.builder.transpose(&format!("{out}/nhwc"), &y, &TO_NHWC);
                Ok(self.builder.relu(out, &y))
            }
            Activation::Prelu(alpha) => {
                let y = self.builder.transpose(&format!("{out}/nhwc"), &y, &TO_NHWC);
                Ok(self.builder.op("PRelu", out, &[&y, &alpha], Vec::new()))
            }
        }
    }

    fn matmul(&mut self, node: &TfNode, out: &str) -> Result<Value, ConvertError> {
        let transpose_a = node.bool_attr("transpose_a").unwrap_or(false);
        let transpose_b = node.bool_attr("transpose_b").unwrap_or(false);
        let mut a = self.input(node, 0)?;
        if transpose_a {
            a = self.builder.transpose(&format!("{out}/a_t"), &a, &[1, 0]);
        }
        let mut columns = 0;
        let b = match self.float_constant(node, 1) {
            Ok((shape, data)) => {
                let [rows, cols] = shape[..] else {
                    return Err(unsupported(
                        node,
                        format!("weight shape {shape:?} is not 2-D"),
                    ));
                };
                columns = if transpose_b { rows } else { cols };
                if transpose_b {
                    let mut t = vec![0.0; data.len()];
                    for r in 0..rows {
                        for c in 0..cols {
                            t[c * rows + r] = data[r * cols + c];
                        }
                    }
                    self.builder
                        .weight(&format!("{out}/weight"), &[cols, rows], t)
                } else {
                    self.builder
                        .weight(&format!("{out}/weight"), &[rows, cols], data.to_vec())
                }
            }
            Err(_) => {
                let b = self.input(node, 1)?;
                if transpose_b {
                    self.builder.transpose(&format!("{out}/b_t"), &b, &[1, 0])
                } else {
                    b
                }
            }
        };
        let (bias, activation) = self.fused(node, columns)?;
        let relu = match activation {
            Activation::None => false,
            Activation::Relu => true,
            Activation::Prelu(_) => {
                return Err(unsupported(node, "a MatMul fused with Prelu".into()))
            }
        };
        let mut y = self.builder.matmul(&format!("{out}/matmul"), &a, &b);
        if let Some(bias) = bias {
            let name = if relu {
                format!("{out}/biased")
            } else {
                out.to_string()
            };
            y = self.builder.add(&name, &y, &bias);
        } else if !relu {
            y = self.builder.op("Identity", out, &[&y], Vec::new());
        }
        if relu {
            y = self.builder.relu(out, &y);
        }
        Ok(y)
    }

    /// The bias and activation a fused node applies after its main op. `channels` checks the
    /// bias length when it is known (0: do not check).
    fn fused(
        &mut self,
        node: &TfNode,
        channels: usize,
    ) -> Result<(Option<Value>, Activation), ConvertError> {
        let ops = node.strs_attr("fused_ops").unwrap_or(&[]);
        let is_fused = node.op.starts_with('_') || node.op.starts_with("Fused");
        if !is_fused {
            return Ok((None, Activation::None));
        }
        let ops: Vec<&str> = ops.iter().map(String::as_str).collect();
        let activation = match ops[..] {
            ["BiasAdd"] => Activation::None,
            ["BiasAdd", "Relu"] => Activation::Relu,
            ["BiasAdd", "Prelu"] => {
                // The slopes are the fused node's fourth input, shaped to broadcast over NHWC.
                let (shape, alpha) = self.float_constant(node, 3)?;
                Activation::Prelu(self.builder.weight(
                    &format!("tf:{}/alpha", node.name),
                    &shape,
                    alpha.to_vec(),
                ))
            }
            _ => {
                return Err(unsupported(
                    node,
                    format!("fused ops {ops:?} (supported: [BiasAdd], [BiasAdd, Relu] and [BiasAdd, Prelu])"),
                ))
            }
        };
        let (shape, bias) = self.float_constant(node, 2)?;
        if channels != 0 && bias.len() != channels {
            return Err(unsupported(
                node,
                format!("bias of shape {shape:?} for {channels} channels"),
            ));
        }
        let bias = self.builder.weight(
            &format!("tf:{}/bias", node.name),
            &[bias.len()],
            bias.to_vec(),
        );
        Ok((Some(bias), activation))
    }
}

/// What a fused node applies after its bias.
enum Activation {
    None,
    Relu,
    /// PReLU with these slopes.
    Prelu(Value),
}

fn unsupported(node: &TfNode, message: String) -> ConvertError {
    ConvertError::Unsupported {
        node: node.name.clone(),
        op: node.op.clone(),
        message,
    }
}

fn check_nhwc(node: &TfNode) -> Result<(), ConvertError> {
    match node.str_attr("data_format") {
        None | Some("NHWC") => Ok(()),
        Some(other) => Err(unsupported(
            node,
            format!("data_format {other} (only NHWC)"),
        )),
    }
}

/// The `[h, w]` of an NHWC `[1, h, w, 1]` attribute.
fn spatial(node: &TfNode, key: &str) -> Result<Vec<usize>, ConvertError> {
    match node.ints_attr(key) {
        Some(&[1, h, w, 1]) if h > 0 && w > 0 => Ok(vec![h as usize, w as usize]),
        other => Err(unsupported(node, format!("{key} {other:?}"))),
    }
}

/// TF's SAME padding puts the odd pixel at the end, as ONNX's SAME_UPPER does.
fn auto_pad(node: &TfNode) -> Result<&'static str, ConvertError> {
    match node.str_attr("padding") {
        Some("SAME") => Ok("SAME_UPPER"),
        Some("VALID") => Ok("VALID"),
        other => Err(unsupported(node, format!("padding {other:?}"))),
    }
}
