//! Hot-path benchmarks, no syscalls: WireGuard encapsulate/decapsulate through
//! the engine (routing, locking and crypto included), one packet and in
//! batches; datagram classification; allowed-IPs lookup; and the whole packet
//! loop, two engines back to back in memory.
//!
//! Run: `cargo bench -p wice-datapath --bench datapath`

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use wice_datapath::allowed_ips::AllowedIps;
use wice_datapath::classify::{DatagramKind, classify};
use wice_datapath::tun_write::{TunOffload, TunSink, TunWriter};
use wice_datapath::tx::PACKET_OFFSET;
use wice_datapath::udp::{RECV_BATCH, RECV_BUFFER};
use wice_datapath::{
    BATCH_SIZE, Engine, InboundSink, MAX_DATAGRAM, Outbound, PeerConfig, RxBatch, TxBatch,
};

const SIZES: [usize; 3] = [64, 512, 1420];
const A_ADDR: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)), 51820);
const B_ADDR: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2)), 51820);

/// Keeps the replies a handshake produces.
#[derive(Default)]
struct Sink {
    replies: Vec<Vec<u8>>,
}

impl InboundSink for Sink {
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
                    let mut delivered = 0u64;
                    let start = Instant::now();
                    for datagram in &datagrams {
                        let table = b.table();
                        let len =
                            b.decapsulate(&table, A_ADDR, black_box(datagram), &mut out, &mut sink);
                        delivered += u64::from(len.is_some());
                    }
                    timed += start.elapsed();
                    assert_eq!(delivered, n, "every datagram passed cryptokey routing");
                    done += n;
                }
                timed
            });
        });
    }
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

/// Splits a batch's GSO runs into datagrams, as the kernel would.
fn for_each_datagram(batch: &TxBatch, mut each: impl FnMut(&[u8])) {
    for (_, datagrams, _) in batch.runs() {
        datagrams.for_each(&mut each);
    }
}

fn batches(c: &mut Criterion) {
    let mut group = c.benchmark_group("batch_1420x64");
    let (a, b) = connected_pair();
    let packets: Vec<Vec<u8>> = (0..64).map(|_| ipv4_packet(1420)).collect();
    group.throughput(Throughput::Bytes(64 * 1420));
    let mut tx = TxBatch::new(64, 1420);
    group.bench_function("encapsulate", |bench| {
        bench.iter(|| {
            tx.clear();
            let table = a.table();
            for packet in &packets {
                tx.push(&a, &table, black_box(packet));
            }
            tx.datagrams()
        });
    });
    // The send path as the device runs it: tun-rs has split a TUN read into
    // the batch's slots (not timed), and the batch seals each packet where it
    // lies. Only the seal is timed, so a copy added on this path shows up here
    // as time (compare `encapsulate`, which copies each packet in first).
    group.bench_function("seal_in_place", |bench| {
        bench.iter_custom(|iters| {
            let mut timed = Duration::ZERO;
            for _ in 0..iters {
                tx.clear();
                let (mut slots, sizes) = tx.tun_slots();
                for ((slot, size), packet) in slots.iter_mut().zip(sizes.iter_mut()).zip(&packets) {
                    slot[PACKET_OFFSET..PACKET_OFFSET + packet.len()].copy_from_slice(packet);
                    *size = packet.len();
                }
                let start = Instant::now();
                tx.seal(&a, &a.table(), black_box(packets.len()));
                timed += start.elapsed();
                assert_eq!(tx.datagrams(), 64);
            }
            timed
        });
    });
    // The receive path before in-place opening: each datagram decrypted into
    // a TUN slot of its own (a copy per packet), as `decapsulate` does.
    let mut slots = vec![vec![0u8; MAX_DATAGRAM]; 64];
    let mut sink = Sink::default();
    group.bench_function("decapsulate", |bench| {
        bench.iter_custom(|iters| {
            let mut timed = Duration::ZERO;
            for _ in 0..iters {
                tx.clear();
                for packet in &packets {
                    tx.push(&a, &a.table(), packet);
                }
                let start = Instant::now();
                let table = b.table();
                let mut delivered = 0;
                let mut slot = slots.iter_mut();
                for_each_datagram(&tx, |d| {
                    let out = slot.next().expect("64 slots");
                    delivered += usize::from(
                        b.decapsulate(&table, A_ADDR, black_box(d), out, &mut sink)
                            .is_some(),
                    );
                });
                timed += start.elapsed();
                assert_eq!(delivered, 64);
            }
            timed
        });
    });
    // The receive path as the device runs it: the datagrams lie back to back
    // in the receive buffer where the kernel put them (not timed); each is
    // opened where it lies, and the batch is gathered for TUN with its
    // virtio-net headers (into a sink that only counts bytes). A copy added
    // on this path shows up here as time.
    let segments: Vec<Vec<u8>> = (0..64u32).map(|i| tcp_segment(i * 1380, 1380)).collect();
    let mut rx = RxBatch::new();
    let mut writer = TunWriter::new(TunOffload {
        vnet_hdr: true,
        udp_gso: true,
    });
    let mut buffer = vec![0u8; RECV_BATCH * RECV_BUFFER];
    group.bench_function("open_in_place", |bench| {
        bench.iter_custom(|iters| {
            let mut timed = Duration::ZERO;
            for _ in 0..iters {
                tx.clear();
                for segment in &segments {
                    tx.push(&a, &a.table(), segment);
                }
                let mut ranges = Vec::with_capacity(64);
                let mut at = 0;
                for_each_datagram(&tx, |d| {
                    buffer[at..at + d.len()].copy_from_slice(d);
                    ranges.push(at..at + d.len());
                    at += d.len();
                });
                let start = Instant::now();
                rx.clear();
                let table = b.table();
                for range in &ranges {
                    rx.open(
                        &b,
                        &table,
                        A_ADDR,
                        &mut buffer[range.clone()],
                        range.start,
                        &mut sink,
                    );
                }
                let mut tun = CountingTun::default();
                writer.write(&buffer, rx.packets(), &mut tun);
                timed += start.elapsed();
                assert_eq!(rx.len(), 64);
                // 64 x 1380 bytes is more than one 64 KiB super-packet holds: two.
                assert_eq!(tun.bytes, 2 * (10 + 40) + 64 * 1380);
            }
            timed
        });
    });
    group.finish();
}

