//! Load scenarios. Each takes a plan, drives many sessions from one tokio
//! runtime (one task per session, shared UDP endpoints), stops by itself
//! and returns a report.

pub mod chat;
pub mod connect;
pub mod offline;
pub mod storm;

pub mod progress {
    use indicatif::{ProgressBar, ProgressStyle};

    /// A progress bar on stderr (hidden when stderr is not a terminal).
    pub fn bar(len: u64, what: &str) -> ProgressBar {
        let bar = ProgressBar::new(len);
        bar.set_style(
            ProgressStyle::with_template(&format!(
                "{{elapsed_precise}} [{{bar:40}}] {{pos}}/{{len}} {what} ({{per_sec}})"
            ))
            .expect("the template is valid")
            .progress_chars("=> "),
        );
        bar
    }
}
