//! Frames from the `ffmpeg` program: it decodes anything it can open and writes raw RGB24
//! frames to a pipe; we read them one `width * height * 3` block at a time.

use std::ffi::OsString;
use std::io::Read;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use facegate_image::RgbImage;

use crate::{Frame, FrameSource, VideoError};

/// What to open and how to sample it.
#[derive(Clone, Debug)]
pub struct FfmpegInput {
    /// A file path or URL (or a device for `format`).
    pub input: String,
    /// An input format to force (`v4l2` for cameras).
    pub format: Option<String>,
    /// Frames per second to sample (of video time for files).
    pub fps: f64,
    /// Frames are scaled down (keeping the aspect) so neither side exceeds this.
    pub max_side: u32,
    /// A live source: keep only the newest frame when processing falls behind (and count
    /// what was dropped) instead of queueing.
    pub live: bool,
    /// Read a file at its own speed (ffmpeg `-re`), as a camera would deliver it.
    pub realtime: bool,
}

impl FfmpegInput {
    pub fn file(path: &str, fps: f64) -> FfmpegInput {
        let live = ["rtsp://", "rtmp://", "udp://", "srt://"]
            .iter()
            .any(|p| path.starts_with(p));
        FfmpegInput {
            input: path.to_string(),
            format: None,
            fps,
            max_side: 1280,
            live,
            realtime: false,
        }
    }
}

pub struct FfmpegSource {
    name: String,
    width: u32,
    height: u32,
    fps: f64,
    child: Child,
    reader: Reader,
    next_index: u64,
    stderr_tail: Arc<Mutex<String>>,
}

enum Reader {
    /// Every frame, in order.
    Direct(ChildStdout),
    /// The newest frame only; a thread drains the pipe.
    Latest(Arc<LatestSlot>),
}

#[derive(Default)]
struct LatestSlot {
    state: Mutex<SlotState>,
    ready: Condvar,
}

#[derive(Default)]
struct SlotState {
    frame: Option<(u64, Vec<u8>)>,
    ended: bool,
    dropped: u64,
}

/// A command for `program` without facegate's own settings in its environment: among them are
/// secrets (the template key in `FACEGATE_KEY`, a password in a `FACEGATE_GALLERY` URL) that
/// ffmpeg has no use for.
fn clean_command(program: &str) -> Command {
    let mut command = Command::new(program);
    drop_facegate_settings(&mut command, std::env::vars_os());
    command
}

fn drop_facegate_settings(
    command: &mut Command,
    environment: impl Iterator<Item = (OsString, OsString)>,
) {
    for (name, _) in environment.filter(|(name, _)| name.to_string_lossy().starts_with("FACEGATE_"))
    {
        command.env_remove(name);
    }
}

/// Checks that the programs exist before anything else, for a clear message.
fn check_program(name: &str) -> Result<(), VideoError> {
    match clean_command(name)
        .arg("-version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        Ok(_) => Ok(()),
        Err(err) => Err(VideoError::FfmpegMissing(format!("{name}: {err}"))),
    }
}

/// Width and height of the first video stream.
fn probe(input: &FfmpegInput) -> Result<(u32, u32), VideoError> {
    check_program("ffprobe")?;
    let mut command = clean_command("ffprobe");
    command.args(["-v", "error", "-select_streams", "v:0"]);
    if let Some(format) = &input.format {
        command.args(["-f", format]);
    }
    let output = command
        .args(["-show_entries", "stream=width,height", "-of", "csv=p=0:s=x"])
        .arg(&input.input)
        .output()
        .map_err(|err| VideoError::FfmpegMissing(format!("ffprobe: {err}")))?;
    let text = String::from_utf8_lossy(&output.stdout);
    let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
    let parsed = first
        .trim()
        .split_once('x')
        .and_then(|(w, h)| Some((w.parse().ok()?, h.parse().ok()?)));
    match parsed {
        Some((w, h)) if output.status.success() && w > 0 && h > 0 => Ok((w, h)),
        _ => {
            let stderr = String::from_utf8_lossy(&output.stderr).trim().to_string();
            Err(VideoError::Open {
                source_name: input.input.clone(),
                message: if stderr.is_empty() {
                    "no video stream found".to_string()
                } else {
                    stderr
                },
            })
        }
    }
}

