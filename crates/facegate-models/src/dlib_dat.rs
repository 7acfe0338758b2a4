//! Reads dlib's serialization format (`dlib::serialize`), as used by the face-recognition
//! ResNet and the 5-point shape predictor in `face-recognition-models==0.3.0`.
//!
//! Specification: `tools/golden/dlib_format.md`.

use std::path::{Path, PathBuf};

use crate::ModelError;

/// A cursor over a dlib-serialized file.
pub struct DlibReader<'a> {
    bytes: &'a [u8],
    pos: usize,
    path: &'a Path,
}

impl<'a> DlibReader<'a> {
    pub fn new(bytes: &'a [u8], path: &'a Path) -> Self {
        DlibReader {
            bytes,
            pos: 0,
            path,
        }
    }

    pub fn position(&self) -> usize {
        self.pos
    }

    pub fn at_end(&self) -> bool {
        self.pos == self.bytes.len()
    }

    pub fn error(&self, message: impl Into<String>) -> ModelError {
        ModelError::Format {
            path: PathBuf::from(self.path),
            message: format!("at byte {}: {}", self.pos, message.into()),
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], ModelError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.bytes.len());
        let Some(end) = end else {
            return Err(self.error("unexpected end of file"));
        };
        let slice = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(slice)
    }

    /// dlib's variable-length integer: a control byte (bit 7 sign, low 4 bits byte count)
    /// then the magnitude, little endian.
    pub fn int(&mut self) -> Result<i64, ModelError> {
        let control = self.take(1)?[0];
        let n = usize::from(control & 0x0F);
        if control & 0x70 != 0 || n == 0 || n > 8 {
            return Err(self.error(format!("bad integer control byte {control:#04x}")));
        }
        let mut magnitude = 0u64;
        for (i, &b) in self.take(n)?.iter().enumerate() {
            magnitude |= u64::from(b) << (8 * i);
        }
        let value = i64::try_from(magnitude).map_err(|_| self.error("integer out of range"))?;
        Ok(if control & 0x80 != 0 { -value } else { value })
    }

    pub fn usize(&mut self) -> Result<usize, ModelError> {
        let v = self.int()?;
        usize::try_from(v).map_err(|_| self.error(format!("expected a count, got {v}")))
    }

    /// dlib's portable float: mantissa and exponent integers, value = m · 2^e.
    pub fn float(&mut self) -> Result<f64, ModelError> {
        let mantissa = self.int()?;
        let exponent = self.int()?;
        Ok(match exponent {
            32000 => f64::INFINITY,
            32001 => f64::NEG_INFINITY,
            32002 => f64::NAN,
            e if (-2000..2000).contains(&e) => (mantissa as f64) * 2f64.powi(e as i32),
            e => return Err(self.error(format!("float exponent {e} out of range"))),
        })
    }

    pub fn bool(&mut self) -> Result<bool, ModelError> {
        match self.take(1)?[0] {
            b'1' => Ok(true),
            b'0' => Ok(false),
            other => Err(self.error(format!("bad bool byte {other:#04x}"))),
        }
    }

    pub fn string(&mut self) -> Result<String, ModelError> {
        let n = self.usize()?;
        let bytes = self.take(n)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| self.error("string is not UTF-8"))
    }

    pub fn expect_string(&mut self, wanted: &str) -> Result<(), ModelError> {
        let found = self.string()?;
        if found != wanted {
            return Err(self.error(format!("expected {wanted:?}, found {found:?}")));
        }
        Ok(())
    }

    /// A dnn tensor: version 2, n, k, nr, nc, then raw little-endian f32 values.
    pub fn tensor(&mut self) -> Result<(Vec<usize>, Vec<f32>), ModelError> {
        let version = self.int()?;
        if version != 2 {
            return Err(self.error(format!("tensor version {version}, expected 2")));
        }
        let shape = [self.usize()?, self.usize()?, self.usize()?, self.usize()?];
        let count = shape
            .iter()
            .try_fold(1usize, |acc, &d| acc.checked_mul(d))
            .filter(|&c| c <= 64 << 20)
            .ok_or_else(|| self.error("tensor too large"))?;
        let raw = self.take(count * 4)?;
        let data = raw
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        Ok((shape.to_vec(), data))
    }

    /// An alias tensor (a shape only): version 1, n, k, nr, nc.
    pub fn alias(&mut self) -> Result<[usize; 4], ModelError> {
        let version = self.int()?;
        if version != 1 {
            return Err(self.error(format!("alias tensor version {version}, expected 1")));
        }
        Ok([self.usize()?, self.usize()?, self.usize()?, self.usize()?])
    }

    /// A column vector `matrix<float,0,1>`: -rows, -cols, then portable floats.
    pub fn column(&mut self) -> Result<Vec<f32>, ModelError> {
        let (rows, cols) = (self.int()?, self.int()?);
        if rows > 0 || cols != -1 {
            return Err(self.error(format!(
                "expected a column vector header, got {rows} x {cols}"
            )));
        }
        let n = usize::try_from(-rows).map_err(|_| self.error("bad row count"))?;
        (0..n).map(|_| self.float().map(|v| v as f32)).collect()
    }
}

