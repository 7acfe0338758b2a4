//! Evaluation reports: JSON, a Markdown summary, and the ROC curve as a PNG.

use std::path::Path;

use anyhow::{Context as _, Result};
use facegate::eval::{IdentifyReport, PairsReport};
use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};

/// DejaVu Sans (free license, see assets/DejaVuSans-LICENSE.txt), embedded so plots render the
/// same everywhere without system fonts.
static FONT: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");

pub fn pairs_markdown(r: &PairsReport, pairs_file: &Path, seconds: f64) -> String {
    let mut md = String::new();
    md.push_str(&format!("## Verification: {}\n\n", pairs_file.display()));
    md.push_str(&format!(
        "pipeline `{}`; {} pairs ({} same, {} different), {} images, {:.0} s\n\n",
        r.pipeline, r.pairs, r.genuine_pairs, r.impostor_pairs, r.images, seconds
    ));
    md.push_str("| metric | value |\n|---|---|\n");
    md.push_str(&format!(
        "| accuracy ({}-fold, threshold chosen on the other folds) | {:.2}% ± {:.2}% |\n",
        r.folds.len(),
        r.accuracy_mean * 100.0,
        r.accuracy_std * 100.0
    ));
    md.push_str(&format!("| ROC AUC | {:.4} |\n", r.auc));
    md.push_str(&format!(
        "| EER | {:.2}% (threshold {:.3}) |\n",
        r.eer * 100.0,
        r.eer_threshold
    ));
    md.push_str(&format!(
        "| best threshold (all pairs) | {:.3} ({:.2}%) |\n",
        r.best_threshold,
        r.best_threshold_accuracy * 100.0
    ));
    for t in &r.tar_at_far {
        let value = match (t.tar, t.resolvable) {
            (Some(tar), true) => format!(
                "{:.2}% (threshold {:.3}; {:.1} impostor pairs at this FAR)",
                tar * 100.0,
                t.threshold.unwrap_or(f32::NAN),
                t.impostors_at_far
            ),
            _ => format!(
                "not measurable: {} impostor pairs cannot resolve it",
                r.impostor_pairs
            ),
        };
        md.push_str(&format!("| TAR @ FAR {:.0e} | {value} |\n", t.far));
    }
    if let Some(at) = &r.at_decision_threshold {
        md.push_str(&format!(
            "| at the decision threshold {:.3} | {} of {} genuine pairs accepted ({:.2}%), {} of {} impostor pairs accepted (FAR {:.2e}) |\n",
            at.threshold,
            at.genuine_accepted,
            r.genuine_pairs,
            at.tar * 100.0,
            at.impostors_accepted,
            r.impostor_pairs,
            at.far
        ));
    }
    md.push_str(&format!(
        "| images without a detected face | {} of {} |\n",
        r.images_without_face, r.images
    ));
    md.push_str(&format!("\nNo-face policy: {}.\n", r.no_face_policy));
    if let Some(at) = &r.at_decision_threshold {
        md.push_str(&format!("\nDecision threshold: {}.\n", at.threshold_note));
    }
    md.push_str("\nPer fold (threshold, accuracy): ");
    let folds: Vec<String> = r
        .folds
        .iter()
        .map(|f| format!("{:.3} / {:.2}%", f.threshold, f.accuracy * 100.0))
        .collect();
    md.push_str(&folds.join(", "));
    md.push('\n');
    md.push_str(&quality_markdown(&r.quality));
    md
}

/// The error-versus-reject section: FNMR and FMR at the FAR-1e-3 threshold as the worst
/// pairs on each quality factor are set aside, then the gate levels.
fn quality_markdown(q: &facegate::eval::QualityEffect) -> String {
    let mut md = format!(
        "\n### Quality: error versus reject (threshold {:.3}, FAR 1e-3 on all pairs)\n\n",
        q.threshold
    );
    let Some(first) = q.curves.first() else {
        return md;
    };
    md.push_str("FNMR (FMR) after setting aside the worst pairs on one factor (a pair is as good as its worse image):\n\n| factor |");
    for p in &first.points {
        md.push_str(&format!(" {:.0}% set aside |", p.rejected * 100.0));
    }
    md.push_str("\n|---|");
    md.push_str(&"---|".repeat(first.points.len()));
    md.push('\n');
    for c in &q.curves {
        md.push_str(&format!("| {} |", c.factor));
        for p in &c.points {
            md.push_str(&format!(
                " {:.2}% ({:.2}%) |",
                p.fnmr * 100.0,
                p.fmr * 100.0
            ));
        }
        md.push('\n');
    }
    md.push_str("\n| gate | images failing (by rule) | pairs set aside | FNMR | FMR |\n|---|---|---|---|---|\n");
    if let Some(all) = first.points.first() {
        md.push_str(&format!(
            "| off | 0 | 0.00% | {:.2}% | {:.2}% |\n",
            all.fnmr * 100.0,
            all.fmr * 100.0
        ));
    }
    for l in &q.levels {
        let by_rule: Vec<String> = l
            .failures_by_rule
            .iter()
            .map(|(rule, n)| format!("{rule} {n}"))
            .collect();
        md.push_str(&format!(
            "| {} | {} ({}) | {:.2}% | {:.2}% | {:.2}% |\n",
            l.level,
            l.images_failing,
            by_rule.join(", "),
            l.point.rejected * 100.0,
            l.point.fnmr * 100.0,
            l.point.fmr * 100.0
        ));
    }
    md.push_str("\nWorst-side percentiles of each factor over the images (p5 = 5% of images are worse):\n\n| factor | p1 | p5 | p10 | p50 |\n|---|---|---|---|---|\n");
    for f in &q.percentiles {
        md.push_str(&format!(
            "| {} | {:.4} | {:.4} | {:.4} | {:.4} |\n",
            f.factor, f.p1, f.p5, f.p10, f.p50
        ));
    }
    md
}

