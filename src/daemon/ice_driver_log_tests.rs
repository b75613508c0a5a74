//! Per-peer log lines carry the peer in a span.

use std::io::Write;
use std::sync::{Arc, Mutex};

use super::*;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_path_change_is_logged_in_the_peers_span() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_current_span(true)
        .with_writer(move || writer.clone())
        .finish();
    let peer = wice_core::keys::PrivateKey::from_bytes([7; 32]).public_key();
    tracing::subscriber::with_default(subscriber, || {
        log_path(
            &peer,
            &Endpoint::Direct("192.0.2.1:51820".parse().expect("addr")),
            "host",
        );
    });
    let text = String::from_utf8(captured.0.lock().expect("lock").clone()).expect("utf-8");
    let line: serde_json::Value = serde_json::from_str(text.trim()).expect("one JSON line");
    assert_eq!(line["fields"]["message"], "WireGuard path");
    assert_eq!(line["span"]["name"], "peer");
    assert_eq!(line["span"]["peer"], peer.to_string());
}
