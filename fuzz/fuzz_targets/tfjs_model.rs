//! Any bytes as a TF.js model: the first byte splits the input into `model.json` and its
//! weight shard.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "support.rs"]
mod support;

fuzz_target!(|data: &[u8]| {
    let Some((&split, rest)) = data.split_first() else {
        return;
    };
    let at = (split as usize * rest.len()) / 256;
    let (json, weights) = rest.split_at(at);
    let topology = support::scratch_file("model.json", json);
    let shard = support::scratch_file("model.bin", weights);
    let _ = facegate_models::tfjs::TfjsGraph::read(&topology, Some(&[shard]));
});
