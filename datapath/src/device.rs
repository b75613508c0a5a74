//! The running datapath: a TUN device, the UDP socket and the threads that
//! move packets between them through the [`Engine`].
//!
//! Threads (one job each):
//! - `wice-tun-rx`: reads TUN (TSO super-packets split by tun-rs), encrypts,
//!   sends runs of datagrams with UDP GSO (see `tx`);
//! - `wice-udp-rx`: receives `recvmmsg` batches with UDP GRO, decrypts, writes
//!   TUN with GRO coalescing (see `rx`); relayed WireGuard is unwrapped from
//!   TURN ChannelData here too; STUN (bare or in ChannelData) leaves here for
//!   the control plane;
//! - `wice-timers`: WireGuard timers every 250 ms while peers have traffic,
//!   every second once all are quiet; rate-limiter reset every second.
//!
//! Idle threads sleep: the readers block in `poll` on their descriptor and the
//! stop eventfd, with no timeout. A thread that dies while the device runs is
//! reported through [`Device::on_thread_exit`] (see `threads`).
//!
//! One TUN reader only: several readers reorder a flow's packets, which costs
//! TCP far more than the parallelism gains (design notes §4). On a 2-core
//! machine the two packet threads are one per core: encryption and
//! decryption each get one.
//!
//! Offloads are probed at start: a kernel without virtio-net headers on TUN
//! gets a plain TUN device (one packet per read and write), a socket without
//! GSO gets one `sendmsg` per datagram. Both are logged.

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tun_rs::{DeviceBuilder, SyncDevice, VIRTIO_NET_HDR_LEN};

use crate::MAX_DATAGRAM;
use crate::classify::DatagramKind;
use crate::counters::DropCounters;
use crate::engine::{Engine, HANDSHAKE_SCRATCH};
use crate::rx::{InboundSink, RxBatch};
use crate::threads::{Supervisor, ThreadExit};
use crate::tun_write::{TunOffload, TunSink, TunWriter};
use crate::tx::{PACKET_OFFSET, TxBatch};
use crate::udp::{RecvBatch, UdpSocket};

/// How often WireGuard's timers run while any peer has traffic; boringtun
/// expects roughly 4 Hz.
const TIMER_TICK: Duration = Duration::from_millis(250);

/// How often they run once no peer has sent, received or retried anything for
/// [`QUIET_TICKS`] ticks. WireGuard's own timers are seconds apart (handshake
/// retry 5 s, keepalive 10 s, persistent keepalive ≥ 1 s): one second late is
/// within their slack, and an idle node wakes once a second instead of four times.
const IDLE_TIMER_TICK: Duration = Duration::from_secs(1);

/// Quiet fast ticks before the timer thread slows down.
const QUIET_TICKS: u32 = 8;

/// Times an idle reader yields its core before it sleeps in `poll`. Under
/// load the next batch is usually microseconds away, and a wake-up from
/// `poll` costs more than a yield.
const IDLE_SPINS: u32 = 4;

/// STUN/TURN datagrams waiting for the control plane. Control traffic is a few
/// packets per second per peer; a full queue means the control plane is stuck,
/// and dropping (counted) is better than stalling WireGuard.
const CONTROL_QUEUE: usize = 1024;

/// TUN transmit queue length; the kernel default of 500 drops under bursts.
const TUN_TX_QUEUE_LEN: u32 = 5000;

/// Settings for [`Device::create`]. `Debug` leaves out the private key.
#[derive(Clone)]
pub struct DeviceConfig {
    /// TUN interface name.
    pub name: String,
    /// TUN MTU.
    pub mtu: u16,
    /// UDP port; 0 picks a free one.
    pub listen_port: u16,
    /// The device's X25519 private key.
    pub private_key: [u8; 32],
}

impl std::fmt::Debug for DeviceConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceConfig")
            .field("name", &self.name)
            .field("mtu", &self.mtu)
            .field("listen_port", &self.listen_port)
            .finish_non_exhaustive()
    }
}

/// Why the device could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeviceError {
    /// Creating the TUN interface failed.
    #[error("cannot create TUN interface {name}: {source}")]
    Tun {
        /// Interface name.
        name: String,
        /// The OS error.
        source: io::Error,
    },
    /// Binding the UDP socket failed.
    #[error("cannot bind UDP port {port}: {source}")]
    Udp {
        /// Requested port.
        port: u16,
        /// The OS error.
        source: io::Error,
    },
    /// A packet thread (or its stop signal) could not be set up.
    #[error("cannot start datapath thread: {0}")]
    Thread(io::Error),
}