/// The frame rate a file's first video stream declares (its average), for reading every
/// frame: `None` when ffprobe gives none.
pub fn frame_rate(path: &str) -> Result<Option<f64>, VideoError> {
    check_program("ffprobe")?;
    let output = clean_command("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0"])
        .args(["-show_entries", "stream=avg_frame_rate", "-of", "csv=p=0"])
        .arg(path)
        .output()
        .map_err(|err| VideoError::FfmpegMissing(format!("ffprobe: {err}")))?;
    let text = String::from_utf8_lossy(&output.stdout);
    let rate = text.lines().find(|l| !l.trim().is_empty()).and_then(|l| {
        let (n, d) = l.trim().split_once('/').unwrap_or((l.trim(), "1"));
        let (n, d): (f64, f64) = (n.parse().ok()?, d.parse().ok()?);
        (d > 0.0 && n > 0.0).then(|| n / d)
    });
    Ok(rate)
}

/// The output size: at most `max_side` on the longer side, even numbers (for ffmpeg's scaler).
fn output_size(width: u32, height: u32, max_side: u32) -> (u32, u32) {
    let scale = (max_side as f64 / width.max(height) as f64).min(1.0);
    let even = |v: f64| ((v / 2.0).round() as u32 * 2).max(2);
    (even(width as f64 * scale), even(height as f64 * scale))
}

