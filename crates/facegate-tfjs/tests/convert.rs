//! The converter and the repairs on small hand-made graphs. Numeric parity with TensorFlow on
//! the real models is checked in crates/facegate/tests/golden_tfjs.rs.

use std::collections::{BTreeMap, HashMap};

use facegate_models::tfjs::{TfAttr, TfData, TfNode, TfTensor, TfjsGraph};
use facegate_nn::onnx_proto::ModelProto;
use facegate_tfjs::{convert, ConvertError, Repair};
use prost::Message;

fn node(name: &str, op: &str, inputs: &[&str], attrs: &[(&str, TfAttr)]) -> TfNode {
    TfNode {
        name: name.to_string(),
        op: op.to_string(),
        inputs: inputs.iter().map(|s| s.to_string()).collect(),
        attrs: attrs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect::<BTreeMap<_, _>>(),
    }
}

fn placeholder(name: &str, shape: &[i64]) -> TfNode {
    node(
        name,
        "Placeholder",
        &[],
        &[("shape", TfAttr::Shape(shape.to_vec()))],
    )
}

fn floats(shape: &[usize], data: Vec<f32>) -> TfTensor {
    TfTensor {
        shape: shape.to_vec(),
        data: TfData::F32(data),
    }
}

fn graph(nodes: Vec<TfNode>, constants: Vec<(&str, TfTensor)>, output: &str) -> TfjsGraph {
    TfjsGraph {
        nodes,
        constants: constants
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect::<HashMap<_, _>>(),
        inputs: vec![("x".into(), "x".into())],
        outputs: vec![("y".into(), output.to_string())],
    }
}

fn conv_attrs(padding: &str) -> Vec<(&'static str, TfAttr)> {
    vec![
        ("strides", TfAttr::Ints(vec![1, 1, 1, 1])),
        ("padding", TfAttr::Str(padding.to_string())),
        ("data_format", TfAttr::Str("NHWC".into())),
        (
            "fused_ops",
            TfAttr::Strs(vec!["BiasAdd".into(), "Relu".into()]),
        ),
    ]
}

