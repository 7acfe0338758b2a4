//! TensorFlow.js graph models: `model.json` (a TensorFlow `GraphDef` written as JSON, plus a
//! weights manifest) and its binary weight shards.
//!
//! The reader resolves every `Const` node to its tensor (dequantising float16 and
//! affine-quantised uint8/uint16 weights to f32) and decodes node attributes, so a converter
//! sees plain nodes and numbers. It does not interpret any op.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::Deserialize;

use crate::ModelError;

/// A graph model, read.
#[derive(Clone, Debug)]
pub struct TfjsGraph {
    /// Nodes in file order (TF.js writes them topologically sorted).
    pub nodes: Vec<TfNode>,
    /// Every `Const` node's value, by node name.
    pub constants: HashMap<String, TfTensor>,
    /// `(signature key, node name)` of the inputs and outputs the model declares.
    pub inputs: Vec<(String, String)>,
    pub outputs: Vec<(String, String)>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct TfNode {
    pub name: String,
    pub op: String,
    /// Data inputs by node name (`:0` suffixes removed; control inputs dropped).
    pub inputs: Vec<String>,
    pub attrs: BTreeMap<String, TfAttr>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum TfAttr {
    Int(i64),
    Float(f32),
    Bool(bool),
    /// A byte string (TF.js writes them base64-encoded), decoded as UTF-8.
    Str(String),
    Type(String),
    Ints(Vec<i64>),
    Floats(Vec<f32>),
    Strs(Vec<String>),
    /// A shape; `-1` for unknown dimensions.
    Shape(Vec<i64>),
    /// Anything else (kept so a converter can name it when it refuses a node).
    Other(String),
}

#[derive(Clone, Debug, PartialEq)]
pub struct TfTensor {
    pub shape: Vec<usize>,
    pub data: TfData,
}

#[derive(Clone, Debug, PartialEq)]
pub enum TfData {
    F32(Vec<f32>),
    I32(Vec<i32>),
}

impl TfNode {
    pub fn attr(&self, key: &str) -> Option<&TfAttr> {
        self.attrs.get(key)
    }

    pub fn str_attr(&self, key: &str) -> Option<&str> {
        match self.attrs.get(key) {
            Some(TfAttr::Str(s)) => Some(s),
            _ => None,
        }
    }

    pub fn ints_attr(&self, key: &str) -> Option<&[i64]> {
        match self.attrs.get(key) {
            Some(TfAttr::Ints(v)) => Some(v),
            _ => None,
        }
    }

    pub fn strs_attr(&self, key: &str) -> Option<&[String]> {
        match self.attrs.get(key) {
            Some(TfAttr::Strs(v)) => Some(v),
            _ => None,
        }
    }

    pub fn bool_attr(&self, key: &str) -> Option<bool> {
        match self.attrs.get(key) {
            Some(TfAttr::Bool(b)) => Some(*b),
            _ => None,
        }
    }
}

impl TfjsGraph {
    /// Reads `model.json` and the weight shards it names, which must sit beside it unless
    /// `shards` gives their paths (in manifest order).
    pub fn read(topology: &Path, shards: Option<&[PathBuf]>) -> Result<TfjsGraph, ModelError> {
        let bytes = std::fs::read(topology).map_err(ModelError::io("could not read", topology))?;
        let format_error = |message: String| ModelError::Format {
            path: topology.to_path_buf(),
            message,
        };
        let model: ModelJson = serde_json::from_slice(&bytes)
            .map_err(|e| format_error(format!("not a TF.js model.json: {e}")))?;
        if model.format.as_deref() != Some("graph-model") {
            return Err(format_error(format!(
                "format is {:?}, facegate reads only TF.js graph models",
                model.format
            )));
        }
        let mut shard_index = 0;
        let mut constants = HashMap::new();
        for group in &model.weights_manifest {
            let mut data = Vec::new();
            for name in &group.paths {
                let path = match shards {
                    Some(paths) => paths.get(shard_index).cloned().ok_or_else(|| {
                        format_error(format!("no path given for weight shard {name}"))
                    })?,
                    None => topology.with_file_name(name),
                };
                shard_index += 1;
                data.extend(std::fs::read(&path).map_err(ModelError::io("could not read", &path))?);
            }
            let mut offset = 0usize;
            for spec in &group.weights {
                let (tensor, used) = decode_weight(spec, &data[offset.min(data.len())..])
                    .map_err(|m| format_error(format!("weight {}: {m}", spec.name)))?;
                offset += used;
                constants.insert(spec.name.clone(), tensor);
            }
            if offset != data.len() {
                return Err(format_error(format!(
                    "the weight shards hold {} bytes but the manifest describes {offset}",
                    data.len()
                )));
            }
        }
        let mut nodes = Vec::with_capacity(model.model_topology.node.len());
        for node in model.model_topology.node {
            let inputs = node
                .input
                .into_iter()
                .filter(|i| !i.starts_with('^'))
                .map(|i| match i.strip_suffix(":0") {
                    Some(base) => base.to_string(),
                    None => i,
                })
                .collect();
            let attrs = node
                .attr
                .into_iter()
                .map(|(k, v)| (k, decode_attr(v)))
                .collect();
            nodes.push(TfNode {
                name: node.name,
                op: node.op,
                inputs,
                attrs,
            });
        }
        for node in nodes.iter().filter(|n| n.op == "Const") {
            if !constants.contains_key(&node.name) {
                return Err(format_error(format!(
                    "constant {} has no weights in the manifest",
                    node.name
                )));
            }
        }
        let signature = model
            .signature
            .or(model.user_defined_metadata.and_then(|m| m.signature))
            .unwrap_or_default();
        let strip = |s: &str| s.strip_suffix(":0").unwrap_or(s).to_string();
        let mut inputs: Vec<(String, String)> = signature
            .inputs
            .iter()
            .map(|(k, v)| (k.clone(), strip(v.name.as_deref().unwrap_or(k))))
            .collect();
        if inputs.is_empty() {
            inputs = nodes
                .iter()
                .filter(|n| n.op == "Placeholder")
                .map(|n| (n.name.clone(), n.name.clone()))
                .collect();
        }
        let outputs = signature
            .outputs
            .iter()
            .map(|(k, v)| (k.clone(), strip(v.name.as_deref().unwrap_or(k))))
            .collect();
        Ok(TfjsGraph {
            nodes,
            constants,
            inputs,
            outputs,
        })
    }

    pub fn node(&self, name: &str) -> Option<&TfNode> {
        self.nodes.iter().find(|n| n.name == name)
    }

    /// The nodes reading `name`'s output.
    pub fn consumers<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a TfNode> + 'a {
        self.nodes
            .iter()
            .filter(move |n| n.inputs.iter().any(|i| i == name))
    }
}

fn decode_weight(spec: &WeightSpec, bytes: &[u8]) -> Result<(TfTensor, usize), String> {
    let shape: Vec<usize> = spec
        .shape
        .iter()
        .map(|&d| usize::try_from(d).map_err(|_| format!("negative dimension {d}")))
        .collect::<Result<_, _>>()?;
    let count = shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or("shape too large")?;
    let take = |width: usize| -> Result<&[u8], String> {
        let n = count.checked_mul(width).ok_or("shape too large")?;
        bytes
            .get(..n)
            .ok_or_else(|| format!("needs {n} bytes, the shards end after {}", bytes.len()))
    };
    let quantization = spec.quantization.as_ref();
    let (data, used) = match (spec.dtype.as_str(), quantization.map(|q| q.dtype.as_str())) {
        ("float32", None) => {
            let raw = take(4)?;
            let v = raw
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            (TfData::F32(v), raw.len())
        }
        ("int32", None) => {
            let raw = take(4)?;
            let v = raw
                .chunks_exact(4)
                .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            (TfData::I32(v), raw.len())
        }
        ("float32", Some("float16")) => {
            let raw = take(2)?;
            let v = raw
                .chunks_exact(2)
                .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect();
            (TfData::F32(v), raw.len())
        }
        ("float32", Some(q @ ("uint8" | "uint16"))) => {
            let params = quantization.ok_or("quantization without parameters")?;
            let (min, scale) = params
                .min
                .zip(params.scale)
                .ok_or("affine quantization without min and scale")?;
            let width = if q == "uint8" { 1 } else { 2 };
            let raw = take(width)?;
            let v = raw
                .chunks_exact(width)
                .map(|c| {
                    let q = if width == 1 {
                        f32::from(c[0])
                    } else {
                        f32::from(u16::from_le_bytes([c[0], c[1]]))
                    };
                    min + scale * q
                })
                .collect();
            (TfData::F32(v), raw.len())
        }
        (dtype, q) => {
            return Err(format!(
                "dtype {dtype} with quantization {q:?} is not supported"
            ))
        }
    };
    Ok((TfTensor { shape, data }, used))
}

fn decode_attr(value: serde_json::Value) -> TfAttr {
    use serde_json::Value;
    let int = |v: &Value| match v {
        Value::String(s) => s.parse::<i64>().ok(),
        Value::Number(n) => n.as_i64(),
        _ => None,
    };
    let float = |v: &Value| match v {
        Value::Number(n) => n.as_f64().map(|f| f as f32),
        Value::String(s) => s.parse::<f32>().ok(),
        _ => None,
    };
    let text = |v: &Value| {
        v.as_str().map(|s| {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(s)
                .unwrap_or_else(|_| s.as_bytes().to_vec());
            String::from_utf8_lossy(&bytes).into_owned()
        })
    };
    let Value::Object(map) = &value else {
        return TfAttr::Other(value.to_string());
    };
    let decoded = if let Some(v) = map.get("i") {
        int(v).map(TfAttr::Int)
    } else if let Some(v) = map.get("f") {
        float(v).map(TfAttr::Float)
    } else if let Some(v) = map.get("b") {
        v.as_bool().map(TfAttr::Bool)
    } else if let Some(v) = map.get("s") {
        text(v).map(TfAttr::Str)
    } else if let Some(v) = map.get("type") {
        v.as_str().map(|t| TfAttr::Type(t.to_string()))
    } else if let Some(shape) = map.get("shape") {
        let dims = shape.get("dim").and_then(Value::as_array);
        Some(TfAttr::Shape(
            dims.map(|d| {
                d.iter()
                    .map(|dim| dim.get("size").and_then(int).unwrap_or(-1))
                    .collect()
            })
            .unwrap_or_default(),
        ))
    } else if let Some(list) = map.get("list") {
        let items = |key: &str| list.get(key).and_then(Value::as_array);
        if let Some(v) = items("i") {
            Some(TfAttr::Ints(v.iter().filter_map(int).collect()))
        } else if let Some(v) = items("f") {
            Some(TfAttr::Floats(v.iter().filter_map(float).collect()))
        } else if let Some(v) = items("s") {
            Some(TfAttr::Strs(v.iter().filter_map(text).collect()))
        } else {
            Some(TfAttr::Ints(Vec::new()))
        }
    } else {
        None
    };
    decoded.unwrap_or_else(|| TfAttr::Other(value.to_string()))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ModelJson {
    format: Option<String>,
    model_topology: Topology,
    #[serde(default)]
    weights_manifest: Vec<WeightGroup>,
    signature: Option<Signature>,
    user_defined_metadata: Option<UserMetadata>,
}

#[derive(Deserialize)]
struct Topology {
    #[serde(default)]
    node: Vec<NodeJson>,
}

#[derive(Deserialize)]
struct NodeJson {
    name: String,
    op: String,
    #[serde(default)]
    input: Vec<String>,
    #[serde(default)]
    attr: BTreeMap<String, serde_json::Value>,
}

#[derive(Deserialize)]
struct WeightGroup {
    paths: Vec<String>,
    weights: Vec<WeightSpec>,
}

#[derive(Deserialize)]
struct WeightSpec {
    name: String,
    shape: Vec<i64>,
    dtype: String,
    quantization: Option<Quantization>,
}

#[derive(Deserialize)]
struct Quantization {
    dtype: String,
    min: Option<f32>,
    scale: Option<f32>,
}

#[derive(Default, Deserialize)]
struct Signature {
    #[serde(default)]
    inputs: BTreeMap<String, TensorInfo>,
    #[serde(default)]
    outputs: BTreeMap<String, TensorInfo>,
}

#[derive(Deserialize)]
struct TensorInfo {
    name: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UserMetadata {
    signature: Option<Signature>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_model(dir: &Path, manifest_weights: &str, bin: &[u8]) -> PathBuf {
        let json = format!(
            r#"{{"format":"graph-model","modelTopology":{{"node":[
                {{"name":"x","op":"Placeholder","attr":{{"dtype":{{"type":"DT_FLOAT"}}}}}},
                {{"name":"w","op":"Const"}},
                {{"name":"y","op":"Mul","input":["x:0","w","^x"],"attr":{{
                    "padding":{{"s":"U0FNRQ=="}},"strides":{{"list":{{"i":["1","2"]}}}},
                    "fused_ops":{{"list":{{"s":["Qmlhc0FkZA==","UmVsdQ=="]}}}},"keep_dims":{{"b":true}}}}}}
            ]}},
            "weightsManifest":[{{"paths":["m.bin"],"weights":[{manifest_weights}]}}],
            "signature":{{"outputs":{{"out":{{"name":"y:0"}}}}}}}}"#
        );
        std::fs::write(dir.join("m.bin"), bin).unwrap();
        let path = dir.join("m.json");
        std::fs::write(&path, json).unwrap();
        path
    }

    #[test]
    fn reads_nodes_attributes_and_float32_weights() {
        let dir = tempfile::tempdir().unwrap();
        let bin: Vec<u8> = [1.5f32, -2.0]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let path = write_model(
            dir.path(),
            r#"{"name":"w","shape":[2],"dtype":"float32"}"#,
            &bin,
        );
        let graph = TfjsGraph::read(&path, None).unwrap();
        let y = graph.node("y").unwrap();
        assert_eq!(y.inputs, ["x", "w"]);
        assert_eq!(y.str_attr("padding"), Some("SAME"));
        assert_eq!(y.ints_attr("strides"), Some(&[1, 2][..]));
        assert_eq!(
            y.strs_attr("fused_ops").unwrap(),
            &["BiasAdd".to_string(), "Relu".to_string()]
        );
        assert_eq!(y.bool_attr("keep_dims"), Some(true));
        assert_eq!(graph.constants["w"].data, TfData::F32(vec![1.5, -2.0]));
        assert_eq!(graph.outputs, [("out".to_string(), "y".to_string())]);
        assert_eq!(graph.inputs, [("x".to_string(), "x".to_string())]);
    }

    #[test]
    fn dequantises_float16_and_uint8() {
        let dir = tempfile::tempdir().unwrap();
        let mut bin: Vec<u8> = [half::f16::from_f32(0.5), half::f16::from_f32(-3.0)]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        bin.push(4);
        let path = write_model(
            dir.path(),
            r#"{"name":"w","shape":[2],"dtype":"float32","quantization":{"dtype":"float16"}},
               {"name":"q","shape":[1],"dtype":"float32","quantization":{"dtype":"uint8","min":-1.0,"scale":0.5}}"#,
            &bin,
        );
        let graph = TfjsGraph::read(&path, None).unwrap();
        assert_eq!(graph.constants["w"].data, TfData::F32(vec![0.5, -3.0]));
        assert_eq!(graph.constants["q"].data, TfData::F32(vec![1.0]));
    }

    #[test]
    fn a_short_weight_shard_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_model(
            dir.path(),
            r#"{"name":"w","shape":[2],"dtype":"float32"}"#,
            &[0u8; 6],
        );
        let err = TfjsGraph::read(&path, None).unwrap_err().to_string();
        assert!(err.contains("weight w: needs 8 bytes"), "{err}");
    }
}
