//! Inception-ResNet-v1 (Szegedy et al. 2016) as laid out in the Keras FaceNet file: the layer
//! names below are the file's, so each weight is read from `model_weights/<layer>/...`.
//!
//! The graph takes NHWC input (like Keras) and transposes once to NCHW for ONNX Runtime.

use facegate_models::keras_h5::KerasH5;
use facegate_models::ModelError;
use facegate_nn::graph::Dim;
use facegate_nn::{GraphBuilder, Value};

/// Keras `BatchNormalization` default in this file.
const BN_EPSILON: f32 = 0.001;

pub fn build(h5: &KerasH5) -> Result<Vec<u8>, ModelError> {
    let mut net = Net {
        g: GraphBuilder::new("facenet_inception_resnet_v1"),
        h5,
    };
    let x = net.g.input(
        "image_nhwc",
        &[Dim::Batch, Dim::Fixed(160), Dim::Fixed(160), Dim::Fixed(3)],
    );
    let x = net.g.transpose("to_nchw", &x, &[0, 3, 1, 2]);

    // Stem: 160x160x3 -> 17x17x256.
    let x = net.conv_bn("Conv2d_1a_3x3", &x, 3, 32, [3, 3], 2, Padding::Valid)?;
    let x = net.conv_bn("Conv2d_2a_3x3", &x, 32, 32, [3, 3], 1, Padding::Valid)?;
    let x = net.conv_bn("Conv2d_2b_3x3", &x, 32, 64, [3, 3], 1, Padding::Same)?;
    let x = net.g.max_pool("MaxPool_3a_3x3", &x, [3, 3], [2, 2], false);
    let x = net.conv_bn("Conv2d_3b_1x1", &x, 64, 80, [1, 1], 1, Padding::Valid)?;
    let x = net.conv_bn("Conv2d_4a_3x3", &x, 80, 192, [3, 3], 1, Padding::Valid)?;
    let mut x = net.conv_bn("Conv2d_4b_3x3", &x, 192, 256, [3, 3], 2, Padding::Valid)?;

    for i in 1..=5 {
        x = net.block35(&format!("Block35_{i}"), &x)?;
    }
    x = net.mixed_6a(&x)?;
    for i in 1..=10 {
        x = net.block17(&format!("Block17_{i}"), &x)?;
    }
    x = net.mixed_7a(&x)?;
    for i in 1..=5 {
        x = net.block8(&format!("Block8_{i}"), &x, true)?;
    }
    x = net.block8("Block8_6", &x, false)?;

    // Head: average pool, (inference-time no-op dropout), 128-d bottleneck, batch norm.
    let x = net.g.global_average_pool("AvgPool", &x);
    let x = net.g.flatten("AvgPool_flatten", &x, 1);
    let kernel = h5.weight("Bottleneck", "kernel:0", &[1792, 128])?;
    let w = net.g.weight("Bottleneck/kernel", &[1792, 128], kernel.data);
    let x = net.g.matmul("Bottleneck", &x, &w);
    let x = net.batch_norm("Bottleneck_BatchNorm", &x, 128)?;
    net.g.output("embedding_raw", &x);
    Ok(net.g.finish())
}

#[derive(Clone, Copy)]
enum Padding {
    Valid,
    /// TensorFlow "same" at stride 1: the extra pixel of an even kernel goes after.
    Same,
}

struct Net<'a> {
    g: GraphBuilder,
    h5: &'a KerasH5,
}

