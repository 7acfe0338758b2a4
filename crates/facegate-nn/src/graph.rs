//! Write a network as Rust code, get an ONNX model out.
//!
//! Each method adds one ONNX operator and returns the [`Value`] it produces, so a model file
//! reads top to bottom like the framework code it was ported from:
//!
//! ```
//! use facegate_nn::graph::{Dim, GraphBuilder};
//! let mut g = GraphBuilder::new("tiny");
//! let x = g.input("image", &[Dim::Batch, Dim::Fixed(3), Dim::Fixed(8), Dim::Fixed(8)]);
//! let w = g.weight("conv.weight", &[4, 3, 3, 3], vec![0.0; 4 * 3 * 3 * 3]);
//! let y = g.conv("conv", &x, &w, None, [1, 1], [0, 0, 0, 0]);
//! let y = g.relu("relu", &y);
//! g.output("features", &y);
//! let onnx_bytes = g.finish();
//! assert!(!onnx_bytes.is_empty());
//! ```

use prost::Message;

use crate::onnx_proto::{
    attribute_type, data_type, AttributeProto, Dimension, GraphProto, ModelProto, NodeProto,
    OperatorSetIdProto, TensorProto, TensorShapeProto, TypeProto, TypeProtoTensor, ValueInfoProto,
};

/// ONNX IR version 8 with opset 17: supported by every ONNX Runtime since 1.14.
const IR_VERSION: i64 = 8;
const OPSET: i64 = 17;

/// A tensor flowing through the graph, known by its name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Value(String);

impl Value {
    pub fn name(&self) -> &str {
        &self.0
    }
}

/// One dimension of a graph input.
#[derive(Clone, Copy, Debug)]
pub enum Dim {
    Fixed(i64),
    /// The batch dimension, left symbolic so any batch size runs.
    Batch,
    /// Any other dimension left open (e.g. image height for a fully convolutional net).
    Dynamic(&'static str),
}

/// Builds one ONNX model.
pub struct GraphBuilder {
    name: String,
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
    inputs: Vec<ValueInfoProto>,
    outputs: Vec<ValueInfoProto>,
}

impl GraphBuilder {
    pub fn new(name: &str) -> Self {
        GraphBuilder {
            name: name.to_string(),
            nodes: Vec::new(),
            initializers: Vec::new(),
            inputs: Vec::new(),
            outputs: Vec::new(),
        }
    }

    /// Declares a float input of the graph.
    pub fn input(&mut self, name: &str, dims: &[Dim]) -> Value {
        self.inputs.push(float_value_info(name, Some(dims)));
        Value(name.to_string())
    }

    /// Marks `value` as a graph output under `name`.
    pub fn output(&mut self, name: &str, value: &Value) {
        let renamed = self.op("Identity", name, &[value], Vec::new());
        debug_assert_eq!(renamed.0, name);
        self.outputs.push(float_value_info(name, None));
    }

    /// Adds a float weight (an initializer). `dims` must match `data.len()`.
    pub fn weight(&mut self, name: &str, dims: &[usize], data: Vec<f32>) -> Value {
        assert_eq!(
            dims.iter().product::<usize>(),
            data.len(),
            "weight {name}: shape {dims:?} does not match {} values",
            data.len()
        );
        let raw_data = data.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.initializers.push(TensorProto {
            dims: dims.iter().map(|&d| d as i64).collect(),
            data_type: data_type::FLOAT,
            name: name.to_string(),
            raw_data,
        });
        Value(name.to_string())
    }

    /// Adds an int64 constant (shapes, axes).
    pub fn int64_constant(&mut self, name: &str, data: &[i64]) -> Value {
        self.initializers.push(TensorProto {
            dims: vec![data.len() as i64],
            data_type: data_type::INT64,
            name: name.to_string(),
            raw_data: data.iter().flat_map(|v| v.to_le_bytes()).collect(),
        });
        Value(name.to_string())
    }

    /// Adds a node with a single output named after the node.
    pub fn op(
        &mut self,
        op_type: &str,
        name: &str,
        inputs: &[&Value],
        attributes: Vec<AttributeProto>,
    ) -> Value {
        self.nodes.push(NodeProto {
            input: inputs.iter().map(|v| v.0.clone()).collect(),
            output: vec![name.to_string()],
            name: name.to_string(),
            op_type: op_type.to_string(),
            attribute: attributes,
        });
        Value(name.to_string())
    }

    /// 2-D convolution, NCHW. `pads` is `[top, left, bottom, right]`; weight is OIHW.
    pub fn conv(
        &mut self,
        name: &str,
        x: &Value,
        weight: &Value,
        bias: Option<&Value>,
        strides: [usize; 2],
        pads: [usize; 4],
    ) -> Value {
        let mut inputs = vec![x, weight];
        inputs.extend(bias);
        self.op(
            "Conv",
            name,
            &inputs,
            vec![ints("strides", &strides), ints("pads", &pads)],
        )
    }

    pub fn relu(&mut self, name: &str, x: &Value) -> Value {
        self.op("Relu", name, &[x], Vec::new())
    }

