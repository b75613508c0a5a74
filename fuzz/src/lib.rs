//! One function per fuzz target, each feeding bytes from outside to one parser through the
//! public API of today. The targets in `fuzz_targets/` only call these, so an API change
//! means changing one function here.
//!
//! Besides "never panics", each function asserts what the parser promises (a classified
//! STUN datagram has the magic cookie, a decoded message survives a round trip, ...), so the
//! fuzzer also finds wrong answers, not only crashes.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crypto_box::aead::Aead as _;
use prost::Message as _;
use prost::bytes::Bytes;
use wice::config::Config;
use wice::signaling::ServerConfig;
use wice::signaling::server::check_published;
use wice_core::ice::CandidateTypes;
use wice_core::ice::{Controller, Sources, TurnServer};
use wice_core::keys::{PrivateKey, PublicKey};
use wice_core::secret::SecretString;
use wice_core::signaling::SignalingMessage;
use wice_core::signaling::challenge::{self, PendingChallenge};
use wice_core::signaling::envelope::{Envelope, MAX_ENVELOPE_LEN, Opener, SenderPolicy};
use wice_core::signaling::message::{Candidate, CandidateKind, SessionDescription, Transport};
use wice_datapath::classify::{DatagramKind, STUN_MAGIC_COOKIE, classify as classify_bytes};
use wice_datapath::endpoint::{CHANNEL_NUMBERS, parse_channel_data};
use wice_proto::signaling as proto;

/// `wice_datapath::classify`: the first decision on every datagram of the shared socket.
pub fn classify(data: &[u8]) {
    match classify_bytes(data) {
        DatagramKind::Stun => {
            assert!(data.len() >= 20 && data[4..8] == STUN_MAGIC_COOKIE);
            assert_eq!(
                data.len() - 20,
                usize::from(u16::from_be_bytes([data[2], data[3]]))
            );
        }
        DatagramKind::ChannelData => assert!((0x40..=0x7F).contains(&data[0])),
        DatagramKind::WireGuard => {}
    }
}

/// TURN ChannelData framing, as the datapath takes it apart for relayed WireGuard.
pub fn channel_data(data: &[u8]) {
    if let Ok((channel, payload)) = parse_channel_data(data) {
        assert!(CHANNEL_NUMBERS.contains(&channel));
        assert_eq!(
            usize::from(u16::from_be_bytes([data[2], data[3]])),
            payload.len()
        );
        assert_eq!(payload, &data[4..4 + payload.len()]);
        assert!(
            data.len() - 4 - payload.len() <= 3,
            "at most 3 bytes of padding"
        );
    }
}

fn addr(text: &str) -> SocketAddr {
    text.parse().expect("fixed test address")
}

fn test_key(first: u8) -> PublicKey {
    let mut bytes = [0u8; 32];
    bytes[0] = first;
    PublicKey::from(bytes)
}

/// The controller every `controller_stun` input meets: one peer whose offer has arrived (so
/// its ICE agent checks), a STUN server and a TURN server. Seed and keys are fixed, so the
/// local ufrag is the same every run and the fuzzer can learn it from comparisons.
fn test_controller(now: Instant) -> Controller {
    let sources = Sources {
        candidate_types: CandidateTypes::ALL,
        host: vec![addr("10.0.0.1:51820")],
        stun: vec![addr("192.0.2.1:3478")],
        turn: vec![TurnServer {
            address: addr("192.0.2.2:3478"),
            local: addr("10.0.0.1:51820"),
            username: "user".to_owned(),
            credential: SecretString::new("pass"),
        }],
        mesh: Vec::new(),
    };
    let mut controller = Controller::new(test_key(1), &[test_key(2)], sources, 7, now);
    let offer = SessionDescription {
        session_id: 1,
        version: 0,
        ice_ufrag: "remoteufrag".to_owned(),
        ice_pwd: "remotepassword0000000000".to_owned(),
        candidates: vec![Candidate {
            kind: CandidateKind::Host,
            transport: Transport::Udp,
            address: addr("10.0.0.2:51820"),
            priority: 2_130_706_431,
            foundation: "1".to_owned(),
            related: None,
        }],
        end_of_candidates: true,
    };
    controller.handle_signal(now, test_key(2), offer);
    drain(&mut controller);
    controller
}

fn drain(controller: &mut Controller) {
    while controller.poll_transmit().is_some() {}
    while controller.poll_event().is_some() {}
    while controller.poll_offer().is_some() {}
}