pub fn identify_markdown(r: &IdentifyReport, split: &Path, seconds: f64) -> String {
    let mut md = String::new();
    md.push_str(&format!("## Identification: {}\n\n", split.display()));
    md.push_str(&format!(
        "pipeline `{}`; gallery {} images of {} people; {} mated probes, {} non-mated searches; {:.0} s\n\n",
        r.pipeline, r.gallery_images, r.gallery_identities, r.mated_probes, r.non_mated_searches, seconds
    ));
    md.push_str("| metric | value |\n|---|---|\n");
    md.push_str(&format!(
        "| rank-1 (closed set) | {:.2}% |\n",
        r.rank1 * 100.0
    ));
    md.push_str(&format!(
        "| rank-5 (closed set) | {:.2}% |\n",
        r.rank5 * 100.0
    ));
    match (r.open_set_dir, r.open_set_threshold) {
        (Some(dir), Some(t)) => md.push_str(&format!(
            "| open-set DIR @ FAR {:.0e} | {:.2}% (threshold {:.3}) |\n",
            r.open_set_far,
            dir * 100.0,
            t
        )),
        _ => md.push_str(&format!(
            "| open-set DIR @ FAR {:.0e} | not measurable (no non-mated searches) |\n",
            r.open_set_far
        )),
    }
    if let Some(at) = &r.identify_threshold {
        md.push_str(&format!(
            "| at `identify`'s threshold for {} people ({:.3}, target FPIR {:.0e}) | FPIR {:.2}%, FNIR {:.2}%, DIR {:.2}% |\n",
            r.gallery_identities,
            at.threshold,
            at.target_fpir,
            at.fpir * 100.0,
            at.fnir * 100.0,
            at.dir * 100.0
        ));
    }
    md.push_str(&format!(
        "| images without a detected face | {} of {} |\n",
        r.images_without_face, r.images
    ));
    md
}

pub fn write_pairs(
    dir: &Path,
    r: &PairsReport,
    doc: &serde_json::Value,
    pairs_file: &Path,
    seconds: f64,
) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("could not create {}", dir.display()))?;
    std::fs::write(dir.join("report.json"), serde_json::to_vec_pretty(doc)?)?;
    let mut md = pairs_markdown(r, pairs_file, seconds);
    md.push_str("\n![ROC](roc.png)\n");
    std::fs::write(dir.join("report.md"), md)?;
    plot_roc(&dir.join("roc.png"), r)
}

pub fn write_identify(
    dir: &Path,
    r: &IdentifyReport,
    doc: &serde_json::Value,
    split: &Path,
    seconds: f64,
) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("could not create {}", dir.display()))?;
    std::fs::write(dir.join("identify.json"), serde_json::to_vec_pretty(doc)?)?;
    std::fs::write(
        dir.join("identify.md"),
        identify_markdown(r, split, seconds),
    )?;
    Ok(())
}

/// TAR against FAR on a log axis, from the lowest FAR the pairs can resolve.
fn plot_roc(path: &Path, r: &PairsReport) -> Result<()> {
    register_font("sans-serif", FontStyle::Normal, FONT)
        .map_err(|_| anyhow::anyhow!("could not load the embedded font"))?;
    let floor = (1.0 / r.impostor_pairs.max(1) as f64).max(1e-6);
    // Zoom the TAR axis to the curve (good models live in the top few percent).
    let lowest = r
        .roc
        .iter()
        .filter(|p| p.far >= floor)
        .map(|p| p.tar)
        .fold(1.0, f64::min);
    let y_min = ((lowest - 0.02) * 20.0).floor().clamp(0.0, 19.0) / 20.0;
    let root = BitMapBackend::new(path, (800, 600)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("ROC — {} ({:.2}% acc.)", r.model, r.accuracy_mean * 100.0),
            ("sans-serif", 24),
        )
        .margin(20)
        .x_label_area_size(50)
        .y_label_area_size(60)
        .build_cartesian_2d((floor..1.0).log_scale(), y_min..1.0)?;
    chart
        .configure_mesh()
        .x_desc("false accept rate (log)")
        .y_desc("true accept rate")
        .x_label_formatter(&|v| format!("{v:.0e}"))
        .draw()?;
    let points: Vec<(f64, f64)> = r
        .roc
        .iter()
        .filter(|p| p.far >= floor)
        .map(|p| (p.far, p.tar.max(y_min)))
        .collect();
    chart
        .draw_series(LineSeries::new(points, BLUE.stroke_width(2)))?
        .label(format!("AUC {:.4}, EER {:.2}%", r.auc, r.eer * 100.0))
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE.stroke_width(2)));
    chart
        .configure_series_labels()
        .background_style(WHITE)
        .border_style(BLACK)
        .position(SeriesLabelPosition::LowerRight)
        .draw()?;
    root.present()
        .with_context(|| format!("could not write {}", path.display()))?;
    Ok(())
}
