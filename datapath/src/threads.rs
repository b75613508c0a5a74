//! The packet threads' lifecycle: how an idle thread sleeps until there is
//! work or the device stops, and how a thread that dies on its own (a panic,
//! or an error it cannot get past, such as its TUN device deleted under it) is
//! reported instead of leaving a device that looks up but moves nothing.

use std::any::Any;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

/// A packet thread that stopped while the device was still running.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("datapath thread {thread} {reason}")]
pub struct ThreadExit {
    /// The thread's name (`wice-tun-rx`, `wice-udp-rx`, `wice-timers`).
    pub thread: &'static str,
    /// What happened: `panicked: ...`, `failed: ...` or `exited`.
    pub reason: String,
}

/// Told once, from the dying thread, when the first packet thread dies.
pub(crate) type ExitHook = Box<dyn Fn(&ThreadExit) + Send + Sync>;

/// Stop flag plus an eventfd that wakes every thread blocked in [`Self::wait`].
pub(crate) struct StopSignal {
    stopped: AtomicBool,
    event: OwnedFd,
}

impl StopSignal {
    pub(crate) fn new() -> io::Result<Self> {
        // SAFETY: eventfd takes no pointers; a non-negative return is a new descriptor we own.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Self {
            stopped: AtomicBool::new(false),
            // SAFETY: `fd` is a fresh descriptor nobody else owns.
            event: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    pub(crate) fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::Relaxed)
    }

    /// Sets the flag and wakes every waiter, now and later: the eventfd is
    /// never drained, so it stays readable.
    pub(crate) fn stop(&self) {
        self.stopped.store(true, Ordering::Relaxed);
        let one = 1u64.to_ne_bytes();
        // SAFETY: writes 8 bytes from a live buffer to our own eventfd.
        let _ = unsafe { libc::write(self.event.as_raw_fd(), one.as_ptr().cast(), one.len()) };
    }

    /// Sleeps until `fd` is ready for `events` (if given), the device stops, or
    /// `timeout` passes (never, if `None`). Spurious returns are fine: callers
    /// loop. An error is the poll itself failing.
    pub(crate) fn wait(
        &self,
        fd: Option<RawFd>,
        events: libc::c_short,
        timeout: Option<Duration>,
    ) -> io::Result<()> {
        self.wait_or_woken(fd, events, None, timeout)
    }

    /// [`StopSignal::wait`], also returning when the eventfd `wake` (if
    /// given) is readable: how a thread is made to poll its descriptor anew
    /// after the descriptor was swapped under it (see `UdpSocket::rebind`).
    pub(crate) fn wait_or_woken(
        &self,
        fd: Option<RawFd>,
        events: libc::c_short,
        wake: Option<RawFd>,
        timeout: Option<Duration>,
    ) -> io::Result<()> {
        let mut fds = [
            libc::pollfd {
                fd: self.event.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                // poll ignores negative descriptors.
                fd: fd.unwrap_or(-1),
                events,
                revents: 0,
            },
            libc::pollfd {
                fd: wake.unwrap_or(-1),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        let millis = timeout.map_or(-1, |t| i32::try_from(t.as_millis()).unwrap_or(i32::MAX));
        // SAFETY: a valid array of three pollfds on the stack.
        let ready = unsafe { libc::poll(fds.as_mut_ptr(), 3, millis) };
        if ready < 0 {
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                return Err(err);
            }
        }
        Ok(())
    }
}

/// What the packet threads share about their lifecycle.
pub(crate) struct Supervisor {
    pub(crate) stop: StopSignal,
    exited: Mutex<Option<ThreadExit>>,
    hook: Mutex<Option<ExitHook>>,
}

impl Supervisor {
    pub(crate) fn new() -> io::Result<Arc<Self>> {
        Ok(Arc::new(Self {
            stop: StopSignal::new()?,
            exited: Mutex::new(None),
            hook: Mutex::new(None),
        }))
    }

    /// Calls `hook` for the first thread that dies; at once if one already has.
    pub(crate) fn set_hook(&self, hook: ExitHook) {
        let mut slot = self.hook.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(exit) = self
            .exited
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
        {
            hook(exit);
        }
        *slot = Some(hook);
    }

