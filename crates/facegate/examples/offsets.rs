use facegate::video_input::ffmpeg::{FfmpegInput, FfmpegSource};
use facegate::video_input::FrameSource;
fn main() {
    let args: Vec<String> = std::env::args().collect();
    let home = facegate::Home::at(std::path::Path::new(
        &std::env::var("FACEGATE_HOME").unwrap(),
    ));
    let opts = facegate::EngineOptions {
        eyes: true,
        ..Default::default()
    };
    let engine = facegate::Engine::load(&home, opts, &facegate::models::SilentObserver).unwrap();
    let mut src = FfmpegSource::open(&FfmpegInput::file(&args[1], 10.0)).unwrap();
    let mut reference = None;
    while let Some(frame) = src.next_frame().unwrap() {
        let faces = engine.detect(&frame.image).unwrap();
        let t = frame.timestamp.as_secs_f64();
        if let Some(f) = faces.iter().max_by(|a, b| a.area().total_cmp(&b.area())) {
            let r = reference.get_or_insert_with(|| f.clone());
            let o = facegate::liveness_challenge::head_offset(r, f).unwrap_or_default();
            let p = facegate::liveness_challenge::foreshortening(r, f);
            let e = engine.eye_openness(&frame.image, f).unwrap().unwrap();
            println!(
                "{t:.1} x={:+.3} y={:+.3} plane={:.2} eyes={:.3}/{:.3}",
                o.x, o.y, p, e.image_left, e.image_right
            );
        } else {
            println!("{t:.1} none");
        }
    }
}
