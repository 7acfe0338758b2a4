//! Any bytes as an MTCNN PyTorch checkpoint (zip + pickle).
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "support.rs"]
mod support;

fuzz_target!(|data: &[u8]| {
    let path = support::scratch_file("pnet.pt", data);
    if let Ok(dict) = facegate_models::torch_pt::StateDict::open(&path) {
        let _ = dict.tensor("conv1.weight", &[10, 3, 3, 3]);
    }
});
