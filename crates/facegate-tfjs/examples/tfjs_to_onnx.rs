//! Converts a TF.js graph model to ONNX, for inspection with other tools:
//!
//! ```sh
//! cargo run --release -p facegate-tfjs --example tfjs_to_onnx -- model.json out.onnx [repair...]
//! ```
//!
//! Repairs are named as in `facegate_tfjs::Repair::name` (`unfuse-relu-feeding-prelu`,
//! `negate-prelu-slopes`).

use facegate_models::tfjs::TfjsGraph;
use facegate_tfjs::Repair;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [topology, out, repairs @ ..] = &args[..] else {
        return Err("usage: tfjs_to_onnx MODEL.json OUT.onnx [REPAIR...]".into());
    };
    let mut graph = TfjsGraph::read(topology.as_ref(), None)?;
    for name in repairs {
        let repair = [Repair::UnfuseReluFeedingPrelu, Repair::NegatePreluSlopes]
            .into_iter()
            .find(|r| r.name() == name)
            .ok_or_else(|| format!("unknown repair {name}"))?;
        let changed = repair.apply(&mut graph);
        eprintln!("{name}: {changed} places");
    }
    std::fs::write(out, facegate_tfjs::convert(&graph, "tfjs")?)?;
    Ok(())
}
