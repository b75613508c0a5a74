//! The one UDP socket: WireGuard, STUN and TURN all use it.
//!
//! Dual-stack (`[::]:port` with `IPV6_V6ONLY` off) so one socket reaches IPv4
//! and IPv6 peers; IPv4 addresses travel as v4-mapped IPv6 on the wire API and
//! are normalised back at this boundary. Receives are `recvmmsg` batches with
//! UDP GRO when the kernel offers it (quinn-udp does both).

use std::io::{self, IoSlice, IoSliceMut};
use std::net::{IpAddr, Ipv6Addr, SocketAddr, SocketAddrV6, UdpSocket as StdUdpSocket};
use std::ops::Range;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU32, Ordering};
use std::time::Duration;

use quinn_udp::{RecvMeta, Transmit, UdpSockRef, UdpSocketState};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

fn new_eventfd() -> io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    // SAFETY: eventfd takes no pointers; a non-negative return is a new descriptor we own.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor nobody else owns.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) })
}

fn set_socket_mark(fd: std::os::fd::RawFd, mark: u32) -> io::Result<()> {
    // SAFETY: passes a live u32 and its size to setsockopt on our own descriptor.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_MARK,
            std::ptr::from_ref(&mark).cast(),
            std::mem::size_of::<u32>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Datagrams per `recvmmsg`: quinn-udp's own batch limit on Linux.
pub const RECV_BATCH: usize = 32;

/// Bytes per receive buffer: a full GRO super-datagram (64 KiB) fits.
pub const RECV_BUFFER: usize = 65_536;

/// Socket buffer size forced past `net.core.rmem_max`. The 208 KiB default
/// overflows under load and userspace WireGuard then drops ~10 % of packets;
/// 7 MiB is what wireguard-go asks for.
const SOCKET_BUFFER: usize = 7 << 20;

/// The shared UDP socket.
pub struct UdpSocket {
    socket: StdUdpSocket,
    state: UdpSocketState,
    dual_stack: bool,
    /// Changes with [`UdpSocket::rebind`].
    port: AtomicU16,
    /// `SO_MARK` (0: none), kept so a rebound socket gets it too.
    mark: AtomicU32,
    /// Made readable after [`UdpSocket::rebind`] so the reader blocked in
    /// `poll` returns and polls the new socket (see there).
    wake: std::os::fd::OwnedFd,
    /// The kernel refused a GSO send (EIO/EINVAL): send one by one from then on.
    gso_refused: AtomicBool,
}

/// Reusable receive buffers and metadata for one batch.
pub struct RecvBatch {
    storage: Vec<u8>,
    meta: [RecvMeta; RECV_BATCH],
    /// The receiving socket's port, to complete `RecvMeta::dst_ip` into the
    /// local address a datagram arrived on.
    local_port: u16,
}

impl Default for RecvBatch {
    fn default() -> Self {
        Self {
            storage: vec![0; RECV_BATCH * RECV_BUFFER],
            meta: [RecvMeta::default(); RECV_BATCH],
            local_port: 0,
        }
    }
}

impl RecvBatch {
    /// Calls `each(buffer, from, to, datagram)` for every datagram of the
    /// last `count` received buffers, splitting GRO super-datagrams at their
    /// stride. `datagram` is where the datagram lies in `buffer` (the whole
    /// receive storage, handed over so a datagram can be opened in place and
    /// earlier ones read in the same pass). `to` is the local address the
    /// datagram arrived on (destination IP from `IP_PKTINFO`/`IPV6_PKTINFO`,
    /// which quinn-udp turns on, and our port); `None` if the kernel did not
    /// say. Both addresses come as plain IPv4 for IPv4 traffic, never v4-mapped.
    pub fn for_each(
        &mut self,
        count: usize,
        mut each: impl FnMut(&mut [u8], SocketAddr, Option<SocketAddr>, Range<usize>),
    ) {
        for (index, meta) in self.meta[..count].iter().enumerate() {
            let from = unmap(meta.addr);
            let to = meta
                .dst_ip
                .map(|ip| unmap(SocketAddr::new(ip, self.local_port)));
            let stride = meta.stride.max(1);
            let start = index * RECV_BUFFER;
            let end = start + meta.len.min(RECV_BUFFER);
            let mut at = start;
            while at < end {
                let datagram = at..(at + stride).min(end);
                at = datagram.end;
                each(&mut self.storage, from, to, datagram);
            }
        }
    }

    /// The whole receive storage, where [`RecvBatch::for_each`]'s ranges lie.
    pub fn buffer(&self) -> &[u8] {
        &self.storage
    }
}

impl UdpSocket {
    /// Binds `port` on every address (0 picks a free port), dual-stack when the
    /// host has IPv6, IPv4 only otherwise.
    pub fn bind(port: u16) -> io::Result<Self> {
        let (socket, dual_stack) = match Self::bind_dual_stack(port) {
            Ok(socket) => (socket, true),
            Err(err) => {
                tracing::debug!(%err, "no IPv6 socket; using IPv4 only");
                let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
                socket.bind(&SocketAddr::from(([0, 0, 0, 0], port)).into())?;
                (socket, false)
            }
        };
        force_buffer(&socket, libc::SO_RCVBUFFORCE, libc::SO_RCVBUF)?;
        force_buffer(&socket, libc::SO_SNDBUFFORCE, libc::SO_SNDBUF)?;
        let socket: StdUdpSocket = socket.into();
        // Also turns on IP_PKTINFO / IPV6_RECVPKTINFO: `RecvMeta::dst_ip`.
        let state = UdpSocketState::new(UdpSockRef::from(&socket))?;
        let port = socket.local_addr()?.port();
        Ok(Self {
            socket,
            state,
            dual_stack,
            port: AtomicU16::new(port),
            mark: AtomicU32::new(0),
            wake: new_eventfd()?,
            gso_refused: AtomicBool::new(false),
        })
    }

    fn bind_dual_stack(port: u16) -> io::Result<Socket> {
        let socket = Socket::new(Domain::IPV6, Type::DGRAM, Some(Protocol::UDP))?;
        socket.set_only_v6(false)?;
        socket.bind(&SocketAddr::from((Ipv6Addr::UNSPECIFIED, port)).into())?;
        Ok(socket)
    }

    /// The bound port.
    pub fn local_port(&self) -> io::Result<u16> {
        Ok(self.port.load(Ordering::Relaxed))
    }

    /// Moves the socket to `port` (0 picks a free one), as `wg set
    /// listen-port` does, and returns the bound port. A new socket is set up
    /// like the first and put in place of the old one under the same
    /// descriptor (`dup3`), so the packet threads carry on without knowing.
    /// On error the old socket stays.
    ///
    /// The reader blocked in `poll` is registered on the old socket's wait
    /// queue only, and a woken `poll` re-checks the descriptor (now the new
    /// socket) without registering again: it would sleep on while datagrams
    /// queue on the new socket. So after the swap the [`UdpSocket::wake_fd`]
    /// eventfd, which the reader polls too, is made readable: its `poll`
    /// returns and the next one registers on the new socket.
    pub fn rebind(&self, port: u16) -> io::Result<u16> {
        let fresh = Self::bind(port)?;
        let mark = self.mark.load(Ordering::Relaxed);
        if mark != 0 {
            set_socket_mark(fresh.socket.as_raw_fd(), mark)?;
        }
        let fd = self.socket.as_raw_fd();
        // SAFETY: fcntl on descriptors we own; F_GETFL/F_SETFL take an int.
        unsafe {
            let flags = libc::fcntl(fd, libc::F_GETFL);
            if flags >= 0 {
                libc::fcntl(fresh.socket.as_raw_fd(), libc::F_SETFL, flags);
            }
        }
        // SAFETY: both descriptors are open and ours; dup3 swaps what `fd`
        // refers to atomically, closing the old socket (and its port).
        let swapped = unsafe { libc::dup3(fresh.socket.as_raw_fd(), fd, libc::O_CLOEXEC) };
        if swapped < 0 {
            return Err(io::Error::last_os_error());
        }
        let one = 1u64.to_ne_bytes();
        // SAFETY: writes 8 bytes from a live buffer to our own eventfd.
        let _ = unsafe { libc::write(self.wake.as_raw_fd(), one.as_ptr().cast(), one.len()) };
        let port = fresh.port.load(Ordering::Relaxed);
        self.port.store(port, Ordering::Relaxed);
        Ok(port)
    }

    /// The eventfd the reader polls beside the socket; see [`UdpSocket::rebind`].
    pub fn wake_fd(&self) -> std::os::fd::RawFd {
        self.wake.as_raw_fd()
    }

    /// Drains [`UdpSocket::wake_fd`] (a no-op read when it was not woken).
    pub fn clear_wake(&self) {
        let mut count = [0u8; 8];
        // SAFETY: reads at most 8 bytes into a live buffer from our own non-blocking eventfd.
        let _ = unsafe {
            libc::read(
                self.wake.as_raw_fd(),
                count.as_mut_ptr().cast(),
                count.len(),
            )
        };
    }

    /// Sets `SO_MARK` on outgoing datagrams (`wg set fwmark`; 0 clears it).
    pub fn set_mark(&self, mark: u32) -> io::Result<()> {
        set_socket_mark(self.socket.as_raw_fd(), mark)?;
        self.mark.store(mark, Ordering::Relaxed);
        Ok(())
    }

    /// The `SO_MARK` last set (0: none).
    pub fn mark(&self) -> u32 {
        self.mark.load(Ordering::Relaxed)
    }

    /// Sends one datagram, waiting for buffer space rather than dropping it.
    pub fn send_to(&self, to: SocketAddr, datagram: &[u8]) -> io::Result<()> {
        self.transmit(to, datagram, None)
    }

    /// Sends one datagram now or not at all: `WouldBlock` when the send
    /// buffer is full. For callers that must never wait (the control plane).
    pub fn try_send_to(&self, to: SocketAddr, datagram: &[u8]) -> io::Result<()> {
        let transmit = Transmit {
            destination: if self.dual_stack { map_v4(to) } else { to },
            ecn: None,
            contents: datagram,
            segment_size: None,
            src_ip: None,
        };
        self.state
            .try_send(UdpSockRef::from(&self.socket), &transmit)
    }

    /// Sends `datagrams`, each `segment_size` bytes (the last may be shorter),
    /// to one destination: one gathering `sendmsg` with UDP GSO when the
    /// kernel offers it (the kernel cuts segments from the iovecs as if they
    /// were one buffer, so the datagrams need not be back to back), else one
    /// `sendmsg` per datagram. If the kernel turns out to reject GSO at run
    /// time, the same datagrams go out one at a time and GSO stays off.
    pub fn send_gathered(
        &self,
        to: SocketAddr,
        datagrams: &[IoSlice<'_>],
        segment_size: usize,
    ) -> io::Result<()> {
        if datagrams.len() > 1
            && self.state.max_gso_segments() > 1
            && !self.gso_refused.load(Ordering::Relaxed)
        {
            match self.send_gso(to, datagrams, segment_size) {
                Err(err) if matches!(err.raw_os_error(), Some(libc::EIO | libc::EINVAL)) => {
                    tracing::info!(%err, "UDP GSO refused; sending datagrams one by one");
                    self.gso_refused.store(true, Ordering::Relaxed);
                }
                done => return done,
            }
        }
        for datagram in datagrams {
            self.send_to(to, datagram)?;
        }
        Ok(())
    }

    /// One `sendmsg` of all `datagrams` with a `UDP_SEGMENT` control message,
    /// retried when the socket buffer is full.
    fn send_gso(
        &self,
        to: SocketAddr,
        datagrams: &[IoSlice<'_>],
        segment_size: usize,
    ) -> io::Result<()> {
        #[repr(C, align(8))]
        struct Control([u8; 32]);
        let segment_size = u16::try_from(segment_size)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "segment too large"))?;
        let address = SockAddr::from(if self.dual_stack { map_v4(to) } else { to });
        let mut control = Control([0; 32]);
        // SAFETY: a zeroed msghdr is valid; every pointer in it refers to a
        // local that outlives the sendmsg call, and `IoSlice` is ABI-compatible
        // with `iovec` on Unix (documented by std). The control buffer is
        // 8-aligned and larger than CMSG_SPACE(2), so CMSG_FIRSTHDR is
        // non-null and the u16 fits behind it.
        let mut message: libc::msghdr = unsafe { std::mem::zeroed() };
        message.msg_name = address.as_ptr() as *mut libc::c_void;
        message.msg_namelen = address.len();
        message.msg_iov = datagrams.as_ptr() as *mut libc::iovec;
        message.msg_iovlen = datagrams.len();
        message.msg_control = control.0.as_mut_ptr().cast();
        // SAFETY: CMSG_SPACE only computes a length.
        message.msg_controllen = unsafe { libc::CMSG_SPACE(2) } as usize;
        // SAFETY: see above; the header is inside `control`.
        unsafe {
            let header = libc::CMSG_FIRSTHDR(&message);
            (*header).cmsg_level = libc::SOL_UDP;
            (*header).cmsg_type = libc::UDP_SEGMENT;
            (*header).cmsg_len = libc::CMSG_LEN(2) as usize;
            std::ptr::write_unaligned(libc::CMSG_DATA(header).cast::<u16>(), segment_size);
        }
        loop {
            // SAFETY: `message` is fully initialised above and its buffers live.
            let sent = unsafe { libc::sendmsg(self.socket.as_raw_fd(), &message, 0) };
            if sent >= 0 {
                return Ok(());
            }
            let err = io::Error::last_os_error();
            match err.kind() {
                io::ErrorKind::Interrupted => {}
                io::ErrorKind::WouldBlock => {
                    poll_one(
                        self.socket.as_raw_fd(),
                        libc::POLLOUT,
                        Duration::from_millis(100),
                    )?;
                }
                _ => return Err(err),
            }
        }
    }

    /// One `sendmsg`, retried when the socket buffer is full: a full buffer
    /// means wait, not drop.
    fn transmit(
        &self,
        to: SocketAddr,
        contents: &[u8],
        segment_size: Option<usize>,
    ) -> io::Result<()> {
        let transmit = Transmit {
            destination: if self.dual_stack { map_v4(to) } else { to },
            ecn: None,
            contents,
            segment_size,
            src_ip: None,
        };
        loop {
            match self
                .state
                .try_send(UdpSockRef::from(&self.socket), &transmit)
            {
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                    poll_one(
                        self.socket.as_raw_fd(),
                        libc::POLLOUT,
                        Duration::from_millis(100),
                    )?;
                }
                done => return done,
            }
        }
    }

    /// How many datagrams one GSO send may carry (1 without GSO).
    pub fn max_gso_segments(&self) -> usize {
        self.state.max_gso_segments()
    }

    /// How many datagrams one GRO receive may coalesce (1 without GRO).
    pub fn gro_segments(&self) -> usize {
        self.state.gro_segments()
    }

    /// Receives one batch without blocking; `Ok(0)` when nothing is waiting.
    pub fn recv_batch(&self, batch: &mut RecvBatch) -> io::Result<usize> {
        batch.local_port = self.port.load(Ordering::Relaxed);
        let mut chunks = batch.storage.chunks_mut(RECV_BUFFER);
        let mut slices: [IoSliceMut<'_>; RECV_BATCH] =
            std::array::from_fn(|_| IoSliceMut::new(chunks.next().unwrap_or_default()));
        match self
            .state
            .recv(UdpSockRef::from(&self.socket), &mut slices, &mut batch.meta)
        {
            Ok(count) => Ok(count),
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => Ok(0),
            Err(err) => Err(err),
        }
    }

    /// Waits until a datagram is waiting or `timeout` passes.
    pub fn wait_readable(&self, timeout: Duration) -> io::Result<bool> {
        poll_one(self.socket.as_raw_fd(), libc::POLLIN, timeout)
    }
}

impl AsRawFd for UdpSocket {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.socket.as_raw_fd()
    }
}