    /// Parametric ReLU; `slope` must broadcast against `x` (shape `[C, 1, 1]` for NCHW maps).
    pub fn prelu(&mut self, name: &str, x: &Value, slope: &Value) -> Value {
        self.op("PRelu", name, &[x, slope], Vec::new())
    }

    /// Parametric ReLU with one slope per channel of an NCHW map, spelled so that ONNX Runtime
    /// keeps it in its blocked (NCHWc) convolution layout:
    /// `relu(x) + depthwise(relu(depthwise(x, -1)), -slope)`. Exactly one of the two terms is
    /// non-zero and each is a single exact multiply, so the result is bit-for-bit that of
    /// `PRelu`; but ONNX Runtime runs `PRelu` with a broadcast slope outside that layout, and
    /// the reorders around it slow MTCNN's networks down (docs/PERFORMANCE.md, "Design
    /// measurements").
    pub fn prelu_channels(&mut self, name: &str, x: &Value, slope: &[f32]) -> Value {
        let channels = slope.len();
        let minus_one = self.weight(
            &format!("{name}.minus_one"),
            &[channels, 1, 1, 1],
            vec![-1.0; channels],
        );
        let minus_slope = self.weight(
            &format!("{name}.minus_slope"),
            &[channels, 1, 1, 1],
            slope.iter().map(|s| -s).collect(),
        );
        let positive = self.relu(&format!("{name}.positive"), x);
        let negated = self.depthwise_scale(&format!("{name}.negated"), x, &minus_one, channels);
        let negative = self.relu(&format!("{name}.negative"), &negated);
        let scaled =
            self.depthwise_scale(&format!("{name}.scaled"), &negative, &minus_slope, channels);
        self.add(name, &positive, &scaled)
    }

    /// A 1x1 depthwise convolution: each channel multiplied by its own factor.
    fn depthwise_scale(
        &mut self,
        name: &str,
        x: &Value,
        factors: &Value,
        channels: usize,
    ) -> Value {
        self.op(
            "Conv",
            name,
            &[x, factors],
            vec![ints("kernel_shape", &[1, 1]), int("group", channels as i64)],
        )
    }

    /// Max pooling without padding; `ceil_mode` rounds the output size up, as PyTorch's
    /// `ceil_mode=True` does.
    ///
    /// Ceil mode is written as `stride - 1` pixels of end padding (which max pooling ignores):
    /// for `kernel >= stride` the windows are exactly those of ceil mode, and ONNX Runtime keeps
    /// padded pooling in its blocked convolution layout, which it does not for `ceil_mode`.
    pub fn max_pool(
        &mut self,
        name: &str,
        x: &Value,
        kernel: [usize; 2],
        strides: [usize; 2],
        ceil_mode: bool,
    ) -> Value {
        assert!(
            kernel[0] >= strides[0] && kernel[1] >= strides[1],
            "max pooling with a stride larger than its window"
        );
        let end = |axis: usize| if ceil_mode { strides[axis] - 1 } else { 0 };
        self.op(
            "MaxPool",
            name,
            &[x],
            vec![
                ints("kernel_shape", &kernel),
                ints("strides", &strides),
                ints("pads", &[0, 0, end(0), end(1)]),
            ],
        )
    }

    pub fn softmax(&mut self, name: &str, x: &Value, axis: i64) -> Value {
        self.op("Softmax", name, &[x], vec![int("axis", axis)])
    }

    pub fn add(&mut self, name: &str, a: &Value, b: &Value) -> Value {
        self.op("Add", name, &[a, b], Vec::new())
    }

    pub fn mul(&mut self, name: &str, a: &Value, b: &Value) -> Value {
        self.op("Mul", name, &[a, b], Vec::new())
    }

    pub fn concat(&mut self, name: &str, parts: &[&Value], axis: i64) -> Value {
        self.op("Concat", name, parts, vec![int("axis", axis)])
    }

    pub fn transpose(&mut self, name: &str, x: &Value, perm: &[usize]) -> Value {
        self.op("Transpose", name, &[x], vec![ints("perm", perm)])
    }

    /// Flattens every dimension from `axis` on into one.
    pub fn flatten(&mut self, name: &str, x: &Value, axis: i64) -> Value {
        self.op("Flatten", name, &[x], vec![int("axis", axis)])
    }

    /// `x @ weightᵀ + bias` with a PyTorch-layout (`[out, in]`) weight.
    pub fn linear(&mut self, name: &str, x: &Value, weight: &Value, bias: Option<&Value>) -> Value {
        let mut inputs = vec![x, weight];
        inputs.extend(bias);
        self.op("Gemm", name, &inputs, vec![int("transB", 1)])
    }

    /// `x @ weight` with a Keras-layout (`[in, out]`) weight.
    pub fn matmul(&mut self, name: &str, x: &Value, weight: &Value) -> Value {
        self.op("MatMul", name, &[x, weight], Vec::new())
    }