impl Net<'_> {
    /// Conv2D without bias + BatchNormalization(scale=False) + ReLU: the `<name>`,
    /// `<name>_BatchNorm`, `<name>_Activation` triple of the Keras file.
    #[allow(clippy::too_many_arguments)]
    fn conv_bn(
        &mut self,
        name: &str,
        x: &Value,
        in_channels: usize,
        filters: usize,
        kernel: [usize; 2],
        stride: usize,
        padding: Padding,
    ) -> Result<Value, ModelError> {
        let y = self.conv(
            name,
            x,
            in_channels,
            filters,
            kernel,
            stride,
            padding,
            false,
        )?;
        let y = self.batch_norm(&format!("{name}_BatchNorm"), &y, filters)?;
        Ok(self.g.relu(&format!("{name}_Activation"), &y))
    }

    #[allow(clippy::too_many_arguments)]
    fn conv(
        &mut self,
        name: &str,
        x: &Value,
        in_channels: usize,
        filters: usize,
        [kh, kw]: [usize; 2],
        stride: usize,
        padding: Padding,
        bias: bool,
    ) -> Result<Value, ModelError> {
        let hwio = self
            .h5
            .weight(name, "kernel:0", &[kh, kw, in_channels, filters])?;
        let w = self.g.weight(
            &format!("{name}/kernel"),
            &[filters, in_channels, kh, kw],
            hwio_to_oihw(&hwio.data, [kh, kw, in_channels, filters]),
        );
        let b = if bias {
            let b = self.h5.weight(name, "bias:0", &[filters])?;
            Some(self.g.weight(&format!("{name}/bias"), &[filters], b.data))
        } else {
            None
        };
        let pads = match padding {
            Padding::Valid => [0, 0, 0, 0],
            Padding::Same => [(kh - 1) / 2, (kw - 1) / 2, kh / 2, kw / 2],
        };
        Ok(self.g.conv(name, x, &w, b.as_ref(), [stride, stride], pads))
    }

    fn batch_norm(&mut self, name: &str, x: &Value, channels: usize) -> Result<Value, ModelError> {
        let beta = self.h5.weight(name, "beta:0", &[channels])?;
        let mean = self.h5.weight(name, "moving_mean:0", &[channels])?;
        let variance = self.h5.weight(name, "moving_variance:0", &[channels])?;
        let gamma = self
            .g
            .weight(&format!("{name}/gamma"), &[channels], vec![1.0; channels]);
        let beta = self
            .g
            .weight(&format!("{name}/beta"), &[channels], beta.data);
        let mean = self
            .g
            .weight(&format!("{name}/moving_mean"), &[channels], mean.data);
        let variance = self.g.weight(
            &format!("{name}/moving_variance"),
            &[channels],
            variance.data,
        );
        Ok(self
            .g
            .batch_norm(name, x, &gamma, &beta, &mean, &variance, BN_EPSILON))
    }

    /// The residual update `x + scale * up`, then ReLU unless it is the last block.
    fn residual(
        &mut self,
        block: &str,
        x: &Value,
        mixed: &Value,
        channels_in: usize,
        channels: usize,
        activate: bool,
    ) -> Result<Value, ModelError> {
        let up = self.conv(
            &format!("{block}_Conv2d_1x1"),
            mixed,
            channels_in,
            channels,
            [1, 1],
            1,
            Padding::Same,
            true,
        )?;
        let scale = self.lambda_scale(&format!("{block}_ScaleSum"))?;
        let s = self
            .g
            .weight(&format!("{block}_ScaleSum/scale"), &[1], vec![scale]);
        let scaled = self.g.mul(&format!("{block}_ScaleSum_mul"), &up, &s);
        let sum = self.g.add(&format!("{block}_ScaleSum"), x, &scaled);
        Ok(if activate {
            self.g.relu(&format!("{block}_Activation"), &sum)
        } else {
            sum
        })
    }

    /// The residual scale is an argument of the file's Lambda layers (0.17, 0.1, 0.2, 1.0).
    fn lambda_scale(&self, layer: &str) -> Result<f32, ModelError> {
        self.h5.layer_config(layer)?["arguments"]["scale"]
            .as_f64()
            .map(|s| s as f32)
            .ok_or_else(|| ModelError::Format {
                path: layer.into(),
                message: format!("Lambda layer {layer} has no numeric `scale` argument"),
            })
    }

    /// 35x35 block (17x17 at 160 px input), 256 channels.
    fn block35(&mut self, b: &str, x: &Value) -> Result<Value, ModelError> {
        let b0 = self.conv_bn(
            &format!("{b}_Branch_0_Conv2d_1x1"),
            x,
            256,
            32,
            [1, 1],
            1,
            Padding::Same,
        )?;
        let b1 = self.conv_bn(
            &format!("{b}_Branch_1_Conv2d_0a_1x1"),
            x,
            256,
            32,
            [1, 1],
            1,
            Padding::Same,
        )?;
        let b1 = self.conv_bn(
            &format!("{b}_Branch_1_Conv2d_0b_3x3"),
            &b1,
            32,
            32,
            [3, 3],
            1,
            Padding::Same,
        )?;
        let b2 = self.conv_bn(
            &format!("{b}_Branch_2_Conv2d_0a_1x1"),
            x,
            256,
            32,
            [1, 1],
            1,
            Padding::Same,
        )?;
        let b2 = self.conv_bn(
            &format!("{b}_Branch_2_Conv2d_0b_3x3"),
            &b2,
            32,
            32,
            [3, 3],
            1,
            Padding::Same,
        )?;
        let b2 = self.conv_bn(
            &format!("{b}_Branch_2_Conv2d_0c_3x3"),
            &b2,
            32,
            32,
            [3, 3],
            1,
            Padding::Same,
        )?;
        let mixed = self
            .g
            .concat(&format!("{b}_Concatenate"), &[&b0, &b1, &b2], 1);
        self.residual(b, x, &mixed, 96, 256, true)
    }

    /// Reduction A: 17x17x256 -> 8x8x896.
    fn mixed_6a(&mut self, x: &Value) -> Result<Value, ModelError> {
        let b0 = self.conv_bn(
            "Mixed_6a_Branch_0_Conv2d_1a_3x3",
            x,
            256,
            384,
            [3, 3],
            2,
            Padding::Valid,
        )?;
        let b1 = self.conv_bn(
            "Mixed_6a_Branch_1_Conv2d_0a_1x1",
            x,
            256,
            192,
            [1, 1],
            1,
            Padding::Same,
        )?;
        let b1 = self.conv_bn(
            "Mixed_6a_Branch_1_Conv2d_0b_3x3",
            &b1,
            192,
            192,
            [3, 3],
            1,
            Padding::Same,
        )?;
        let b1 = self.conv_bn(
            "Mixed_6a_Branch_1_Conv2d_1a_3x3",
            &b1,
            192,
            256,
            [3, 3],
            2,
            Padding::Valid,
        )?;
        let b2 = self
            .g
            .max_pool("Mixed_6a_Branch_2_MaxPool_1a_3x3", x, [3, 3], [2, 2], false);
        Ok(self.g.concat("Mixed_6a", &[&b0, &b1, &b2], 1))
    }

    /// 17x17 block (8x8 here), 896 channels.
    fn block17(&mut self, b: &str, x: &Value) -> Result<Value, ModelError> {
        let b0 = self.conv_bn(
            &format!("{b}_Branch_0_Conv2d_1x1"),
            x,
            896,
            128,
            [1, 1],
            1,
            Padding::Same,
        )?;
        let b1 = self.conv_bn(
            &format!("{b}_Branch_1_Conv2d_0a_1x1"),
            x,
            896,
            128,
            [1, 1],
            1,
            Padding::Same,
        )?;
        let b1 = self.conv_bn(
            &format!("{b}_Branch_1_Conv2d_0b_1x7"),
            &b1,
            128,
            128,
            [1, 7],
            1,
            Padding::Same,
        )?;
        let b1 = self.conv_bn(
            &format!("{b}_Branch_1_Conv2d_0c_7x1"),
            &b1,
            128,
            128,
            [7, 1],
            1,
            Padding::Same,
        )?;
        let mixed = self.g.concat(&format!("{b}_Concatenate"), &[&b0, &b1], 1);
        self.residual(b, x, &mixed, 256, 896, true)
    }

    /// Reduction B: 8x8x896 -> 3x3x1792.
    fn mixed_7a(&mut self, x: &Value) -> Result<Value, ModelError> {
        let b0 = self.conv_bn(
            "Mixed_7a_Branch_0_Conv2d_0a_1x1",
            x,
            896,
            256,
            [1, 1],
            1,
            Padding::Same,
        )?;
        let b0 = self.conv_bn(
            "Mixed_7a_Branch_0_Conv2d_1a_3x3",
            &b0,
            256,
            384,
            [3, 3],
            2,
            Padding::Valid,
        )?;
        let b1 = self.conv_bn(
            "Mixed_7a_Branch_1_Conv2d_0a_1x1",
            x,
            896,
            256,
            [1, 1],
            1,
            Padding::Same,
        )?;
        let b1 = self.conv_bn(
            "Mixed_7a_Branch_1_Conv2d_1a_3x3",
            &b1,
            256,
            256,
            [3, 3],
            2,
            Padding::Valid,
        )?;
        let b2 = self.conv_bn(
            "Mixed_7a_Branch_2_Conv2d_0a_1x1",
            x,
            896,
            256,
            [1, 1],
            1,
            Padding::Same,
        )?;
        let b2 = self.conv_bn(
            "Mixed_7a_Branch_2_Conv2d_0b_3x3",
            &b2,
            256,
            256,
            [3, 3],
            1,
            Padding::Same,
        )?;
        let b2 = self.conv_bn(
            "Mixed_7a_Branch_2_Conv2d_1a_3x3",
            &b2,
            256,
            256,
            [3, 3],
            2,
            Padding::Valid,
        )?;
        let b3 = self
            .g
            .max_pool("Mixed_7a_Branch_3_MaxPool_1a_3x3", x, [3, 3], [2, 2], false);
        Ok(self.g.concat("Mixed_7a", &[&b0, &b1, &b2, &b3], 1))
    }

    /// 8x8 block (3x3 here), 1792 channels.
    fn block8(&mut self, b: &str, x: &Value, activate: bool) -> Result<Value, ModelError> {
        let b0 = self.conv_bn(
            &format!("{b}_Branch_0_Conv2d_1x1"),
            x,
            1792,
            192,
            [1, 1],
            1,
            Padding::Same,
        )?;
        let b1 = self.conv_bn(
            &format!("{b}_Branch_1_Conv2d_0a_1x1"),
            x,
            1792,
            192,
            [1, 1],
            1,
            Padding::Same,
        )?;
        let b1 = self.conv_bn(
            &format!("{b}_Branch_1_Conv2d_0b_1x3"),
            &b1,
            192,
            192,
            [1, 3],
            1,
            Padding::Same,
        )?;
        let b1 = self.conv_bn(
            &format!("{b}_Branch_1_Conv2d_0c_3x1"),
            &b1,
            192,
            192,
            [3, 1],
            1,
            Padding::Same,
        )?;
        let mixed = self.g.concat(&format!("{b}_Concatenate"), &[&b0, &b1], 1);
        self.residual(b, x, &mixed, 384, 1792, activate)
    }
}

/// Keras kernels are `[h, w, in, out]`; ONNX wants `[out, in, h, w]`.
fn hwio_to_oihw(data: &[f32], [h, w, i, o]: [usize; 4]) -> Vec<f32> {
    let mut out = vec![0.0; data.len()];
    for y in 0..h {
        for x in 0..w {
            for c in 0..i {
                for f in 0..o {
                    out[((f * i + c) * h + y) * w + x] = data[((y * w + x) * i + c) * o + f];
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_layout_conversion() {
        // h=1, w=2, in=1, out=2: HWIO [[ [a0,a1] ], [ [b0,b1] ]]
        let hwio = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(hwio_to_oihw(&hwio, [1, 2, 1, 2]), vec![1.0, 3.0, 2.0, 4.0]);
    }
}
