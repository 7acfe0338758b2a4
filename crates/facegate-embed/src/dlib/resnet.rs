//! dlib's face-recognition ResNet (`dlib_face_recognition_resnet_model_v1`): a 29-conv ResNet
//! on 150x150 chips, 128-d out. The file stores layers but not their wiring (dlib's tags and
//! skips are C++ template parameters), so the wiring is written out here, as in dlib's
//! `dnn_face_recognition_ex.cpp`:
//!
//! ```text
//! con 7x7/2 (32) · affine · relu · max_pool 3x3/2
//! 3 x block(32) · down(64) + 3 x block(64) · down(128) + 2 x block(128)
//! down(256) + 2 x block(256) · down(256) · global average pool · fc 128 (no bias)
//! block(N)  = relu(x + affine(con3x3(relu(affine(con3x3(x))))))
//! down(N)   = relu(avg_pool2x2/2(x) ⊕ affine(con3x3(relu(affine(con3x3/2(x))))))
//! ```
//!
//! `⊕` is dlib's `add_prev` on tensors of different shapes: the result has the larger size on
//! every axis and each side reads as zero outside its own extent.

use facegate_models::dlib_dat::{DlibLayer, DlibNet};
use facegate_models::ModelError;
use facegate_nn::graph::Dim;
use facegate_nn::{GraphBuilder, Value};

/// A value and its (C, H, W) shape, tracked to wire the zero-padded additions.
#[derive(Clone)]
struct Tensor {
    value: Value,
    shape: [usize; 3],
}

struct Net<'a> {
    g: GraphBuilder,
    layers: std::slice::Iter<'a, DlibLayer>,
    count: usize,
    path: &'a std::path::Path,
}

pub fn build(net: &DlibNet, path: &std::path::Path) -> Result<Vec<u8>, ModelError> {
    let size = net.input_size;
    let mut n = Net {
        g: GraphBuilder::new("dlib_face_recognition_resnet_v1"),
        layers: net.layers.iter(),
        count: 0,
        path,
    };
    let input = n.g.input(
        "chip",
        &[
            Dim::Batch,
            Dim::Fixed(3),
            Dim::Fixed(size as i64),
            Dim::Fixed(size as i64),
        ],
    );
    let mut x = Tensor {
        value: input,
        shape: [3, size, size],
    };
    x = n.conv(&x)?;
    x = n.affine(&x)?;
    x = n.relu(&x)?;
    x = n.max_pool(&x)?;
    for _ in 0..3 {
        x = n.block(&x)?;
    }
    for (blocks, _) in [(3, 64), (2, 128), (2, 256), (0, 256)] {
        x = n.down(&x)?;
        for _ in 0..blocks {
            x = n.block(&x)?;
        }
    }
    let pooled = match n.next()? {
        DlibLayer::AvgPool { size: 0, .. } => {
            n.g.global_average_pool("avg_pool_everything", &x.value)
        }
        other => return Err(n.unexpected("avg_pool_everything", other)),
    };
    let flat = n.g.flatten("flatten", &pooled, 1);
    let out = match n.next()? {
        DlibLayer::Fc {
            inputs,
            outputs,
            weights,
        } if *inputs == x.shape[0] => {
            let w =
                n.g.weight("fc/weights", &[*inputs, *outputs], weights.clone());
            n.g.matmul("fc", &flat, &w)
        }
        other => return Err(n.unexpected("fc", other)),
    };
    if n.layers.next().is_some() {
        return Err(n.error("more layers than the architecture has".into()));
    }
    n.g.output("descriptor", &out);
    Ok(n.g.finish())
}