/// A STUN or TURN datagram received on the shared socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlDatagram {
    /// Sender address (plain IPv4 for IPv4 senders, never v4-mapped).
    pub from: SocketAddr,
    /// The local address it arrived on: the destination IP the kernel reported
    /// and the listen port, so ICE can match a check to its host candidate.
    /// `None` if the kernel did not report it. Plain IPv4 for IPv4, like `from`.
    pub to: Option<SocketAddr>,
    /// STUN or ChannelData.
    pub kind: DatagramKind,
    /// The datagram.
    pub data: Vec<u8>,
}

/// A running datapath. Dropping it stops the threads; the TUN interface goes
/// away with the last descriptor.
pub struct Device {
    engine: Arc<Engine>,
    udp: Arc<UdpSocket>,
    tun: Arc<SyncDevice>,
    listen_port: u16,
    supervisor: Arc<Supervisor>,
    threads: Vec<JoinHandle<()>>,
    /// Behind a mutex so the device can be shared across threads (`Receiver` is not `Sync`).
    control_rx: std::sync::Mutex<Option<Receiver<ControlDatagram>>>,
}

impl Device {
    /// Creates the TUN interface (down, no addresses: the caller configures
    /// the system), binds the socket and starts the packet threads.
    pub fn create(config: &DeviceConfig) -> Result<Self, DeviceError> {
        let build = |offload: bool| {
            DeviceBuilder::new()
                .name(&config.name)
                .mtu(config.mtu)
                .tx_queue_len(TUN_TX_QUEUE_LEN)
                .offload(offload)
                .build_sync()
        };
        let tun = match build(true) {
            Ok(tun) => tun,
            Err(err) => {
                tracing::info!(%err, "TUN offload unavailable; one packet per read and write");
                build(false).map_err(|source| DeviceError::Tun {
                    name: config.name.clone(),
                    source,
                })?
            }
        };
        tun.set_nonblocking(true)
            .map_err(|source| DeviceError::Tun {
                name: config.name.clone(),
                source,
            })?;
        let udp = UdpSocket::bind(config.listen_port).map_err(|source| DeviceError::Udp {
            port: config.listen_port,
            source,
        })?;
        let listen_port = udp.local_port().map_err(|source| DeviceError::Udp {
            port: config.listen_port,
            source,
        })?;
        tracing::debug!(
            tun_tso = tun.tcp_gso(),
            tun_uso = tun.udp_gso(),
            udp_gso_segments = udp.max_gso_segments(),
            udp_gro_segments = udp.gro_segments(),
            "offloads"
        );
        Self::start(
            Arc::new(Engine::new(config.private_key)),
            tun,
            udp,
            listen_port,
            config.mtu,
        )
    }

    fn start(
        engine: Arc<Engine>,
        tun: SyncDevice,
        udp: UdpSocket,
        listen_port: u16,
        mtu: u16,
    ) -> Result<Self, DeviceError> {
        let tun = Arc::new(tun);
        let udp = Arc::new(udp);
        let supervisor = Supervisor::new().map_err(DeviceError::Thread)?;
        let (control_tx, control_rx) = sync_channel(CONTROL_QUEUE);
        let mut device = Self {
            engine,
            udp,
            tun,
            listen_port,
            supervisor,
            threads: Vec::new(),
            control_rx: std::sync::Mutex::new(Some(control_rx)),
        };
        let tun_rx = TunReader {
            engine: device.engine.clone(),
            tun: device.tun.clone(),
            udp: device.udp.clone(),
            supervisor: device.supervisor.clone(),
            mtu,
        };
        device.spawn("wice-tun-rx", move || tun_rx.run())?;
        let udp_rx = UdpReader {
            engine: device.engine.clone(),
            tun: device.tun.clone(),
            udp: device.udp.clone(),
            supervisor: device.supervisor.clone(),
            control: control_tx,
        };
        device.spawn("wice-udp-rx", move || udp_rx.run())?;
        let (engine, udp, supervisor) = (
            device.engine.clone(),
            device.udp.clone(),
            device.supervisor.clone(),
        );
        device.spawn("wice-timers", move || {
            run_timers(&engine, &udp, &supervisor)
        })?;
        Ok(device)
    }