/// `Controller::handle_datagram`: STUN and TURN datagrams as they reach the control plane.
/// The input is a list of records `[source, len_hi, len_lo, bytes...]`; `source`'s low two
/// bits pick the sender (STUN server, TURN server, the peer, a stranger) and bit 2 moves the
/// clock 50 ms forward first.
pub fn controller_stun(data: &[u8]) {
    let t0 = Instant::now();
    let mut now = t0;
    let mut controller = test_controller(now);
    let senders = [
        addr("192.0.2.1:3478"),
        addr("192.0.2.2:3478"),
        addr("10.0.0.2:51820"),
        addr("198.51.100.9:40000"),
    ];
    let mut rest = data;
    while let [source, hi, lo, tail @ ..] = rest {
        let len = usize::from(u16::from_be_bytes([*hi, *lo])).min(tail.len());
        let (datagram, next) = tail.split_at(len);
        rest = next;
        if source & 4 != 0 {
            now += Duration::from_millis(50);
            controller.handle_timeout(now);
        }
        let from = senders[usize::from(source & 3)];
        controller.handle_datagram(now, from, Some(addr("10.0.0.1:51820")), datagram);
        drain(&mut controller);
        let _ = controller.poll_timeout(now);
        let _ = controller.status();
    }
}

fn private_key(n: u8) -> PrivateKey {
    PrivateKey::from_bytes([n; 32])
}

/// A fixed "now" for envelopes: 2027-01-15.
fn envelope_now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_800_000_000)
}

fn envelope_sealed_at() -> u64 {
    1_800_000_000 * 1_000_000
}

/// `Opener::open_bytes` (envelope decode, then open). The first byte picks what the rest is:
/// 0: the envelope bytes as a backend delivers them; 1: a plaintext that the fuzz target
/// seals properly from a known sender (so decryption passes and the `SealedContent` decoding
/// behind it is reached); 2: a `SignalingMessage` that goes inside a well-formed
/// `SealedContent`. Each is opened twice: the second must be refused as a replay.
pub fn envelope_open(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let sender = private_key(1);
    let recipient = private_key(2);
    let mut opener = Opener::new(&recipient, SenderPolicy::AnyKey);
    let now = envelope_now();
    let bytes = match mode % 3 {
        0 => rest.to_vec(),
        1 => seal_plaintext(&sender, &recipient.public_key(), rest),
        _ => {
            let content = proto::SealedContent {
                sender: Bytes::copy_from_slice(sender.public_key().as_bytes()),
                recipient: Bytes::copy_from_slice(recipient.public_key().as_bytes()),
                counter: 1,
                message: proto::SignalingMessage::decode(rest).ok(),
                boot_id: 7,
                sealed_at_micros: envelope_sealed_at(),
            };
            seal_plaintext(&sender, &recipient.public_key(), &content.encode_to_vec())
        }
    };
    let first = opener.open_bytes(&bytes, now);
    let second = opener.open_bytes(&bytes, now);
    if first.is_ok() {
        assert!(second.is_err(), "an envelope opened twice");
    }
    assert_eq!(opener.counters().accepted, u64::from(first.is_ok()));
}

fn seal_plaintext(sender: &PrivateKey, recipient: &PublicKey, plaintext: &[u8]) -> Vec<u8> {
    let salsa = crypto_box::SalsaBox::new(
        &crypto_box::PublicKey::from(recipient.to_bytes()),
        &crypto_box::SecretKey::from(sender.to_bytes()),
    );
    let nonce = [9u8; 24];
    let Ok(ciphertext) = salsa.encrypt(&nonce.into(), plaintext) else {
        return Vec::new();
    };
    Envelope {
        sender: sender.public_key(),
        recipient: *recipient,
        nonce,
        ciphertext: Bytes::from(ciphertext),
    }
    .encode()
    .to_vec()
}

/// `SignalingMessage` (and the `SessionDescription` in it) from protobuf: what a peer's
/// opened envelope carries. What decodes must validate and survive a round trip.
pub fn signaling_message(data: &[u8]) {
    let Ok(raw) = proto::SignalingMessage::decode(data) else {
        return;
    };
    let Ok(message) = SignalingMessage::from_proto(raw) else {
        return;
    };
    assert!(message.validate().is_ok(), "a decoded message validates");
    let again = SignalingMessage::from_proto(message.to_proto()).expect("round trip decodes");
    assert_eq!(again, message);
}

/// The signaling server's pure step on what clients send, and the client's on what the
/// server sends back. First byte: 0 = a `PublishRequest` decoded and each envelope checked
/// as `publish` does; 1 = a `SubscribeRequest` (hello key, challenge answer); 2 = a
/// `SubscribeResponse` as the client reads it (challenge opened with our key, envelope).
pub fn signal_server_request(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 3 {
        0 => publish_request(rest),
        1 => subscribe_request(rest),
        _ => subscribe_response(rest),
    }
}

