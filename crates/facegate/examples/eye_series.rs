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
    let fps: f64 = args[2].parse().unwrap();
    let mut src = FfmpegSource::open(&FfmpegInput::file(&args[1], fps)).unwrap();
    while let Some(frame) = src.next_frame().unwrap() {
        let faces = engine.detect(&frame.image).unwrap();
        let t = frame.timestamp.as_secs_f64();
        match faces.iter().max_by(|a, b| a.width().total_cmp(&b.width())) {
            Some(f) => {
                let o = engine.eye_openness(&frame.image, f).unwrap().unwrap();
                println!("{t:.3}\t{:.3}\t{:.3}", o.image_left, o.image_right);
            }
            None => println!("{t:.3}\tnan\tnan"),
        }
    }
}