impl FfmpegSource {
    pub fn open(input: &FfmpegInput) -> Result<FfmpegSource, VideoError> {
        check_program("ffmpeg")?;
        let (in_w, in_h) = probe(input)?;
        let (width, height) = output_size(in_w, in_h, input.max_side);
        let mut command = clean_command("ffmpeg");
        command.args(["-hide_banner", "-loglevel", "error", "-nostdin"]);
        if input.input.starts_with("rtsp://") {
            command.args(["-rtsp_transport", "tcp"]);
        }
        if input.realtime {
            command.arg("-re");
        }
        if let Some(format) = &input.format {
            command.args(["-f", format]);
        }
        command
            .arg("-i")
            .arg(&input.input)
            .args([
                "-an",
                "-vf",
                &format!("fps={},scale={width}:{height}", input.fps),
                "-f",
                "rawvideo",
                "-pix_fmt",
                "rgb24",
                "-",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // Its own process group: Ctrl-C at the terminal goes to facegate, which stops between
        // frames and then ends ffmpeg, instead of ffmpeg dying first mid-frame.
        #[cfg(unix)]
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let mut child = command
            .spawn()
            .map_err(|err| VideoError::FfmpegMissing(format!("ffmpeg: {err}")))?;
        let stderr_tail = Arc::new(Mutex::new(String::new()));
        if let Some(mut stderr) = child.stderr.take() {
            let tail = stderr_tail.clone();
            std::thread::spawn(move || {
                let mut text = String::new();
                let _ = stderr.read_to_string(&mut text);
                let mut t = tail.lock().unwrap_or_else(|p| p.into_inner());
                *t = text
                    .chars()
                    .rev()
                    .take(2000)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect();
            });
        }
        let stdout = child.stdout.take().ok_or_else(|| VideoError::Open {
            source_name: input.input.clone(),
            message: "ffmpeg gave no output pipe".into(),
        })?;
        let frame_bytes = width as usize * height as usize * 3;
        let reader = if input.live {
            let slot = Arc::new(LatestSlot::default());
            let writer = slot.clone();
            std::thread::spawn(move || drain_latest(stdout, frame_bytes, &writer));
            Reader::Latest(slot)
        } else {
            Reader::Direct(stdout)
        };
        Ok(FfmpegSource {
            name: input.input.clone(),
            width,
            height,
            fps: input.fps,
            child,
            reader,
            next_index: 0,
            stderr_tail,
        })
    }

    pub fn size(&self) -> (u32, u32) {
        (self.width, self.height)
    }

    /// What ffmpeg said on stderr (after it ended), for error messages.
    fn ffmpeg_said(&mut self) -> String {
        // Give the stderr thread a moment to collect the last words.
        let deadline = Instant::now() + Duration::from_millis(500);
        while Instant::now() < deadline {
            if !matches!(self.child.try_wait(), Ok(None)) {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(50));
        self.stderr_tail
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .trim()
            .to_string()
    }

    fn frame_from(&self, index: u64, bytes: Vec<u8>) -> Result<Frame, VideoError> {
        let image =
            RgbImage::from_raw(self.width, self.height, bytes).ok_or_else(|| VideoError::Read {
                source_name: self.name.clone(),
                message: "a frame had the wrong size".into(),
            })?;
        Ok(Frame {
            index,
            timestamp: Duration::from_secs_f64(index as f64 / self.fps),
            image,
        })
    }

    /// The end of the stream: clean (`None`) if ffmpeg exited successfully.
    fn ended(&mut self) -> Result<Option<Frame>, VideoError> {
        let status = self.child.wait().map_err(|err| VideoError::Read {
            source_name: self.name.clone(),
            message: err.to_string(),
        })?;
        if status.success() {
            return Ok(None);
        }
        let said = self.ffmpeg_said();
        Err(VideoError::Read {
            source_name: self.name.clone(),
            message: if said.is_empty() {
                format!("ffmpeg stopped ({status})")
            } else {
                said
            },
        })
    }
}

/// Reads frames as fast as ffmpeg writes them, keeping only the newest.
fn drain_latest(mut stdout: ChildStdout, frame_bytes: usize, slot: &LatestSlot) {
    let mut index = 0u64;
    loop {
        let mut buffer = vec![0u8; frame_bytes];
        if stdout.read_exact(&mut buffer).is_err() {
            break;
        }
        let mut state = slot.state.lock().unwrap_or_else(|p| p.into_inner());
        if state.frame.is_some() {
            state.dropped += 1;
        }
        state.frame = Some((index, buffer));
        index += 1;
        slot.ready.notify_one();
    }
    let mut state = slot.state.lock().unwrap_or_else(|p| p.into_inner());
    state.ended = true;
    slot.ready.notify_all();
}

impl FrameSource for FfmpegSource {
    fn next_frame(&mut self) -> Result<Option<Frame>, VideoError> {
        let frame_bytes = self.width as usize * self.height as usize * 3;
        match &mut self.reader {
            Reader::Direct(stdout) => {
                let mut buffer = vec![0u8; frame_bytes];
                match read_full(stdout, &mut buffer) {
                    Ok(true) => {
                        let index = self.next_index;
                        self.next_index += 1;
                        self.frame_from(index, buffer).map(Some)
                    }
                    Ok(false) => self.ended(),
                    Err(err) => Err(VideoError::Read {
                        source_name: self.name.clone(),
                        message: err.to_string(),
                    }),
                }
            }
            Reader::Latest(slot) => {
                let slot = slot.clone();
                let mut state = slot.state.lock().unwrap_or_else(|p| p.into_inner());
                loop {
                    if let Some((index, bytes)) = state.frame.take() {
                        drop(state);
                        return self.frame_from(index, bytes).map(Some);
                    }
                    if state.ended {
                        drop(state);
                        return self.ended();
                    }
                    state = slot.ready.wait(state).unwrap_or_else(|p| p.into_inner());
                }
            }
        }
    }

    fn dropped(&self) -> u64 {
        match &self.reader {
            Reader::Direct(_) => 0,
            Reader::Latest(slot) => slot.state.lock().unwrap_or_else(|p| p.into_inner()).dropped,
        }
    }

    fn describe(&self) -> String {
        self.name.clone()
    }
}

/// Fills `buffer`; `false` at a clean end of stream before any byte of it.
fn read_full(reader: &mut impl Read, buffer: &mut [u8]) -> std::io::Result<bool> {
    let mut filled = 0;
    while filled < buffer.len() {
        match reader.read(&mut buffer[filled..]) {
            Ok(0) if filled == 0 => return Ok(false),
            Ok(0) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the stream ended inside a frame",
                ))
            }
            Ok(n) => filled += n,
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
    Ok(true)
}

impl Drop for FfmpegSource {
    fn drop(&mut self) {
        // Stopping early (enough frames, Ctrl-C): ffmpeg would otherwise block on the pipe.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_size_keeps_aspect_and_even_sides() {
        assert_eq!(output_size(1920, 1080, 1280), (1280, 720));
        assert_eq!(output_size(641, 481, 1280), (642, 482));
        assert_eq!(output_size(100, 3000, 1000), (34, 1000));
    }

    #[test]
    fn streams_are_live_and_files_are_not() {
        assert!(FfmpegInput::file("rtsp://cam/1", 5.0).live);
        assert!(!FfmpegInput::file("clip.mp4", 5.0).live);
    }
}
