//! Progress on stderr: a spinner for model fetching, a bar for folder enrollment. Hidden when
//! stderr is not a terminal or when JSON output is requested.

use std::time::Duration;

use facegate::models::FetchObserver;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

pub struct Spinner {
    bar: ProgressBar,
}

impl Spinner {
    pub fn new(visible: bool) -> Spinner {
        let bar = ProgressBar::new_spinner();
        if !visible {
            bar.set_draw_target(ProgressDrawTarget::hidden());
        }
        bar.set_style(
            ProgressStyle::with_template("{spinner} {msg} [{elapsed}]")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.enable_steady_tick(Duration::from_millis(120));
        Spinner { bar }
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

impl FetchObserver for Spinner {
    fn step(&self, message: &str) {
        self.bar.set_message(message.to_string());
        if self.bar.is_hidden() {
            tracing::info!("{message}");
        }
    }
}

impl Drop for Spinner {
    fn drop(&mut self) {
        self.bar.finish_and_clear();
    }
}

pub fn bar(len: u64, visible: bool, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    if !visible {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    bar.set_style(
        ProgressStyle::with_template(&format!(
            "{what} {{bar:30}} {{pos}}/{{len}} {{wide_msg}} [{{elapsed}}<{{eta}}]"
        ))
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}
