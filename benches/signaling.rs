//! Sealing and opening signaling envelopes (crypto_box: X25519 + XSalsa20-Poly1305).
//!
//! Run: `cargo bench --bench signaling`
//!
//! - `seal/cached_key`: a typical session description to a peer whose shared key is cached;
//! - `seal/new_peer`: the same with a new `Sealer` (its own public key and the X25519
//!   agreement included), as for the first message to a peer;
//! - `open/cached_key`: checking, decrypting, decoding and replay-checking one envelope.

use std::hint::black_box;
use std::time::SystemTime;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use rand_core::OsRng;
use wice_core::keys::PrivateKey;
use wice_core::signaling::{
    Candidate, CandidateKind, Opener, Sealer, SenderPolicy, SessionDescription, SignalingMessage,
    Transport,
};

/// A session description with four candidates: about what ICE sends after gathering.
fn description() -> SignalingMessage {
    let candidate = |i: u8, kind| Candidate {
        kind,
        transport: Transport::Udp,
        address: format!("192.0.2.{i}:{}", 50_000 + u16::from(i))
            .parse()
            .expect("address"),
        priority: 2_130_706_431 - u32::from(i),
        foundation: i.to_string(),
        related: (kind != CandidateKind::Host).then(|| "10.0.0.1:51820".parse().expect("addr")),
    };
    SignalingMessage::SessionDescription(SessionDescription {
        session_id: 0x0123_4567_89ab_cdef,
        version: 4,
        ice_ufrag: "Xj3k".to_owned(),
        ice_pwd: "sXg7Q1d0m5aRtq8yZp2LkW".to_owned(),
        candidates: vec![
            candidate(1, CandidateKind::Host),
            candidate(2, CandidateKind::Host),
            candidate(3, CandidateKind::ServerReflexive),
            candidate(4, CandidateKind::Relayed),
        ],
        end_of_candidates: true,
    })
}

fn seal_and_open(c: &mut Criterion) {
    let alice = PrivateKey::generate();
    let bob = PrivateKey::generate();
    let bob_public = bob.public_key();
    let message = description();
    let mut sealer = Sealer::new(&alice);
    let size = sealer
        .seal(&bob_public, &message, SystemTime::now(), &mut OsRng)
        .expect("seal")
        .encoded_len();

    let mut group = c.benchmark_group("seal");
    group.throughput(Throughput::Bytes(size as u64));
    group.bench_function("cached_key", |b| {
        b.iter(|| {
            black_box(
                sealer
                    .seal(&bob_public, &message, SystemTime::now(), &mut OsRng)
                    .expect("seal"),
            )
        });
    });
    group.bench_function("new_peer", |b| {
        b.iter_batched(
            || Sealer::new(&alice),
            |mut fresh| {
                black_box(
                    fresh
                        .seal(&bob_public, &message, SystemTime::now(), &mut OsRng)
                        .expect("seal"),
                )
            },
            BatchSize::SmallInput,
        );
    });
    group.finish();

    let mut group = c.benchmark_group("open");
    group.throughput(Throughput::Bytes(size as u64));
    let mut opener = Opener::new(&bob, SenderPolicy::AnyKey);
    group.bench_function("cached_key", |b| {
        b.iter_batched(
            || {
                sealer
                    .seal(&bob_public, &message, SystemTime::now(), &mut OsRng)
                    .expect("seal")
            },
            |envelope| black_box(opener.open(&envelope, SystemTime::now()).expect("open")),
            BatchSize::SmallInput,
        );
    });
    group.finish();
    eprintln!("envelope size: {size} bytes");
}

criterion_group!(benches, seal_and_open);
criterion_main!(benches);