    fn spawn(
        &mut self,
        name: &'static str,
        body: impl FnOnce() -> io::Result<()> + Send + 'static,
    ) -> Result<(), DeviceError> {
        let handle = self
            .supervisor
            .spawn(name, body)
            .map_err(DeviceError::Thread)?;
        self.threads.push(handle);
        Ok(())
    }

    /// Calls `hook` (once, from the dying thread) when a packet thread stops
    /// while the device is running: a panic, or an error it cannot get past
    /// such as its TUN device deleted under it. At once if one already has.
    /// The device then moves no packets in that direction: stop using it.
    pub fn on_thread_exit(&self, hook: impl Fn(&ThreadExit) + Send + Sync + 'static) {
        self.supervisor.set_hook(Box::new(hook));
    }

    /// The first packet thread that stopped on its own, if any.
    pub fn thread_exit(&self) -> Option<ThreadExit> {
        self.supervisor.exited()
    }

    /// The engine: peers, endpoints, counters.
    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// The bound UDP port.
    pub fn listen_port(&self) -> u16 {
        self.udp.local_port().unwrap_or(self.listen_port)
    }

    /// Moves the UDP socket to `port` (0: any free port), like `wg set
    /// listen-port`; returns the port bound. The packet threads keep running.
    pub fn set_listen_port(&self, port: u16) -> io::Result<u16> {
        if port != 0 && port == self.listen_port() {
            return Ok(port);
        }
        self.udp.rebind(port)
    }

    /// Marks outgoing datagrams (`SO_MARK`), like `wg set fwmark`; 0 clears it.
    pub fn set_fwmark(&self, mark: u32) -> io::Result<()> {
        self.udp.set_mark(mark)
    }

    /// The mark set by [`Device::set_fwmark`] (0: none).
    pub fn fwmark(&self) -> u32 {
        self.udp.mark()
    }

    /// The TUN interface's kernel index.
    pub fn if_index(&self) -> io::Result<u32> {
        self.tun.if_index()
    }

    /// Takes the receiving end of the control queue (STUN/TURN datagrams).
    /// Until someone drains it, control datagrams wait in the bounded queue; once it is
    /// full (or the receiver is dropped) they are dropped and counted as `control_dropped`.
    pub fn take_control_receiver(&self) -> Option<Receiver<ControlDatagram>> {
        self.control_rx
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
    }

    /// Sends the peer a handshake initiation now, on its current path (framed
    /// for a relay), unless it has a fresh session or no path; see
    /// [`Engine::initiate_handshake`]. Call when ICE nominates a path. Returns
    /// whether an initiation was sent. Never blocks: with the socket's send
    /// buffer full the initiation is dropped and counted (`control_send_dropped`);
    /// WireGuard's own retry sends another.
    pub fn initiate_handshake(&self, public_key: &[u8; 32]) -> bool {
        let mut scratch = [0u8; HANDSHAKE_SCRATCH];
        let mut sent = false;
        self.engine
            .initiate_handshake(public_key, &mut scratch, |to, datagram| {
                sent = self.send_control(to, datagram).is_ok();
            });
        sent
    }

    /// Sends a keepalive to every peer with a persistent keepalive and an
    /// endpoint, as WireGuard does when an interface comes up: a peer without
    /// a session gets a handshake initiation, so a node restarted with the
    /// same key is reachable at once from a peer still holding the old
    /// session. Never blocks, like [`Device::send_control`]. Returns how many
    /// went out.
    pub fn send_keepalives(&self) -> usize {
        let mut scratch = vec![0u8; HANDSHAKE_SCRATCH];
        let mut sent = 0;
        self.engine.send_keepalives(&mut scratch, |to, datagram| {
            if self.send_control(to, datagram).is_ok() {
                sent += 1;
            }
        });
        sent
    }

