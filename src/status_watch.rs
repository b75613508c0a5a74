//! `wice status --watch`: the status redrawn in place until Ctrl-C, like watch(1).
//!
//! On a terminal each frame is one write that moves the cursor home, overwrites every line
//! (clearing each line's tail) and clears what is below: the screen never goes blank between
//! frames, so nothing flickers. When stdout is not a terminal the frames follow each other,
//! each under its header line, so a log or a test sees every one. A daemon that is down or
//! restarting shows as an error line in the frame and the watch goes on.

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::time::Duration;

use crate::control;

/// Shortest interval accepted: faster redraws only burn CPU on both ends.
const MIN_INTERVAL: Duration = Duration::from_millis(100);

/// The header above every frame.
pub fn header(interval: Duration, path: &Path) -> String {
    format!(
        "Every {:.1}s: wice status ({}), Ctrl-C to stop",
        interval.as_secs_f64(),
        path.display()
    )
}

/// One frame as a terminal gets it: home, each line with its tail cleared, the rest of the
/// screen cleared.
pub fn terminal_frame(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 64);
    out.push_str("\x1b[H");
    for line in text.lines() {
        out.push_str(line);
        out.push_str("\x1b[K\n");
    }
    out.push_str("\x1b[J");
    out
}

/// Redraws the status of the daemon at `path` every `interval` seconds until SIGINT.
pub fn run(path: &Path, interval: f64) -> Result<(), String> {
    let interval = Duration::try_from_secs_f64(interval)
        .ok()
        .filter(|d| *d >= MIN_INTERVAL)
        .ok_or_else(|| {
            format!(
                "--interval must be at least {} s",
                MIN_INTERVAL.as_secs_f64()
            )
        })?;
    let tty = std::io::stdout().is_terminal();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start runtime: {e}"))?;
    runtime.block_on(async {
        let ctrl_c = tokio::signal::ctrl_c();
        tokio::pin!(ctrl_c);
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let head = header(interval, path);
        if tty {
            write_out("\x1b[2J")?;
        }
        loop {
            tokio::select! {
                result = &mut ctrl_c => {
                    result.map_err(|e| format!("cannot wait for Ctrl-C: {e}"))?;
                    return Ok(());
                }
                _ = ticker.tick() => {
                    let body = match control::request_status(path) {
                        Ok(status) => status.render(),
                        Err(err) => format!("{err}\n"),
                    };
                    let text = format!("{head}\n\n{body}");
                    if tty {
                        write_out(&terminal_frame(&text))?;
                    } else {
                        write_out(&format!("{text}\n"))?;
                    }
                }
            }
        }
    })
}

fn write_out(text: &str) -> Result<(), String> {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        .map_err(|e| format!("writing stdout: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_terminal_frame_overwrites_in_place_without_clearing_the_screen_first() {
        let frame = terminal_frame("interface wice0\n  public key: K\n");
        assert_eq!(
            frame,
            "\x1b[Hinterface wice0\x1b[K\n  public key: K\x1b[K\n\x1b[J"
        );
        assert!(
            !frame.contains("\x1b[2J"),
            "a full clear per frame flickers"
        );
    }
}