/// One layer of the face-recognition ResNet, in forward order.
#[derive(Clone, Debug, PartialEq)]
pub enum DlibLayer {
    /// Weights `[filters, in, rows, cols]`, bias per filter.
    Conv {
        filters: usize,
        inputs: usize,
        rows: usize,
        cols: usize,
        stride: usize,
        padding: usize,
        weights: Vec<f32>,
        bias: Vec<f32>,
    },
    /// Per-channel `x * gamma + beta` (batch norm folded at training end).
    Affine {
        gamma: Vec<f32>,
        beta: Vec<f32>,
    },
    Relu,
    MaxPool {
        size: usize,
        stride: usize,
        padding: usize,
    },
    /// `size` 0 = the whole input.
    AvgPool {
        size: usize,
        stride: usize,
        padding: usize,
    },
    AddPrev,
    /// Weights `[inputs, outputs]` row-major, no bias.
    Fc {
        inputs: usize,
        outputs: usize,
        weights: Vec<f32>,
    },
}

/// The face-recognition network: input means and the layers, input side first.
#[derive(Clone, Debug)]
pub struct DlibNet {
    /// Subtracted from R, G, B before dividing by 256.
    pub input_means: [f32; 3],
    pub input_size: usize,
    pub layers: Vec<DlibLayer>,
}