impl<'a> Net<'a> {
    fn next(&mut self) -> Result<&'a DlibLayer, ModelError> {
        self.count += 1;
        self.layers.next().ok_or_else(|| ModelError::Format {
            path: self.path.to_path_buf(),
            message: "the network file has fewer layers than the architecture".into(),
        })
    }

    fn error(&self, message: String) -> ModelError {
        ModelError::Format {
            path: self.path.to_path_buf(),
            message,
        }
    }

    fn unexpected(&self, wanted: &str, found: &DlibLayer) -> ModelError {
        let kind = format!("{found:?}");
        let kind = kind
            .split([' ', '{', '('])
            .next()
            .unwrap_or_default()
            .to_string();
        self.error(format!(
            "layer {} should be {wanted}, found {kind}",
            self.count
        ))
    }

    fn name(&self, kind: &str) -> String {
        format!("{kind}_{}", self.count)
    }

    fn conv(&mut self, x: &Tensor) -> Result<Tensor, ModelError> {
        let DlibLayer::Conv {
            filters,
            inputs,
            rows,
            cols,
            stride,
            padding,
            weights,
            bias,
        } = self.next()?
        else {
            let layer = self.layers.as_slice().first().cloned();
            return Err(self.error(format!(
                "layer {} should be a convolution ({layer:?})",
                self.count
            )));
        };
        if *inputs != x.shape[0] || rows != cols {
            return Err(self.error(format!(
                "convolution {} expects {inputs} channels, gets {}",
                self.count, x.shape[0]
            )));
        }
        let name = self.name("con");
        let w = self.g.weight(
            &format!("{name}/w"),
            &[*filters, *inputs, *rows, *cols],
            weights.clone(),
        );
        let b = self
            .g
            .weight(&format!("{name}/b"), &[*filters], bias.clone());
        let p = *padding;
        let value = self.g.conv(
            &name,
            &x.value,
            &w,
            Some(&b),
            [*stride, *stride],
            [p, p, p, p],
        );
        let out = |d: usize| (d + 2 * p - rows) / stride + 1;
        Ok(Tensor {
            value,
            shape: [*filters, out(x.shape[1]), out(x.shape[2])],
        })
    }

    fn affine(&mut self, x: &Tensor) -> Result<Tensor, ModelError> {
        let layer = self.next()?;
        let DlibLayer::Affine { gamma, beta } = layer else {
            return Err(self.unexpected("affine", layer));
        };
        let c = x.shape[0];
        if gamma.len() != c {
            return Err(self.error(format!(
                "affine layer {} has {} channels, expected {c}",
                self.count,
                gamma.len()
            )));
        }
        let name = self.name("affine");
        let g = self
            .g
            .weight(&format!("{name}/gamma"), &[c, 1, 1], gamma.clone());
        let b = self
            .g
            .weight(&format!("{name}/beta"), &[c, 1, 1], beta.clone());
        let scaled = self.g.mul(&format!("{name}/mul"), &x.value, &g);
        let value = self.g.add(&name, &scaled, &b);
        Ok(Tensor {
            value,
            shape: x.shape,
        })
    }

    fn relu(&mut self, x: &Tensor) -> Result<Tensor, ModelError> {
        let layer = self.next()?;
        if *layer != DlibLayer::Relu {
            return Err(self.unexpected("relu", layer));
        }
        let name = self.name("relu");
        Ok(Tensor {
            value: self.g.relu(&name, &x.value),
            shape: x.shape,
        })
    }

    fn max_pool(&mut self, x: &Tensor) -> Result<Tensor, ModelError> {
        let layer = self.next()?;
        let DlibLayer::MaxPool {
            size,
            stride,
            padding: 0,
        } = layer
        else {
            return Err(self.unexpected("max_pool (no padding)", layer));
        };
        let name = self.name("max_pool");
        let value = self
            .g
            .max_pool(&name, &x.value, [*size, *size], [*stride, *stride], false);
        let out = |d: usize| (d - size) / stride + 1;
        Ok(Tensor {
            value,
            shape: [x.shape[0], out(x.shape[1]), out(x.shape[2])],
        })
    }

    fn block(&mut self, x: &Tensor) -> Result<Tensor, ModelError> {
        let y = self.conv(x)?;
        let y = self.affine(&y)?;
        let y = self.relu(&y)?;
        let y = self.conv(&y)?;
        let y = self.affine(&y)?;
        let sum = self.add_prev(&y, x)?;
        self.relu(&sum)
    }

    fn down(&mut self, x: &Tensor) -> Result<Tensor, ModelError> {
        let y = self.conv(x)?;
        let y = self.affine(&y)?;
        let y = self.relu(&y)?;
        let y = self.conv(&y)?;
        let y = self.affine(&y)?;
        let layer = self.next()?;
        let DlibLayer::AvgPool {
            size,
            stride,
            padding: 0,
        } = layer
        else {
            return Err(self.unexpected("avg_pool (no padding)", layer));
        };
        let name = self.name("avg_pool");
        let pooled = Tensor {
            value: self
                .g
                .average_pool(&name, &x.value, [*size, *size], [*stride, *stride]),
            shape: [
                x.shape[0],
                (x.shape[1] - size) / stride + 1,
                (x.shape[2] - size) / stride + 1,
            ],
        };
        let sum = self.add_prev(&pooled, &y)?;
        self.relu(&sum)
    }

    /// dlib's `add_prev`: zero-pad both sides to the larger shape, then add.
    fn add_prev(&mut self, a: &Tensor, b: &Tensor) -> Result<Tensor, ModelError> {
        let layer = self.next()?;
        if *layer != DlibLayer::AddPrev {
            return Err(self.unexpected("add_prev", layer));
        }
        let name = self.name("add_prev");
        let shape = [
            a.shape[0].max(b.shape[0]),
            a.shape[1].max(b.shape[1]),
            a.shape[2].max(b.shape[2]),
        ];
        let mut padded = |t: &Tensor, side: &str| {
            if t.shape == shape {
                return t.value.clone();
            }
            let after = [
                0,
                shape[0] - t.shape[0],
                shape[1] - t.shape[1],
                shape[2] - t.shape[2],
            ];
            self.g
                .pad(&format!("{name}/pad_{side}"), &t.value, [0; 4], after)
        };
        let (pa, pb) = (padded(a, "a"), padded(b, "b"));
        Ok(Tensor {
            value: self.g.add(&name, &pa, &pb),
            shape,
        })
    }
}
