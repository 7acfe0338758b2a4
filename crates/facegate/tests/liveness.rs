//! Passive liveness on the 5-celebrity photos (genuine captures) and on simulated
//! presentation attacks made from the same photos (facegate_liveness::simulate: a screen
//! replay and a halftone print). The decision rule (mean "real" probability >= 0.5) was fixed
//! before this measurement and is not tuned here; the test prints the separation and guards
//! the measured genuine live rate.

mod common;

use facegate::{Engine, EngineOptions, FacePolicy, ModelChoice, ModelKind};
use facegate_liveness::simulate;
use facegate_models::SilentObserver;

struct Summary {
    scored: usize,
    live: usize,
    no_face: usize,
    scores: Vec<f32>,
    antispoof: Vec<f32>,
    liveness: Vec<f32>,
}

impl Summary {
    fn new() -> Summary {
        Summary {
            scored: 0,
            live: 0,
            no_face: 0,
            scores: Vec::new(),
            antispoof: Vec::new(),
            liveness: Vec::new(),
        }
    }

    fn mean(&self) -> f32 {
        self.scores.iter().sum::<f32>() / self.scores.len().max(1) as f32
    }
}

/// Probability that a random genuine photo scores above a random attack (ROC AUC).
fn auc(genuine: &[f32], attacks: &[f32]) -> f64 {
    let mut wins = 0.0;
    for g in genuine {
        for a in attacks {
            wins += if g > a {
                1.0
            } else if g == a {
                0.5
            } else {
                0.0
            };
        }
    }
    wins / (genuine.len() * attacks.len()).max(1) as f64
}

#[test]
fn genuine_photos_score_live_and_simulated_attacks_are_reported() {
    let home = facegate::Home::at(&common::home());
    let options = EngineOptions {
        model: ModelChoice::single(ModelKind::Mobilefacenet),
        liveness: true,
        ..EngineOptions::default()
    };
    let engine = Engine::load(&home, options, &SilentObserver).expect("load engine");
    let mut genuine = Summary::new();
    let mut screen = Summary::new();
    let mut print = Summary::new();
    for (_, path) in common::celebrity_photos() {
        let image = engine.load_image(&path).unwrap();
        let variants = [
            (&mut genuine, image.rgb.clone()),
            (&mut screen, simulate::screen_replay(&image.rgb)),
            (&mut print, simulate::halftone_print(&image.rgb)),
        ];
        for (summary, rgb) in variants {
            let loaded = facegate_image::LoadedImage {
                rgb,
                ..image.clone()
            };
            match engine.embed_faces(&loaded, FacePolicy::Largest) {
                Ok((faces, _)) => {
                    let score = engine
                        .liveness(&loaded.rgb, &faces[0].face)
                        .unwrap()
                        .expect("liveness is on");
                    summary.scored += 1;
                    summary.live += usize::from(score.live);
                    summary.scores.push(score.score);
                    summary.antispoof.push(score.antispoof_real);
                    summary.liveness.push(score.liveness_real);
                }
                Err(_) => summary.no_face += 1,
            }
        }
    }
    for (name, s) in [
        ("genuine", &genuine),
        ("screen replay", &screen),
        ("halftone print", &print),
    ] {
        println!(
            "{name}: {} scored ({} without a detected face), {} live ({:.1}%), mean score {:.3}",
            s.scored,
            s.no_face,
            s.live,
            100.0 * s.live as f64 / s.scored.max(1) as f64,
            s.mean()
        );
    }
    println!(
        "separation (AUC genuine vs attack): screen {:.3}, print {:.3}",
        auc(&genuine.scores, &screen.scores),
        auc(&genuine.scores, &print.scores)
    );
    for (name, g, sc, pr) in [
        (
            "antispoof",
            &genuine.antispoof,
            &screen.antispoof,
            &print.antispoof,
        ),
        (
            "liveness",
            &genuine.liveness,
            &screen.liveness,
            &print.liveness,
        ),
    ] {
        let mean = |v: &[f32]| v.iter().sum::<f32>() / v.len().max(1) as f32;
        println!(
            "{name} model alone: genuine mean {:.3}, screen {:.3}, print {:.3}; AUC screen {:.3}, print {:.3}",
            mean(g),
            mean(sc),
            mean(pr),
            auc(g, sc),
            auc(g, pr)
        );
    }
    assert!(
        genuine.scored >= 110,
        "faces found in {} photos",
        genuine.scored
    );
    for s in [&genuine, &screen, &print] {
        assert!(s.scores.iter().all(|v| (0.0..=1.0).contains(v)));
    }
    // Measured when this test was written: 90 of 118 genuine photos (76.3%) score live, and
    // the simulated attacks score live at least as often (83.3% screen, 89.6% of the prints
    // still detected): the shipped models do not separate these proxies (AUC 0.39 and 0.19).
    // docs/ACCURACY.md and the README say so. This guards the genuine rate against
    // regressions in the crop or the preprocessing, which would move it.
    let live_rate = genuine.live as f64 / genuine.scored as f64;
    assert!(
        live_rate >= 0.70,
        "only {:.1}% of genuine photos scored live (76.3% when measured)",
        100.0 * live_rate
    );
}
