//! Reads a Keras 2 HDF5 model file (`model.save(...)`): its architecture JSON and its weights.

use std::path::{Path, PathBuf};

use hdf5_pure::{AttrValue, File};

use crate::{ModelError, WeightTensor};

pub struct KerasH5 {
    path: PathBuf,
    file: File,
    config: serde_json::Value,
}

impl KerasH5 {
    pub fn open(path: &Path) -> Result<KerasH5, ModelError> {
        let format_error = |message: String| ModelError::Format {
            path: path.to_path_buf(),
            message,
        };
        let file = File::open(path).map_err(|e| format_error(e.to_string()))?;
        let attrs = file
            .root()
            .attrs()
            .map_err(|e| format_error(e.to_string()))?;
        let config_text = match attrs.get("model_config") {
            Some(AttrValue::String(s))
            | Some(AttrValue::AsciiString(s))
            | Some(AttrValue::VarLenString(s))
            | Some(AttrValue::VarLenAsciiString(s))
            | Some(AttrValue::StringSized { value: s, .. })
            | Some(AttrValue::AsciiStringSized { value: s, .. }) => s.clone(),
            Some(other) => {
                return Err(format_error(format!(
                    "model_config has unexpected type {other:?}"
                )))
            }
            None => {
                return Err(format_error(
                    "no model_config attribute; not a Keras model file".into(),
                ))
            }
        };
        let config = serde_json::from_str(&config_text)
            .map_err(|e| format_error(format!("model_config: {e}")))?;
        Ok(KerasH5 {
            path: path.to_path_buf(),
            file,
            config,
        })
    }

    /// The Keras model configuration (`{"class_name": "Model", "config": {"layers": [...]}}`).
    pub fn config(&self) -> &serde_json::Value {
        &self.config
    }

    /// The `config` object of the layer called `name`.
    pub fn layer_config(&self, name: &str) -> Result<&serde_json::Value, ModelError> {
        self.config["config"]["layers"]
            .as_array()
            .and_then(|layers| layers.iter().find(|l| l["name"] == name))
            .map(|layer| &layer["config"])
            .ok_or_else(|| self.error(format!("no layer named {name}")))
    }

    /// Weight `weight` (e.g. `kernel:0`) of layer `layer`, checked to have `shape`.
    pub fn weight(
        &self,
        layer: &str,
        weight: &str,
        shape: &[usize],
    ) -> Result<WeightTensor, ModelError> {
        let dataset_path = format!("model_weights/{layer}/{layer}/{weight}");
        let dataset = self
            .file
            .dataset(&dataset_path)
            .map_err(|e| self.error(format!("{dataset_path}: {e}")))?;
        let actual: Vec<usize> = dataset
            .shape()
            .map_err(|e| self.error(format!("{dataset_path}: {e}")))?
            .into_iter()
            .map(|d| d as usize)
            .collect();
        if actual != shape {
            return Err(self.error(format!(
                "{dataset_path} has shape {actual:?}, expected {shape:?}"
            )));
        }
        let data = dataset
            .read_f32()
            .map_err(|e| self.error(format!("{dataset_path}: {e}")))?;
        if data.len() != shape.iter().product::<usize>() {
            return Err(self.error(format!("{dataset_path} is truncated")));
        }
        Ok(WeightTensor {
            shape: shape.to_vec(),
            data,
        })
    }

    fn error(&self, message: String) -> ModelError {
        ModelError::Format {
            path: self.path.clone(),
            message,
        }
    }
}