#[test]
fn a_fused_convolution_becomes_transpose_conv_transpose_relu_with_oihw_weights() {
    // Filter [H=1, W=2, in=1, out=2]: value = 10*w + o.
    let filter = floats(&[1, 2, 1, 2], vec![0.0, 1.0, 10.0, 11.0]);
    let g = graph(
        vec![
            placeholder("x", &[-1, 4, 4, 1]),
            node("w", "Const", &[], &[]),
            node("b", "Const", &[], &[]),
            node(
                "conv",
                "_FusedConv2D",
                &["x", "w", "b"],
                &conv_attrs("SAME"),
            ),
        ],
        vec![("w", filter), ("b", floats(&[2], vec![0.5, -0.5]))],
        "conv",
    );
    let model = ModelProto::decode(convert(&g, "t").unwrap().as_slice()).unwrap();
    let graph = model.graph.unwrap();
    let ops: Vec<&str> = graph.node.iter().map(|n| n.op_type.as_str()).collect();
    assert_eq!(ops, ["Transpose", "Conv", "Transpose", "Relu", "Identity"]);
    let conv = &graph.node[1];
    let auto_pad = conv
        .attribute
        .iter()
        .find(|a| a.name == "auto_pad")
        .unwrap();
    assert_eq!(auto_pad.s, b"SAME_UPPER");
    let weight = graph
        .initializer
        .iter()
        .find(|t| t.name.ends_with("/weight"))
        .unwrap();
    assert_eq!(weight.dims, [2, 1, 1, 2]);
    let values: Vec<f32> = weight
        .raw_data
        .chunks(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    // OIHW: output 0 holds w=0,1 -> 0, 10; output 1 -> 1, 11.
    assert_eq!(values, [0.0, 10.0, 1.0, 11.0]);
    assert_eq!(graph.output[0].name, "y");
}

#[test]
fn unknown_ops_and_fusions_are_refused_by_name() {
    let g = graph(
        vec![placeholder("x", &[-1, 4]), node("y", "Erf", &["x"], &[])],
        vec![],
        "y",
    );
    match convert(&g, "t") {
        Err(ConvertError::UnsupportedOp {
            op,
            node,
            supported,
        }) => {
            assert_eq!(op, "Erf");
            assert_eq!(node, "y");
            assert!(supported.contains("_FusedConv2D"));
        }
        other => panic!("{other:?}"),
    }
    let mut attrs = conv_attrs("VALID");
    attrs[3] = (
        "fused_ops",
        TfAttr::Strs(vec!["BiasAdd".into(), "Elu".into()]),
    );
    let g = graph(
        vec![
            placeholder("x", &[-1, 4, 4, 1]),
            node("w", "Const", &[], &[]),
            node("b", "Const", &[], &[]),
            node("conv", "_FusedConv2D", &["x", "w", "b"], &attrs),
        ],
        vec![
            ("w", floats(&[1, 1, 1, 1], vec![1.0])),
            ("b", floats(&[1], vec![0.0])),
        ],
        "conv",
    );
    let err = convert(&g, "t").unwrap_err().to_string();
    assert!(err.contains("Elu") && err.contains("node conv"), "{err}");
    let mut attrs = conv_attrs("EXPLICIT");
    attrs.pop();
    let g = graph(
        vec![
            placeholder("x", &[-1, 4, 4, 1]),
            node("w", "Const", &[], &[]),
            node("conv", "Conv2D", &["x", "w"], &attrs),
        ],
        vec![("w", floats(&[1, 1, 1, 1], vec![1.0]))],
        "conv",
    );
    let err = convert(&g, "t").unwrap_err().to_string();
    assert!(err.contains("padding"), "{err}");
}

/// `relu(x) + slope * (x - |x|)` after a depthwise conv whose Relu was fused in.
fn prelu_graph(fused_relu: bool) -> TfjsGraph {
    let mut fused = vec!["BiasAdd".to_string()];
    if fused_relu {
        fused.push("Relu".into());
    }
    let dw_attrs = vec![
        ("strides", TfAttr::Ints(vec![1, 1, 1, 1])),
        ("padding", TfAttr::Str("SAME".into())),
        ("fused_ops", TfAttr::Strs(fused)),
    ];
    let relu_input = if fused_relu { "dw" } else { "relu" };
    let mut nodes = vec![
        placeholder("x", &[-1, 4, 4, 2]),
        node("w", "Const", &[], &[]),
        node("b", "Const", &[], &[]),
        node("slope", "Const", &[], &[]),
        node(
            "dw",
            "FusedDepthwiseConv2dNative",
            &["x", "w", "b"],
            &dw_attrs,
        ),
        node("abs", "Abs", &["dw"], &[]),
        node("sub", "Sub", &["dw", "abs"], &[]),
        node("mul", "Mul", &["sub", "slope"], &[]),
        node("add", "Add", &[relu_input, "mul"], &[]),
    ];
    if !fused_relu {
        nodes.push(node("relu", "Relu", &["dw"], &[]));
    }
    graph(
        nodes,
        vec![
            ("w", floats(&[3, 3, 2, 1], vec![0.1; 18])),
            ("b", floats(&[2], vec![0.0, 0.0])),
            ("slope", floats(&[2], vec![-0.125, -0.25])),
        ],
        "add",
    )
}

#[test]
fn repairs_rewire_the_prelu_and_flip_its_slopes() {
    let mut g = prelu_graph(true);
    assert_eq!(Repair::UnfuseReluFeedingPrelu.apply(&mut g), 1);
    let dw = g.node("dw").unwrap();
    assert_eq!(dw.strs_attr("fused_ops").unwrap(), ["BiasAdd".to_string()]);
    let add = g.node("add").unwrap();
    let relu = g.node(&add.inputs[0]).unwrap();
    assert_eq!((relu.op.as_str(), relu.inputs[0].as_str()), ("Relu", "dw"));
    // Abs and Sub still read the pre-activation value.
    assert_eq!(g.node("abs").unwrap().inputs, ["dw"]);
    assert_eq!(Repair::NegatePreluSlopes.apply(&mut g), 1);
    assert_eq!(g.constants["slope"].data, TfData::F32(vec![0.125, 0.25]));
    convert(&g, "repaired").unwrap();

    // A correct graph has nothing to unfuse.
    let mut healthy = prelu_graph(false);
    assert_eq!(Repair::UnfuseReluFeedingPrelu.apply(&mut healthy), 0);
}

fn ints(shape: &[usize], data: Vec<i32>) -> TfTensor {
    TfTensor {
        shape: shape.to_vec(),
        data: TfData::I32(data),
    }
}

#[test]
fn pad_prelu_and_concat_become_their_onnx_operators() {
    // Channel padding 2 -> 4, a PReLU, a convolution with a fused PReLU, and both concatenated
    // along channels: the blocks of MediaPipe's iris network.
    let mut prelu_conv = conv_attrs("SAME");
    prelu_conv[3] = (
        "fused_ops",
        TfAttr::Strs(vec!["BiasAdd".into(), "Prelu".into()]),
    );
    let g = graph(
        vec![
            placeholder("x", &[-1, 4, 4, 2]),
            node("paddings", "Const", &[], &[]),
            node("pad", "Pad", &["x", "paddings"], &[]),
            node("alpha", "Const", &[], &[]),
            node("prelu", "Prelu", &["pad", "alpha"], &[]),
            node("w", "Const", &[], &[]),
            node("b", "Const", &[], &[]),
            node("conv_alpha", "Const", &[], &[]),
            node(
                "conv",
                "_FusedConv2D",
                &["prelu", "w", "b", "conv_alpha"],
                &prelu_conv,
            ),
            node("axis", "Const", &[], &[]),
            node("concat", "ConcatV2", &["prelu", "conv", "axis"], &[]),
        ],
        vec![
            ("paddings", ints(&[4, 2], vec![0, 0, 0, 0, 0, 0, 0, 2])),
            ("alpha", floats(&[1, 1, 4], vec![0.1, 0.2, 0.3, 0.4])),
            ("w", floats(&[1, 1, 4, 3], vec![0.5; 12])),
            ("b", floats(&[3], vec![0.0; 3])),
            ("conv_alpha", floats(&[1, 1, 3], vec![-0.5; 3])),
            ("axis", ints(&[], vec![-1])),
        ],
        "concat",
    );
    let model = ModelProto::decode(convert(&g, "t").unwrap().as_slice()).unwrap();
    let graph = model.graph.unwrap();
    let ops: Vec<&str> = graph.node.iter().map(|n| n.op_type.as_str()).collect();
    assert_eq!(
        ops,
        [
            "Pad",
            "PRelu",
            "Transpose",
            "Conv",
            "Transpose",
            "PRelu",
            "Concat",
            "Identity"
        ]
    );
    // ONNX pads: every axis's start, then every axis's end.
    let pads = graph
        .initializer
        .iter()
        .find(|t| t.name.ends_with("/pads"))
        .unwrap();
    let pads: Vec<i64> = pads
        .raw_data
        .chunks(8)
        .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(pads, [0, 0, 0, 0, 0, 0, 0, 2]);
    let concat = &graph.node[6];
    let axis = concat.attribute.iter().find(|a| a.name == "axis").unwrap();
    assert_eq!(axis.i, -1);
    assert_eq!(concat.input.len(), 2);
    // The fused PReLU's slopes keep their broadcastable NHWC shape.
    let slopes = graph
        .initializer
        .iter()
        .find(|t| t.name == "tf:conv/alpha")
        .unwrap();
    assert_eq!(slopes.dims, [1, 1, 3]);
}