    /// Inference-mode batch normalisation over axis 1.
    #[allow(clippy::too_many_arguments)]
    pub fn batch_norm(
        &mut self,
        name: &str,
        x: &Value,
        gamma: &Value,
        beta: &Value,
        mean: &Value,
        variance: &Value,
        epsilon: f32,
    ) -> Value {
        self.op(
            "BatchNormalization",
            name,
            &[x, gamma, beta, mean, variance],
            vec![float("epsilon", epsilon)],
        )
    }

    /// Average pooling without padding.
    pub fn average_pool(
        &mut self,
        name: &str,
        x: &Value,
        kernel: [usize; 2],
        strides: [usize; 2],
    ) -> Value {
        self.op(
            "AveragePool",
            name,
            &[x],
            vec![ints("kernel_shape", &kernel), ints("strides", &strides)],
        )
    }

    /// Zero padding of an NCHW tensor: `[n, c, h, w]` before, then `[n, c, h, w]` after.
    pub fn pad(&mut self, name: &str, x: &Value, before: [usize; 4], after: [usize; 4]) -> Value {
        let pads: Vec<i64> = before.iter().chain(&after).map(|&p| p as i64).collect();
        let pads = self.int64_constant(&format!("{name}/pads"), &pads);
        self.op("Pad", name, &[x, &pads], Vec::new())
    }

    pub fn global_average_pool(&mut self, name: &str, x: &Value) -> Value {
        self.op("GlobalAveragePool", name, &[x], Vec::new())
    }

    /// Serialises the model.
    pub fn finish(self) -> Vec<u8> {
        let model = ModelProto {
            ir_version: IR_VERSION,
            producer_name: "facegate".to_string(),
            producer_version: env!("CARGO_PKG_VERSION").to_string(),
            doc_string: String::new(),
            graph: Some(GraphProto {
                node: self.nodes,
                name: self.name,
                initializer: self.initializers,
                input: self.inputs,
                output: self.outputs,
            }),
            opset_import: vec![OperatorSetIdProto {
                domain: String::new(),
                version: OPSET,
            }],
        };
        model.encode_to_vec()
    }
}

fn float_value_info(name: &str, dims: Option<&[Dim]>) -> ValueInfoProto {
    let shape = dims.map(|dims| TensorShapeProto {
        dim: dims
            .iter()
            .map(|d| match d {
                Dim::Fixed(v) => Dimension {
                    dim_value: Some(*v),
                    dim_param: None,
                },
                Dim::Batch => Dimension {
                    dim_value: None,
                    dim_param: Some("batch".to_string()),
                },
                Dim::Dynamic(p) => Dimension {
                    dim_value: None,
                    dim_param: Some(p.to_string()),
                },
            })
            .collect(),
    });
    ValueInfoProto {
        name: name.to_string(),
        r#type: Some(TypeProto {
            tensor_type: Some(TypeProtoTensor {
                elem_type: data_type::FLOAT,
                shape,
            }),
        }),
    }
}

/// An integer attribute, for [`GraphBuilder::op`].
pub fn int(name: &str, value: i64) -> AttributeProto {
    AttributeProto {
        name: name.to_string(),
        i: value,
        r#type: attribute_type::INT,
        ..Default::default()
    }
}

/// A list-of-integers attribute, for [`GraphBuilder::op`].
pub fn ints(name: &str, values: &[usize]) -> AttributeProto {
    AttributeProto {
        name: name.to_string(),
        ints: values.iter().map(|&v| v as i64).collect(),
        r#type: attribute_type::INTS,
        ..Default::default()
    }
}

/// A list of signed integers (axes may be negative), for [`GraphBuilder::op`].
pub fn signed_ints(name: &str, values: &[i64]) -> AttributeProto {
    AttributeProto {
        name: name.to_string(),
        ints: values.to_vec(),
        r#type: attribute_type::INTS,
        ..Default::default()
    }
}

/// A string attribute, for [`GraphBuilder::op`].
pub fn string(name: &str, value: &str) -> AttributeProto {
    AttributeProto {
        name: name.to_string(),
        s: value.as_bytes().to_vec(),
        r#type: attribute_type::STRING,
        ..Default::default()
    }
}

/// A float attribute, for [`GraphBuilder::op`].
pub fn float(name: &str, value: f32) -> AttributeProto {
    AttributeProto {
        name: name.to_string(),
        f: value,
        r#type: attribute_type::FLOAT,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emitted_model_decodes_back() {
        let mut g = GraphBuilder::new("t");
        let x = g.input("x", &[Dim::Batch, Dim::Fixed(2)]);
        let w = g.weight("w", &[3, 2], vec![1.0; 6]);
        let y = g.linear("fc", &x, &w, None);
        g.output("y", &y);
        let bytes = g.finish();
        let model = ModelProto::decode(bytes.as_slice()).unwrap();
        let graph = model.graph.unwrap();
        assert_eq!(model.opset_import[0].version, OPSET);
        assert_eq!(graph.node.len(), 2);
        assert_eq!(graph.node[0].op_type, "Gemm");
        assert_eq!(graph.initializer[0].raw_data.len(), 6 * 4);
        assert_eq!(graph.output[0].name, "y");
    }
}