/// Waits for `events` on one descriptor. `Ok(false)` on timeout or signal.
pub(crate) fn poll_one(fd: i32, events: libc::c_short, timeout: Duration) -> io::Result<bool> {
    let mut pollfd = libc::pollfd {
        fd,
        events,
        revents: 0,
    };
    let millis = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
    // SAFETY: one valid pollfd on the stack, count 1.
    let ready = unsafe { libc::poll(&mut pollfd, 1, millis) };
    if ready < 0 {
        let err = io::Error::last_os_error();
        return if err.kind() == io::ErrorKind::Interrupted {
            Ok(false)
        } else {
            Err(err)
        };
    }
    Ok(ready > 0)
}

/// Sets a socket buffer past the sysctl limit when allowed (root), else as
/// large as the limit permits.
fn force_buffer(socket: &Socket, force: libc::c_int, plain: libc::c_int) -> io::Result<()> {
    let size = libc::c_int::try_from(SOCKET_BUFFER).unwrap_or(libc::c_int::MAX);
    for option in [force, plain] {
        // SAFETY: setsockopt with a c_int value of the right length on a valid socket.
        let rc = unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::SOL_SOCKET,
                option,
                (&size as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc == 0 {
            return Ok(());
        }
    }
    Err(io::Error::last_os_error())
}

/// IPv4 addresses as v4-mapped IPv6, for a dual-stack socket.
fn map_v4(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V4(v4) => {
            SocketAddr::V6(SocketAddrV6::new(v4.ip().to_ipv6_mapped(), v4.port(), 0, 0))
        }
        v6 @ SocketAddr::V6(_) => v6,
    }
}

