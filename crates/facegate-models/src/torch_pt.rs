//! Reads PyTorch `state_dict` files (`torch.save`), including the legacy non-zip layout that
//! facenet-pytorch ships, into float tensors.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use pytorch_reader::{DType, PytorchReader};

use crate::{ModelError, WeightTensor};

/// All tensors of a state dict, by parameter name (`conv1.weight`, ...).
#[derive(Debug)]
pub struct StateDict {
    path: PathBuf,
    tensors: HashMap<String, WeightTensor>,
}

impl StateDict {
    pub fn open(path: &Path) -> Result<StateDict, ModelError> {
        let format_error = |message: String| ModelError::Format {
            path: path.to_path_buf(),
            message,
        };
        let reader = PytorchReader::new(path).map_err(|e| format_error(e.to_string()))?;
        let mut tensors = HashMap::new();
        for (name, tensor) in reader.tensors() {
            if tensor.dtype() != DType::F32 {
                return Err(format_error(format!(
                    "{name} is {:?}, expected float32",
                    tensor.dtype()
                )));
            }
            let bytes = tensor
                .read()
                .map_err(|e| format_error(format!("{name}: {e}")))?;
            let data: Vec<f32> = bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            if data.len() != tensor.num_elements() {
                return Err(format_error(format!("{name} is truncated")));
            }
            tensors.insert(
                name.clone(),
                WeightTensor {
                    shape: tensor.shape().to_vec(),
                    data,
                },
            );
        }
        Ok(StateDict {
            path: path.to_path_buf(),
            tensors,
        })
    }

    /// The tensor `name`, checked to have `shape`.
    pub fn tensor(&self, name: &str, shape: &[usize]) -> Result<WeightTensor, ModelError> {
        let tensor = self.tensors.get(name).ok_or_else(|| ModelError::Format {
            path: self.path.clone(),
            message: format!("missing parameter {name}"),
        })?;
        if tensor.shape != shape {
            return Err(ModelError::Format {
                path: self.path.clone(),
                message: format!("{name} has shape {:?}, expected {shape:?}", tensor.shape),
            });
        }
        Ok(tensor.clone())
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tensors.keys().map(String::as_str)
    }
}