    /// The first thread that died, if any.
    pub(crate) fn exited(&self) -> Option<ThreadExit> {
        self.exited
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn report(&self, exit: ThreadExit) {
        tracing::error!(thread = exit.thread, reason = %exit.reason, "datapath thread died");
        let hook = self.hook.lock().unwrap_or_else(PoisonError::into_inner);
        {
            let mut first = self.exited.lock().unwrap_or_else(PoisonError::into_inner);
            if first.is_some() {
                return;
            }
            *first = Some(exit.clone());
        }
        if let Some(hook) = hook.as_ref() {
            hook(&exit);
        }
    }

    /// Starts `body` on a named thread. If it returns or panics while the
    /// device is not stopping, that is reported as a [`ThreadExit`].
    pub(crate) fn spawn(
        self: &Arc<Self>,
        name: &'static str,
        body: impl FnOnce() -> io::Result<()> + Send + 'static,
    ) -> io::Result<JoinHandle<()>> {
        let supervisor = Arc::clone(self);
        std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                let outcome = catch_unwind(AssertUnwindSafe(body));
                if supervisor.stop.is_stopped() {
                    return;
                }
                let reason = match outcome {
                    Ok(Ok(())) => "exited".to_owned(),
                    Ok(Err(err)) => format!("failed: {err}"),
                    Err(panic) => format!("panicked: {}", panic_message(panic.as_ref())),
                };
                supervisor.report(ThreadExit {
                    thread: name,
                    reason,
                });
            })
    }
}

fn panic_message(panic: &(dyn Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    fn watched() -> (Arc<Supervisor>, mpsc::Receiver<ThreadExit>) {
        let supervisor = Supervisor::new().expect("eventfd");
        let (tx, rx) = mpsc::channel();
        let tx = Mutex::new(tx);
        supervisor.set_hook(Box::new(move |exit| {
            let _ = tx
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .send(exit.clone());
        }));
        (supervisor, rx)
    }

    #[test]
    fn a_panicking_thread_is_reported_by_name_with_its_message() {
        let (supervisor, exits) = watched();
        let thread = supervisor
            .spawn("wice-timers", || panic!("boom"))
            .expect("spawn");
        let _ = thread.join();
        let exit = exits
            .recv_timeout(Duration::from_secs(5))
            .expect("reported");
        assert_eq!(exit.thread, "wice-timers");
        assert_eq!(exit.reason, "panicked: boom");
        assert_eq!(
            exit.to_string(),
            "datapath thread wice-timers panicked: boom"
        );
    }

    #[test]
    fn a_thread_that_fails_or_returns_early_is_reported_once() {
        let (supervisor, exits) = watched();
        let failing = supervisor
            .spawn("wice-tun-rx", || Err(io::Error::other("TUN device gone")))
            .expect("spawn");
        let _ = failing.join();
        let returning = supervisor.spawn("wice-udp-rx", || Ok(())).expect("spawn");
        let _ = returning.join();
        let exit = exits
            .recv_timeout(Duration::from_secs(5))
            .expect("reported");
        assert_eq!(exit.reason, "failed: TUN device gone");
        assert!(exits.try_recv().is_err(), "the first death is the one told");
        assert_eq!(supervisor.exited(), Some(exit));
    }

    #[test]
    fn threads_that_end_because_the_device_stops_are_not_failures() {
        let (supervisor, exits) = watched();
        let stop = Arc::clone(&supervisor);
        let thread = supervisor
            .spawn("wice-udp-rx", move || {
                while !stop.stop.is_stopped() {
                    stop.stop.wait(None, 0, None)?;
                }
                Ok(())
            })
            .expect("spawn");
        supervisor.stop.stop();
        thread.join().expect("joined");
        assert!(exits.try_recv().is_err());
    }

    #[test]
    fn a_hook_set_after_a_death_still_hears_of_it() {
        let supervisor = Supervisor::new().expect("eventfd");
        let _ = supervisor
            .spawn("wice-timers", || Ok(()))
            .expect("spawn")
            .join();
        let (tx, rx) = mpsc::channel();
        let tx = Mutex::new(tx);
        supervisor.set_hook(Box::new(move |exit| {
            let _ = tx
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .send(exit.thread);
        }));
        assert_eq!(rx.try_recv(), Ok("wice-timers"));
    }
}
