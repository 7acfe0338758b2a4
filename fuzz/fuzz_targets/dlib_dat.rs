//! Any bytes as dlib's ResNet and shape-predictor files.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "support.rs"]
mod support;

fuzz_target!(|data: &[u8]| {
    let path = support::scratch_file("model.dat", data);
    let _ = facegate_models::dlib_dat::read_resnet(&path);
    let _ = facegate_models::dlib_dat::read_shape_predictor(&path);
});
