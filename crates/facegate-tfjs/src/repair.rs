//! Named repairs for defects found in a pinned graph.
//!
//! A repair rewrites the read graph before conversion, reports how many places it changed,
//! and is applied only where the caller has checked the graph is the exact pinned file the
//! defect was found in (see `facegate_embed::mobilefacenet`).
//!
//! Both repairs concern PReLU, which the exporter wrote as `relu(x) + slope * (x - |x|)`:
//! that equals `x` for `x >= 0` and `2 * slope * x` below zero, so `slope` must be `+alpha/2`.

use facegate_models::tfjs::{TfData, TfNode, TfjsGraph};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Repair {
    /// A fused convolution applies Relu although its output also feeds the `Abs` and `Sub`
    /// of a PReLU, which then sees only non-negative values and collapses into a ReLU. The
    /// repair keeps only the bias in the fused node and gives the PReLU's `Add` its own Relu.
    UnfuseReluFeedingPrelu,
    /// The PReLU slope constants hold `-alpha/2` instead of `+alpha/2`; the repair negates
    /// each constant multiplied with a PReLU's `x - |x|`.
    NegatePreluSlopes,
}

impl Repair {
    pub fn name(&self) -> &'static str {
        match self {
            Repair::UnfuseReluFeedingPrelu => "unfuse-relu-feeding-prelu",
            Repair::NegatePreluSlopes => "negate-prelu-slopes",
        }
    }

    /// Applies the repair; returns how many places it changed.
    pub fn apply(&self, graph: &mut TfjsGraph) -> usize {
        match self {
            Repair::UnfuseReluFeedingPrelu => unfuse_relu_feeding_prelu(graph),
            Repair::NegatePreluSlopes => negate_prelu_slopes(graph),
        }
    }
}

fn unfuse_relu_feeding_prelu(graph: &mut TfjsGraph) -> usize {
    let sites: Vec<String> = graph
        .nodes
        .iter()
        .filter(|n| {
            let ops = n.strs_attr("fused_ops").unwrap_or(&[]);
            ops.len() == 2 && ops[0] == "BiasAdd" && ops[1] == "Relu"
        })
        .filter(|n| {
            let readers: Vec<&str> = graph.consumers(&n.name).map(|c| c.op.as_str()).collect();
            readers.contains(&"Abs") && readers.contains(&"Sub")
        })
        .map(|n| n.name.clone())
        .collect();
    for site in &sites {
        let relu_name = format!("{site}/facegate_repaired_relu");
        let Some(position) = graph.nodes.iter().position(|n| &n.name == site) else {
            continue;
        };
        let node = &mut graph.nodes[position];
        if let Some(facegate_models::tfjs::TfAttr::Strs(ops)) = node.attrs.get_mut("fused_ops") {
            ops.truncate(1);
        }
        let relu = TfNode {
            name: relu_name.clone(),
            op: "Relu".to_string(),
            inputs: vec![site.clone()],
            attrs: Default::default(),
        };
        graph.nodes.insert(position + 1, relu);
        for reader in graph.nodes.iter_mut() {
            if matches!(reader.op.as_str(), "Add" | "AddV2") {
                for input in reader.inputs.iter_mut().filter(|i| *i == site) {
                    *input = relu_name.clone();
                }
            }
        }
    }
    sites.len()
}

fn negate_prelu_slopes(graph: &mut TfjsGraph) -> usize {
    let is_x_minus_abs_x = |name: &str| -> bool {
        let Some(sub) = graph.node(name).filter(|n| n.op == "Sub") else {
            return false;
        };
        let [x, abs] = &sub.inputs[..] else {
            return false;
        };
        graph
            .node(abs)
            .is_some_and(|a| a.op == "Abs" && a.inputs.first() == Some(x))
    };
    let slopes: Vec<String> = graph
        .nodes
        .iter()
        .filter(|n| n.op == "Mul" && n.inputs.len() == 2)
        .filter_map(|n| {
            let (a, b) = (&n.inputs[0], &n.inputs[1]);
            if is_x_minus_abs_x(a) && graph.constants.contains_key(b) {
                Some(b.clone())
            } else if is_x_minus_abs_x(b) && graph.constants.contains_key(a) {
                Some(a.clone())
            } else {
                None
            }
        })
        .collect();
    let mut changed = 0;
    for slope in &slopes {
        if let Some(TfData::F32(values)) = graph.constants.get_mut(slope).map(|t| &mut t.data) {
            values.iter_mut().for_each(|v| *v = -*v);
            changed += 1;
        }
    }
    changed
}