    /// Sends a control-plane datagram (STUN/TURN) from the shared socket, as
    /// is: the control plane does its own TURN framing. Never blocks: when the
    /// socket's send buffer is full the datagram is dropped, counted as
    /// `control_send_dropped`, and `WouldBlock` returned; the control plane
    /// retransmits on its own schedule. Other errors count as `udp_send_error`.
    pub fn send_control(&self, to: SocketAddr, datagram: &[u8]) -> io::Result<()> {
        let sent = self.udp.try_send_to(to, datagram);
        match &sent {
            Ok(()) => {}
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                DropCounters::bump(&self.engine.drops.control_send_dropped);
            }
            Err(err) => {
                tracing::trace!(%err, %to, "control datagram not sent");
                DropCounters::bump(&self.engine.drops.udp_send_error);
            }
        }
        sent
    }

    /// Stops the packet threads and waits for them.
    pub fn shutdown(mut self) {
        self.stop_threads();
    }

    fn stop_threads(&mut self) {
        self.supervisor.stop.stop();
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

impl Drop for Device {
    fn drop(&mut self) {
        self.stop_threads();
    }
}

/// TUN → network.
struct TunReader {
    engine: Arc<Engine>,
    tun: Arc<SyncDevice>,
    udp: Arc<UdpSocket>,
    supervisor: Arc<Supervisor>,
    mtu: u16,
}

impl TunReader {
    /// Returns only when the device stops, or with the error that ended it.
    fn run(self) -> io::Result<()> {
        let mut raw = vec![0u8; VIRTIO_NET_HDR_LEN + MAX_DATAGRAM];
        // tun-rs splits each read straight into the batch's slots, where the
        // packets are sealed in place: MTU-sized slots keep the batch in cache.
        let mut batch = TxBatch::new(self.udp.max_gso_segments(), usize::from(self.mtu));
        let mut spins = 0;
        let stop = &self.supervisor.stop;
        while !stop.is_stopped() {
            let (mut slots, sizes) = batch.tun_slots();
            let count = match self
                .tun
                .recv_multiple(&mut raw, &mut slots, sizes, PACKET_OFFSET)
            {
                Ok(count) => count,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                    if spins < IDLE_SPINS {
                        spins += 1;
                        std::thread::yield_now();
                        continue;
                    }
                    spins = 0;
                    stop.wait(Some(self.tun.as_raw_fd()), libc::POLLIN, None)?;
                    continue;
                }
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) if tun_is_gone(&err) => {
                    return Err(io::Error::new(err.kind(), format!("TUN read: {err}")));
                }
                Err(err) => {
                    // A malformed virtio header (bad GSO metadata) spoils one read, not the device.
                    tracing::debug!(%err, "TUN read failed");
                    DropCounters::bump(&self.engine.drops.malformed_inner);
                    continue;
                }
            };
            let table = self.engine.table();
            batch.seal(&self.engine, &table, count);
            drop(table);
            self.send(&batch);
            batch.clear();
        }
        Ok(())
    }

    fn send(&self, batch: &TxBatch) {
        batch.for_each_run(|to, datagrams, segment_size| {
            if let Err(err) = self.udp.send_gathered(to, datagrams, segment_size) {
                tracing::trace!(%err, %to, "UDP send failed");
                DropCounters::bump(&self.engine.drops.udp_send_error);
            }
        });
    }
}

/// Network → TUN (and control plane).
struct UdpReader {
    engine: Arc<Engine>,
    tun: Arc<SyncDevice>,
    udp: Arc<UdpSocket>,
    supervisor: Arc<Supervisor>,
    control: SyncSender<ControlDatagram>,
}

impl UdpReader {
    /// Returns only when the device stops, or with the error that ended it.
    fn run(self) -> io::Result<()> {
        let mut received = RecvBatch::default();
        let mut batch = RxBatch::new();
        let mut writer = TunWriter::new(TunOffload {
            vnet_hdr: self.tun.tcp_gso(),
            udp_gso: self.tun.udp_gso(),
        });
        let mut tun = TunFd(self.tun.as_raw_fd());
        let mut spins = 0;
        let mut sink = ReplySink {
            engine: &self.engine,
            udp: &self.udp,
            control: &self.control,
            local: None,
        };
        let stop = &self.supervisor.stop;
        while !stop.is_stopped() {
            let count = match self.udp.recv_batch(&mut received) {
                Ok(0) => {
                    if spins < IDLE_SPINS {
                        spins += 1;
                        std::thread::yield_now();
                        continue;
                    }
                    spins = 0;
                    stop.wait_or_woken(
                        Some(self.udp.as_raw_fd()),
                        libc::POLLIN,
                        Some(self.udp.wake_fd()),
                        None,
                    )?;
                    self.udp.clear_wake();
                    continue;
                }
                Ok(count) => count,
                Err(err) => {
                    // ICMP errors (port unreachable) surface here; they are not fatal.
                    tracing::trace!(%err, "UDP receive error");
                    continue;
                }
            };
            let table = self.engine.table();
            received.for_each(count, |buffer, from, to, datagram| {
                sink.local = to;
                let at = datagram.start;
                if batch.open(
                    &self.engine,
                    &table,
                    from,
                    &mut buffer[datagram],
                    at,
                    &mut sink,
                ) {
                    self.write_tun(buffer, &mut batch, &mut writer, &mut tun);
                }
            });
            drop(table);
            self.write_tun(received.buffer(), &mut batch, &mut writer, &mut tun);
        }
        Ok(())
    }