/// A TUN device that only counts what it is given.
#[derive(Default)]
struct CountingTun {
    bytes: usize,
}

impl TunSink for CountingTun {
    fn write_gathered(&mut self, parts: &[std::io::IoSlice<'_>]) -> std::io::Result<()> {
        self.bytes += parts.iter().map(|p| black_box(p.len())).sum::<usize>();
        Ok(())
    }
}

/// One IPv4 TCP segment from 10.0.0.1:5001 to 10.0.0.2:5201 with `payload`
/// bytes at sequence number `seq`.
fn tcp_segment(seq: u32, payload: usize) -> Vec<u8> {
    let total = 40 + payload;
    let mut p = vec![0xA5u8; total];
    p[..20].copy_from_slice(&[
        0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
    ]);
    p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    p[20..40].fill(0);
    p[20..22].copy_from_slice(&5001u16.to_be_bytes());
    p[22..24].copy_from_slice(&5201u16.to_be_bytes());
    p[24..28].copy_from_slice(&seq.to_be_bytes());
    p[32] = 5 << 4;
    p[33] = 0x10; // ACK
    p[34..36].copy_from_slice(&512u16.to_be_bytes());
    p
}

/// The whole packet path minus syscalls: a TUN batch is routed, encrypted and
/// laid out for GSO by one engine, split as GSO would, then classified,
/// decrypted, checked by cryptokey routing and batched for TUN by the other.
fn whole_loop(c: &mut Criterion) {
    let mut group = c.benchmark_group("whole_loop");
    let (a, b) = connected_pair();
    for size in [64usize, 1420] {
        let packets: Vec<Vec<u8>> = (0..BATCH_SIZE).map(|_| ipv4_packet(size)).collect();
        group.throughput(Throughput::Elements(BATCH_SIZE as u64));
        let mut tx = TxBatch::new(64, 1420);
        let mut rx = RxBatch::new();
        let mut buffer = vec![0u8; RECV_BATCH * RECV_BUFFER];
        let mut sink = Sink::default();
        group.bench_function(BenchmarkId::new("packets", size), |bench| {
            bench.iter(|| {
                tx.clear();
                let table = a.table();
                for packet in &packets {
                    tx.push(&a, &table, black_box(packet));
                }
                // The kernel's receive copy, then the in-place open.
                rx.clear();
                let table = b.table();
                let mut at = 0;
                for_each_datagram(&tx, |d| {
                    let range = at..at + d.len();
                    at = range.end;
                    buffer[range.clone()].copy_from_slice(d);
                    rx.open(
                        &b,
                        &table,
                        A_ADDR,
                        &mut buffer[range.clone()],
                        range.start,
                        &mut sink,
                    );
                });
                assert_eq!(rx.len(), BATCH_SIZE);
            });
        });
    }
    group.finish();
}

fn classification(c: &mut Criterion) {
    let mut stun = [0u8; 20];
    stun[1] = 1;
    stun[4..8].copy_from_slice(&[0x21, 0x12, 0xA4, 0x42]);
    let mut wireguard = vec![0xA5u8; 1452];
    wireguard[..4].copy_from_slice(&[4, 0, 0, 0]);
    let channel_data = [0x40, 0x00, 0x00, 0x04, 1, 2, 3, 4];
    let mut group = c.benchmark_group("classify");
    for (name, datagram) in [
        ("wireguard", &wireguard[..]),
        ("stun", &stun[..]),
        ("channel_data", &channel_data[..]),
    ] {
        group.bench_function(name, |bench| bench.iter(|| classify(black_box(datagram))));
    }
    group.finish();
    assert_eq!(classify(&wireguard), DatagramKind::WireGuard);
}

criterion_group!(
    benches,
    encapsulate,
    decapsulate,
    batches,
    whole_loop,
    classification,
    allowed_ips_lookup
);
criterion_main!(benches);