/// Parses `dlib_face_recognition_resnet_model_v1.dat`.
pub fn read_resnet(path: &Path) -> Result<DlibNet, ModelError> {
    let bytes = std::fs::read(path).map_err(ModelError::io("could not read", path))?;
    let mut r = DlibReader::new(&bytes, path);
    if r.int()? != 1 {
        return Err(r.error("not a dlib loss layer"));
    }
    r.expect_string("loss_metric_2")?;
    r.float()?;
    r.float()?;
    // The wrapper versions of every layer, top-down: 2 = layer, 1 = tag/skip, 3 = bottom layer.
    let mut wrappers = Vec::new();
    loop {
        let v = r.int()?;
        wrappers.push(v);
        if v == 3 {
            break;
        }
        if !(v == 1 || v == 2) || wrappers.len() > 1000 {
            return Err(r.error(format!("unexpected layer wrapper version {v}")));
        }
    }
    let layer_count = wrappers.iter().filter(|&&v| v != 1).count();
    r.expect_string("input_rgb_image_sized")?;
    let means = [r.float()? as f32, r.float()? as f32, r.float()? as f32];
    let (rows, cols) = (r.usize()?, r.usize()?);
    if rows != cols {
        return Err(r.error("non-square input"));
    }
    let mut layers = Vec::with_capacity(layer_count);
    for index in 0..layer_count {
        let kind = r.string()?;
        let layer = match kind.as_str() {
            "con_4" => {
                let (_, params) = r.tensor()?;
                let filters = r.usize()?;
                let (nr, nc) = (r.usize()?, r.usize()?);
                let (sy, sx) = (r.usize()?, r.usize()?);
                let (py, px) = (r.usize()?, r.usize()?);
                let shape = r.alias()?;
                r.alias()?;
                for _ in 0..4 {
                    r.float()?;
                }
                if sy != sx || py != px || nr != nc || shape[0] != filters {
                    return Err(r.error("only square convolutions are supported"));
                }
                let inputs = shape[1];
                let count = filters * inputs * nr * nc;
                if params.len() != count + filters {
                    return Err(r.error("convolution parameter count mismatch"));
                }
                DlibLayer::Conv {
                    filters,
                    inputs,
                    rows: nr,
                    cols: nc,
                    stride: sy,
                    padding: py,
                    weights: params[..count].to_vec(),
                    bias: params[count..].to_vec(),
                }
            }
            "affine_" => {
                let (_, params) = r.tensor()?;
                r.alias()?;
                r.alias()?;
                let mode = r.int()?;
                if mode != 0 || params.len() % 2 != 0 {
                    return Err(r.error("only per-channel affine layers are supported"));
                }
                let k = params.len() / 2;
                DlibLayer::Affine {
                    gamma: params[..k].to_vec(),
                    beta: params[k..].to_vec(),
                }
            }
            "relu_" => DlibLayer::Relu,
            "add_prev_" => DlibLayer::AddPrev,
            "max_pool_2" | "avg_pool_2" => {
                let (nr, nc) = (r.usize()?, r.usize()?);
                let (sy, sx) = (r.usize()?, r.usize()?);
                let (py, px) = (r.usize()?, r.usize()?);
                if nr != nc || sy != sx || py != px {
                    return Err(r.error("only square pools are supported"));
                }
                if kind == "max_pool_2" {
                    DlibLayer::MaxPool {
                        size: nr,
                        stride: sy,
                        padding: py,
                    }
                } else {
                    DlibLayer::AvgPool {
                        size: nr,
                        stride: sy,
                        padding: py,
                    }
                }
            }
            "fc_2" => {
                let outputs = r.usize()?;
                let inputs = r.usize()?;
                let (_, params) = r.tensor()?;
                r.alias()?;
                r.alias()?;
                let bias_mode = r.int()?;
                for _ in 0..4 {
                    r.float()?;
                }
                if bias_mode != 1 || params.len() != inputs * outputs {
                    return Err(r.error("only fully connected layers without bias are supported"));
                }
                DlibLayer::Fc {
                    inputs,
                    outputs,
                    weights: params,
                }
            }
            other => return Err(r.error(format!("unsupported layer type {other:?}"))),
        };
        // Per-layer bookkeeping: 3 bools and 3 (empty) tensors; the bottom layer adds an int.
        for _ in 0..3 {
            r.bool()?;
        }
        for _ in 0..3 {
            r.tensor()?;
        }
        if index == 0 {
            r.int()?;
        }
        layers.push(layer);
    }
    if !r.at_end() {
        return Err(r.error("trailing bytes after the last layer"));
    }
    Ok(DlibNet {
        input_means: means,
        input_size: rows,
        layers,
    })
}

/// One regression tree of the shape predictor: 15 splits in heap order, 16 leaves.
#[derive(Clone, Debug, PartialEq)]
pub struct RegressionTree {
    /// `(idx1, idx2, threshold)`: go left when `feature[idx1] - feature[idx2] > threshold`.
    pub splits: Vec<(usize, usize, f32)>,
    /// Shape updates (10 values each).
    pub leaves: Vec<Vec<f32>>,
}

/// dlib's 5-point shape predictor (Kazemi & Sullivan 2014): a cascade of tree forests.
#[derive(Clone, Debug)]
pub struct ShapePredictorModel {
    /// Mean shape in rectangle units: x0, y0, ..., x4, y4.
    pub initial_shape: Vec<f32>,
    /// Per cascade level: the trees.
    pub forests: Vec<Vec<RegressionTree>>,
    /// Per level: for each feature pixel, the landmark it is anchored to...
    pub anchor_idx: Vec<Vec<usize>>,
    /// ...and its offset from it (mean-shape units).
    pub deltas: Vec<Vec<[f32; 2]>>,
}