    /// Writes the batch's packets, which lie in `buffer`, to TUN.
    fn write_tun(
        &self,
        buffer: &[u8],
        batch: &mut RxBatch,
        writer: &mut TunWriter,
        tun: &mut TunFd,
    ) {
        if batch.is_empty() {
            return;
        }
        let failed = writer.write(buffer, batch.packets(), tun);
        for _ in 0..failed {
            DropCounters::bump(&self.engine.drops.tun_write_error);
        }
        batch.clear();
    }
}

// tun-rs sets no other virtio-net header size than the 10-byte default.
const _: () = assert!(VIRTIO_NET_HDR_LEN == crate::tun_write::VNET_HDR_LEN);

/// The TUN descriptor, written with `writev`.
struct TunFd(std::os::fd::RawFd);

impl TunSink for TunFd {
    fn write_gathered(&mut self, parts: &[io::IoSlice<'_>]) -> io::Result<()> {
        let count = libc::c_int::try_from(parts.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "too many parts"))?;
        loop {
            // SAFETY: `IoSlice` is ABI-compatible with `iovec` on Unix
            // (documented by std); the slices outlive the call, and the
            // descriptor is the device's, open while the reader runs.
            let written = unsafe { libc::writev(self.0, parts.as_ptr().cast(), count) };
            if written >= 0 {
                return Ok(());
            }
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                tracing::trace!(%err, "TUN write failed");
                return Err(err);
            }
        }
    }
}

/// Where the UDP reader sends what is not for TUN.
struct ReplySink<'a> {
    engine: &'a Engine,
    udp: &'a UdpSocket,
    control: &'a SyncSender<ControlDatagram>,
    /// Where the datagram being handled arrived, for [`ControlDatagram::to`];
    /// set per datagram (a copy, not an allocation).
    local: Option<SocketAddr>,
}

impl InboundSink for ReplySink<'_> {
    fn send_udp(&mut self, to: SocketAddr, datagram: &[u8]) {
        if self.udp.send_to(to, datagram).is_err() {
            DropCounters::bump(&self.engine.drops.udp_send_error);
        }
    }

    fn control(&mut self, from: SocketAddr, kind: DatagramKind, datagram: &[u8]) {
        let message = ControlDatagram {
            from,
            to: self.local,
            kind,
            data: datagram.to_vec(),
        };
        match self.control.try_send(message) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                DropCounters::bump(&self.engine.drops.control_dropped);
            }
        }
    }
}

/// Whether a TUN read error means the device is gone (deleted, or its
/// descriptor broken), not that one read went wrong. tun-rs reports a bad
/// virtio header as an error without an OS code; those spoil one read only.
fn tun_is_gone(err: &io::Error) -> bool {
    matches!(
        err.raw_os_error(),
        Some(libc::EBADFD | libc::EBADF | libc::ENODEV | libc::ENXIO | libc::EIO)
    )
}

/// WireGuard's timers, and the handshake rate limiter's once-a-second reset.
fn run_timers(engine: &Engine, udp: &UdpSocket, supervisor: &Supervisor) -> io::Result<()> {
    let mut scratch = vec![0u8; MAX_DATAGRAM];
    let mut last_reset = Instant::now();
    let mut last_activity = None;
    let mut quiet_ticks = 0u32;
    let stop = &supervisor.stop;
    while !stop.is_stopped() {
        let tick = if quiet_ticks >= QUIET_TICKS {
            IDLE_TIMER_TICK
        } else {
            TIMER_TICK
        };
        stop.wait(None, 0, Some(tick))?;
        if stop.is_stopped() {
            break;
        }
        let mut sent = false;
        let activity = engine.update_timers(&mut scratch, |to, datagram| {
            sent = true;
            if udp.send_to(to, datagram).is_err() {
                DropCounters::bump(&engine.drops.udp_send_error);
            }
        });
        if sent || last_activity != Some(activity) {
            quiet_ticks = 0;
        } else {
            quiet_ticks = quiet_ticks.saturating_add(1);
        }
        last_activity = Some(activity);
        if last_reset.elapsed() >= Duration::from_secs(1) {
            engine.reset_rate_limiter();
            last_reset = Instant::now();
        }
    }
    Ok(())
}
