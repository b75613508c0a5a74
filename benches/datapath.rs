//! Hot-path benchmarks: WireGuard encapsulate/decapsulate through the engine
//! (routing, locking and crypto included, no syscalls) and allowed-IPs lookup.
//!
//! Run: `cargo bench --bench datapath`

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use wice_datapath::allowed_ips::AllowedIps;
use wice_datapath::classify::DatagramKind;
use wice_datapath::rx::InboundSink;
use wice_datapath::tx::Outbound;
use wice_datapath::{Engine, MAX_DATAGRAM, PeerConfig};

const SIZES: [usize; 3] = [64, 512, 1420];
const A_ADDR: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)), 51820);
const B_ADDR: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2)), 51820);

/// Counts what reaches TUN and keeps the last reply, so nothing is optimised away.
#[derive(Default)]
struct Sink {
    delivered: usize,
    replies: Vec<Vec<u8>>,
}

impl InboundSink for Sink {
    fn write_tun(&mut self, packet: &[u8]) {
        self.delivered += black_box(packet.len());
    }
    fn send_udp(&mut self, _to: SocketAddr, datagram: &[u8]) {
        self.replies.push(datagram.to_vec());
    }
    fn control(&mut self, _from: SocketAddr, _kind: DatagramKind, _datagram: &[u8]) {}
}

/// Two engines with a completed handshake: a sends to b.
fn connected_pair() -> (Engine, Engine) {
    let a = Engine::new([1; 32]);
    let b = Engine::new([2; 32]);
    let peer = |key: [u8; 32], ip: &str, endpoint| PeerConfig {
        public_key: key,
        preshared_key: None,
        persistent_keepalive: None,
        endpoint: Some(endpoint),
        allowed_ips: vec![ip.parse().expect("network")],
    };
    a.add_peer(&peer(b.public_key(), "10.0.0.2/32", B_ADDR))
        .expect("peer b");
    b.add_peer(&peer(a.public_key(), "10.0.0.1/32", A_ADDR))
        .expect("peer a");
    let mut out = vec![0u8; MAX_DATAGRAM];
    let first = ipv4_packet(64);
    let Outbound::Send { datagram, .. } = a.encapsulate(&a.table(), &first, &mut out) else {
        panic!("a starts a handshake");
    };
    let initiation = datagram.to_vec();
    let mut at_b = Sink::default();
    b.decapsulate(&b.table(), A_ADDR, &initiation, &mut out, &mut at_b);
    let mut at_a = Sink::default();
    for reply in at_b.replies {
        a.decapsulate(&a.table(), B_ADDR, &reply, &mut out, &mut at_a);
    }
    // a flushes its queued packet; b receives it and confirms the session.
    for queued in at_a.replies {
        b.decapsulate(&b.table(), A_ADDR, &queued, &mut out, &mut Sink::default());
    }
    (a, b)
}

fn ipv4_packet(len: usize) -> Vec<u8> {
    let mut p = vec![0u8; len];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(len as u16).to_be_bytes());
    p[9] = 17;
    p[12..16].copy_from_slice(&[10, 0, 0, 1]);
    p[16..20].copy_from_slice(&[10, 0, 0, 2]);
    p
}

fn encapsulate(c: &mut Criterion) {
    let mut group = c.benchmark_group("encapsulate");
    let (a, _b) = connected_pair();
    let mut out = vec![0u8; MAX_DATAGRAM];
    for size in SIZES {
        let packet = ipv4_packet(size);
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(
            BenchmarkId::from_parameter(size),
            &packet,
            |bench, packet| {
                bench.iter(|| {
                    let table = a.table();
                    match a.encapsulate(&table, black_box(packet), &mut out) {
                        Outbound::Send { datagram, .. } => black_box(datagram.len()),
                        other => panic!("unexpected {other:?}"),
                    }
                });
            },
        );
    }
    group.finish();
}

fn decapsulate(c: &mut Criterion) {
    /// Datagrams encrypted ahead of each timed run; replay protection forbids reuse.
    const CHUNK: u64 = 4096;
    let mut group = c.benchmark_group("decapsulate");
    let (a, b) = connected_pair();
    let mut out = vec![0u8; MAX_DATAGRAM];
    let mut sink = Sink::default();
    for size in SIZES {
        let packet = ipv4_packet(size);
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_function(BenchmarkId::from_parameter(size), |bench| {
            bench.iter_custom(|iters| {
                let mut timed = Duration::ZERO;
                let mut done = 0;
                let mut datagrams = Vec::with_capacity(CHUNK as usize);
                while done < iters {
                    let n = CHUNK.min(iters - done);
                    datagrams.clear();
                    for _ in 0..n {
                        match a.encapsulate(&a.table(), &packet, &mut out) {
                            Outbound::Send { datagram, .. } => datagrams.push(datagram.to_vec()),
                            other => panic!("unexpected {other:?}"),
                        }
                    }
                    let start = Instant::now();
                    for datagram in &datagrams {
                        let table = b.table();
                        b.decapsulate(&table, A_ADDR, black_box(datagram), &mut out, &mut sink);
                    }
                    timed += start.elapsed();
                    done += n;
                }
                timed
            });
        });
    }
    assert!(sink.delivered > 0, "decapsulated packets reached the sink");
    assert_eq!(b.drops.snapshot().replayed, 0);
    group.finish();
}

fn allowed_ips_lookup(c: &mut Criterion) {
    let mut group = c.benchmark_group("allowed_ips_lookup");
    for peers in [1u32, 100, 10_000] {
        let mut table = AllowedIps::new();
        for peer in 0..peers {
            let v4 = Ipv4Addr::from(0x0A00_0000 | peer);
            let v6 = Ipv6Addr::from(0xfd77_u128 << 112 | u128::from(peer));
            table.insert(format!("{v4}/32").parse().expect("v4"), peer);
            table.insert(format!("{v6}/128").parse().expect("v6"), peer);
        }
        // Probes spread over the table, so caches see a realistic mix.
        let probes: Vec<IpAddr> = (0..1024u32)
            .map(|i| {
                let peer = i.wrapping_mul(2_654_435_761) % peers;
                if i % 2 == 0 {
                    IpAddr::V4(Ipv4Addr::from(0x0A00_0000 | peer))
                } else {
                    IpAddr::V6(Ipv6Addr::from(0xfd77_u128 << 112 | u128::from(peer)))
                }
            })
            .collect();
        group.throughput(Throughput::Elements(probes.len() as u64));
        group.bench_with_input(
            BenchmarkId::from_parameter(peers),
            &probes,
            |bench, probes| {
                bench.iter(|| {
                    let mut found = 0u32;
                    for probe in probes {
                        found =
                            found.wrapping_add(*table.lookup(black_box(*probe)).expect("present"));
                    }
                    found
                });
            },
        );
    }
    group.finish();
}

criterion_group!(benches, encapsulate, decapsulate, allowed_ips_lookup);
criterion_main!(benches);