fn publish_request(bytes: &[u8]) {
    let config = ServerConfig::new(addr("127.0.0.1:1"));
    let Ok(request) = proto::PublishRequest::decode(bytes) else {
        return;
    };
    if request.envelopes.len() > config.max_batch {
        return;
    }
    for envelope in request.envelopes {
        // The server's own per-envelope check; what it forwards is what the recipient decodes.
        if let Ok(parsed) = check_published(&envelope, config.max_envelope_len) {
            assert_eq!(Envelope::decode(&envelope).ok(), Some(parsed));
        }
    }
}

fn subscribe_request(bytes: &[u8]) {
    let Ok(request) = proto::SubscribeRequest::decode(bytes) else {
        return;
    };
    match request.step {
        Some(proto::subscribe_request::Step::Hello(hello)) => {
            if let Ok(key) = <[u8; 32]>::try_from(hello.public_key.as_ref()) {
                let mut rng = FixedRng(0);
                let (pending, _challenge) =
                    PendingChallenge::issue(&PublicKey::from(key), &mut rng);
                assert!(!pending.verify(&[]));
            }
        }
        Some(proto::subscribe_request::Step::Answer(answer)) => {
            let mut rng = FixedRng(1);
            let (pending, _) = PendingChallenge::issue(&test_key(3), &mut rng);
            // A random answer matches a fresh 32-byte secret with negligible chance; the
            // fixed RNG makes the secret all 0x01 bytes, which the fuzzer may find: fine.
            let _ = pending.verify(&answer.secret);
        }
        None => {}
    }
}

fn subscribe_response(bytes: &[u8]) {
    let Ok(response) = proto::SubscribeResponse::decode(bytes) else {
        return;
    };
    match response.event {
        Some(proto::subscribe_response::Event::Challenge(challenge)) => {
            let _ = challenge::answer(&private_key(4), &challenge);
        }
        Some(proto::subscribe_response::Event::Envelope(envelope)) => {
            if envelope.len() <= MAX_ENVELOPE_LEN {
                let _ = Envelope::decode(&envelope);
            }
        }
        _ => {}
    }
}

/// A deterministic "CSPRNG" for the fuzz targets: every byte is the seed.
struct FixedRng(u8);

impl rand_core::RngCore for FixedRng {
    fn next_u32(&mut self) -> u32 {
        u32::from_ne_bytes([self.0; 4])
    }
    fn next_u64(&mut self) -> u64 {
        u64::from_ne_bytes([self.0; 8])
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        dest.fill(self.0);
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        dest.fill(self.0);
        Ok(())
    }
}

impl rand_core::CryptoRng for FixedRng {}

/// The config parser, offline (no name resolution, no file reads), on any UTF-8 text.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Config::parse_offline(Path::new("/nonexistent/fuzz.toml"), text) {
        Ok(config) => {
            let _ = config.check_summary();
        }
        Err(error) => {
            // Every error renders, and names the file.
            assert!(error.to_string().starts_with("/nonexistent/fuzz.toml"));
        }
    }
}

/// `wice::uapi`: a request on the UAPI socket (`wg set` / `wg setconf`), parsed and applied
/// to an engine without a TUN device. Every answer is one `errno=` status ending the
/// exchange, and a `get=1` after it still answers.
pub fn uapi_request(data: &[u8]) {
    use wice::uapi::{Handler, Policy, UapiDevice};
    struct Fake(wice_datapath::Engine);
    impl UapiDevice for Fake {
        fn engine(&self) -> &wice_datapath::Engine {
            &self.0
        }
        fn listen_port(&self) -> u16 {
            51820
        }
        fn set_listen_port(&self, port: u16) -> std::io::Result<u16> {
            Ok(port)
        }
        fn fwmark(&self) -> u32 {
            0
        }
        fn set_fwmark(&self, _: u32) -> std::io::Result<()> {
            Ok(())
        }
    }
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let handler = Handler::new(Box::new(Fake(wice_datapath::Engine::new([1; 32]))), Policy::default(), true);
    let answer = handler.handle(text);
    assert!(answer.ends_with("\n\n"), "{answer:?}");
    assert_eq!(answer.matches("errno=").count(), 1, "{answer:?}");
    assert!(handler.handle("get=1\n").ends_with("errno=0\n\n"));
}

/// `wice signal --ws-listen`'s frame parser on a stranger's bytes (`mode` picks the client's
/// or the server's side). A decoded frame encodes back to bytes that decode to it.
pub fn ws_frame(data: &[u8]) {
    use wice::signaling::ws_frame::{ClientFrame, ServerFrame};
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode % 2 == 0 {
        if let Ok(frame) = ClientFrame::decode(rest) {
            assert_eq!(ClientFrame::decode(&frame.encode()).ok(), Some(frame));
        }
    } else if let Ok(frame) = ServerFrame::decode(rest) {
        assert_eq!(ServerFrame::decode(&frame.encode()).ok(), Some(frame));
    }
}