/// v4-mapped IPv6 back to IPv4, so endpoints compare and print as users wrote them.
pub fn unmap(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), v6.port()),
            None => SocketAddr::V6(v6),
        },
        v4 @ SocketAddr::V4(_) => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn for_each_gives_the_local_address_unmapped_with_our_port() {
        let mut batch = RecvBatch {
            local_port: 51820,
            ..RecvBatch::default()
        };
        let mapped_ip: IpAddr = "::ffff:192.0.2.7".parse().expect("ip");
        batch.meta[0] = RecvMeta {
            addr: "[::ffff:198.51.100.1]:3478".parse().expect("addr"),
            len: 6,
            stride: 3,
            ecn: None,
            dst_ip: Some(mapped_ip),
        };
        batch.meta[1] = RecvMeta {
            addr: "[2001:db8::1]:9".parse().expect("addr"),
            len: 1,
            stride: 1,
            ecn: None,
            dst_ip: None,
        };
        let mut seen = Vec::new();
        batch.for_each(2, |_, from, to, datagram| {
            seen.push((from, to, datagram.len()))
        });
        let from: SocketAddr = "198.51.100.1:3478".parse().expect("addr");
        let to: SocketAddr = "192.0.2.7:51820".parse().expect("addr");
        let v6: SocketAddr = "[2001:db8::1]:9".parse().expect("addr");
        assert_eq!(
            seen,
            vec![(from, Some(to), 3), (from, Some(to), 3), (v6, None, 1)]
        );
    }

    /// Receives `n` datagrams on `socket` (GRO off: one per read).
    fn receive(socket: &StdUdpSocket, n: usize) -> Vec<Vec<u8>> {
        socket
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        (0..n)
            .map(|_| {
                let mut buf = [0u8; 2048];
                let len = socket.recv(&mut buf).expect("a datagram");
                buf[..len].to_vec()
            })
            .collect()
    }

    #[test]
    fn a_gathered_run_leaves_as_separate_datagrams_with_their_own_bytes() {
        let sender = UdpSocket::bind(0).expect("bind");
        assert!(sender.max_gso_segments() > 1, "this kernel offers UDP GSO");
        let receiver = StdUdpSocket::bind("127.0.0.1:0").expect("bind");
        let to = receiver.local_addr().expect("addr");
        // Three datagrams in three places, not back to back; the last is short.
        let (first, second, last) = (vec![1u8; 1000], vec![2u8; 1000], vec![3u8; 300]);
        let iovecs = [
            IoSlice::new(&first),
            IoSlice::new(&second),
            IoSlice::new(&last),
        ];
        sender.send_gathered(to, &iovecs, 1000).expect("send");
        assert_eq!(receive(&receiver, 3), vec![first, second, last]);
    }
}
