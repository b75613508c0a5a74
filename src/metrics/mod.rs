//! Prometheus metrics: the text exposition format (version 0.0.4) for `wice up` and
//! `wice signal`, served on an optional listen address (`interface.metrics_listen`,
//! `wice signal --metrics-listen`).
//!
//! Label sets are bounded: per-peer series exist only for configured peers (the datapath's
//! peer table, keyed by configured public keys), and the only other label values are fixed
//! sets (drop reasons, ICE states, path types). Nothing a stranger sends adds a series.

mod community;
mod http;
mod node;
mod signal;

use std::fmt::Write as _;

pub use http::{MetricsServer, serve};
pub use node::render_node;
pub use signal::render_signal;

/// The `Content-Type` of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Writes metric families in the text format.
#[derive(Debug, Default)]
pub struct Exposition {
    text: String,
}

impl Exposition {
    /// Starts a metric family: its `# HELP` and `# TYPE` lines.
    pub fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.text, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.text, "# TYPE {name} {kind}");
    }

    /// One sample of the current family.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Into<f64>) {
        self.text.push_str(name);
        if !labels.is_empty() {
            self.text.push('{');
            for (i, (key, value)) in labels.iter().enumerate() {
                if i > 0 {
                    self.text.push(',');
                }
                let _ = write!(self.text, "{key}=\"{}\"", escape_label(value));
            }
            self.text.push('}');
        }
        let value: f64 = value.into();
        let _ = writeln!(self.text, " {value}");
    }

    /// The `wice_build_info` family (value 1, version in a label).
    pub fn build_info(&mut self) {
        self.family(
            "wice_build_info",
            "gauge",
            "Always 1; the labels say which wice build this is.",
        );
        self.sample(
            "wice_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))],
            1u8,
        );
    }

    /// The finished text.
    pub fn finish(self) -> String {
        self.text
    }
}

fn escape_help(text: &str) -> String {
    text.replace('\\', r"\\").replace('\n', r"\n")
}

fn escape_label(text: &str) -> String {
    text.replace('\\', r"\\")
        .replace('"', "\\\"")
        .replace('\n', r"\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        let mut out = Exposition::default();
        out.family("x", "gauge", "a \\ help\nline");
        out.sample("x", &[("k", "a\"b\\c\nd")], 2u8);
        assert_eq!(
            out.finish(),
            "# HELP x a \\\\ help\\nline\n# TYPE x gauge\nx{k=\"a\\\"b\\\\c\\nd\"} 2\n"
        );
    }
}
