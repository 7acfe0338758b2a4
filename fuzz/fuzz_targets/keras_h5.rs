//! Any bytes as the Keras FaceNet HDF5 file: the reader must refuse, not panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "support.rs"]
mod support;

fuzz_target!(|data: &[u8]| {
    let path = support::scratch_file("model.h5", data);
    if let Ok(h5) = facegate_models::keras_h5::KerasH5::open(&path) {
        let _ = h5.layer_config("Conv2d_1a_3x3");
        let _ = h5.weight("Conv2d_1a_3x3", "kernel:0", &[3, 3, 3, 32]);
    }
});