/// Parses `shape_predictor_5_face_landmarks.dat`.
pub fn read_shape_predictor(path: &Path) -> Result<ShapePredictorModel, ModelError> {
    let bytes = std::fs::read(path).map_err(ModelError::io("could not read", path))?;
    let mut r = DlibReader::new(&bytes, path);
    if r.int()? != 1 {
        return Err(r.error("unknown shape predictor version"));
    }
    let initial_shape = r.column()?;
    let parts = initial_shape.len() / 2;
    let levels = r.usize()?;
    let mut forests = Vec::with_capacity(levels.min(100));
    for _ in 0..levels {
        let trees = r.usize()?;
        let mut forest = Vec::with_capacity(trees.min(10_000));
        for _ in 0..trees {
            let n_splits = r.usize()?;
            let mut splits = Vec::with_capacity(n_splits.min(1024));
            for _ in 0..n_splits {
                splits.push((r.usize()?, r.usize()?, r.float()? as f32));
            }
            let n_leaves = r.usize()?;
            let leaves = (0..n_leaves)
                .map(|_| r.column())
                .collect::<Result<Vec<_>, _>>()?;
            if leaves.len() != n_splits + 1 || leaves.iter().any(|l| l.len() != 2 * parts) {
                return Err(r.error("malformed regression tree"));
            }
            forest.push(RegressionTree { splits, leaves });
        }
        forests.push(forest);
    }
    let n = r.usize()?;
    let anchor_idx = (0..n)
        .map(|_| {
            let k = r.usize()?;
            (0..k).map(|_| r.usize()).collect::<Result<Vec<_>, _>>()
        })
        .collect::<Result<Vec<_>, _>>()?;
    let n = r.usize()?;
    let deltas = (0..n)
        .map(|_| {
            let k = r.usize()?;
            (0..k)
                .map(|_| Ok([r.float()? as f32, r.float()? as f32]))
                .collect::<Result<Vec<_>, ModelError>>()
        })
        .collect::<Result<Vec<_>, _>>()?;
    if !r.at_end() || anchor_idx.len() != forests.len() || deltas.len() != forests.len() {
        return Err(r.error("inconsistent shape predictor"));
    }
    let features_ok =
        forests
            .iter()
            .zip(&anchor_idx)
            .zip(&deltas)
            .all(|((forest, anchors), deltas)| {
                anchors.len() == deltas.len()
                    && anchors.iter().all(|&a| a < parts)
                    && forest.iter().all(|t| {
                        t.splits
                            .iter()
                            .all(|&(a, b, _)| a < anchors.len() && b < anchors.len())
                    })
            });
    if !features_ok {
        return Err(r.error("feature indices out of range"));
    }
    Ok(ShapePredictorModel {
        initial_shape,
        forests,
        anchor_idx,
        deltas,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reader(bytes: &[u8]) -> DlibReader<'_> {
        DlibReader::new(bytes, Path::new("test"))
    }

    #[test]
    fn integers_from_the_spec() {
        for (bytes, value) in [
            (&[0x01, 0x02][..], 2),
            (&[0x02, 0x80, 0x12], 0x1280),
            (&[0x81, 0x0a], -10),
            (&[0x01, 0x00], 0),
            (&[0x02, 0x00, 0x01], 256),
        ] {
            assert_eq!(reader(bytes).int().unwrap(), value);
        }
        assert!(reader(&[0x20, 0x00]).int().is_err());
        assert!(reader(&[0x02, 0x01]).int().is_err(), "truncated");
    }

    #[test]
    fn floats_from_the_spec() {
        let f = |b: &[u8]| reader(b).float().unwrap() as f32;
        assert_eq!(f(&[0x03, 0x0a, 0xd7, 0xa3, 0x81, 0x1c]), 0.04);
        assert_eq!(f(&[0x03, 0x9a, 0x99, 0x99, 0x81, 0x18]), 0.6);
        assert_eq!(f(&[0x03, 0x62, 0x90, 0xf5, 0x81, 0x11]), 122.782);
        assert_eq!(f(&[0x01, 0x10, 0x81, 0x04]), 1.0);
        assert_eq!(f(&[0x01, 0x00, 0x01, 0x0b]), 0.0);
    }

    #[test]
    fn strings_bools_and_empty_tensors() {
        let mut r = reader(&[
            0x01, 0x05, b'c', b'o', b'n', b'_', b'4', b'1', b'0', 0x01, 0x02, 0x01, 0x00, 0x01,
            0x00, 0x01, 0x00, 0x01, 0x00,
        ]);
        assert_eq!(r.string().unwrap(), "con_4");
        assert!(r.bool().unwrap());
        assert!(!r.bool().unwrap());
        let (shape, data) = r.tensor().unwrap();
        assert_eq!(shape, vec![0, 0, 0, 0]);
        assert!(data.is_empty() && r.at_end());
    }
}
