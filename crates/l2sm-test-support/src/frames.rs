//! Raw Ethernet frames sent from inside a network namespace, on a dedicated thread: the
//! hostile pod of the abuse-limit tests (random source MACs, broadcast storms).
//!
//! The thread enters the namespace (it is its own thread, so nothing else changes
//! namespace), opens an `AF_PACKET` socket bound to the interface and sends the frames a
//! closure builds, as fast as the socket takes them, until a count is reached or it is told
//! to stop.

// One AF_PACKET socket: neither std nor nix has a safe way to open and bind one.
#![allow(unsafe_code)]

use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

/// What a sender does.
#[derive(Debug, Clone)]
pub struct SendSpec {
    /// Network namespace file, e.g. `/run/netns/NAME`.
    pub netns: String,
    /// Interface inside it.
    pub ifname: String,
    /// Frames to send (`None`: until stopped).
    pub count: Option<u64>,
    /// Nice value of the sender thread (0: unchanged; 19: yields to everything else).
    pub nice: i32,
    /// The one CPU the sender thread may run on (`None`: any).
    pub cpu: Option<usize>,
}

/// A running sender; [`FrameSender::stop`] ends it and says how many frames went out.
pub struct FrameSender {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<std::io::Result<u64>>>,
}

impl FrameSender {
    /// Starts sending the frames `frame(i)` builds (`i` = 0, 1, ...).
    pub fn start(
        spec: SendSpec,
        mut frame: impl FnMut(u64) -> Vec<u8> + Send + 'static,
    ) -> FrameSender {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::Builder::new()
            .name("frame-sender".into())
            .spawn(move || -> std::io::Result<u64> {
                let ns = std::fs::File::open(&spec.netns)?;
                nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET)
                    .map_err(std::io::Error::from)?;
                if spec.nice != 0 {
                    // SAFETY: plain syscalls on this thread's own id.
                    let rc = unsafe {
                        libc::setpriority(
                            libc::PRIO_PROCESS,
                            libc::gettid() as libc::id_t,
                            spec.nice,
                        )
                    };
                    if rc != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                if let Some(cpu) = spec.cpu {
                    let mut set = nix::sched::CpuSet::new();
                    set.set(cpu).map_err(std::io::Error::from)?;
                    nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set)
                        .map_err(std::io::Error::from)?;
                }
                let sock = packet_socket(&spec.ifname)?;
                let mut sent = 0u64;
                while !flag.load(Ordering::Relaxed) && spec.count.is_none_or(|c| sent < c) {
                    let f = frame(sent);
                    // SAFETY: `f` outlives the call; the fd is open.
                    let n = unsafe { libc::send(sock.as_raw_fd(), f.as_ptr().cast(), f.len(), 0) };
                    if n < 0 {
                        let e = std::io::Error::last_os_error();
                        match e.raw_os_error() {
                            Some(libc::ENOBUFS) | Some(libc::EAGAIN) | Some(libc::EINTR) => {
                                std::thread::yield_now();
                                continue;
                            }
                            _ => return Err(e),
                        }
                    }
                    sent += 1;
                }
                Ok(sent)
            })
            .expect("spawn the frame sender");
        FrameSender {
            stop,
            handle: Some(handle),
        }
    }

    /// Waits until the sender has sent its count (or failed); frames sent.
    pub fn join(mut self) -> u64 {
        self.finish()
    }

    /// Stops the sender; frames sent.
    pub fn stop(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.finish()
    }

    fn finish(&mut self) -> u64 {
        let handle = self.handle.take().expect("joined once");
        handle
            .join()
            .expect("the frame sender panicked")
            .expect("the frame sender failed")
    }
}

impl Drop for FrameSender {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// An `AF_PACKET` raw socket bound to `ifname` (in the calling thread's namespace).
fn packet_socket(ifname: &str) -> std::io::Result<OwnedFd> {
    let name = std::ffi::CString::new(ifname)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    // SAFETY: a NUL-terminated name.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if index == 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: plain syscall; the result is checked before use.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor nobody else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: sockaddr_ll is plain data; all-zero is a valid value to start from.
    let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    addr.sll_family = libc::AF_PACKET as u16;
    addr.sll_ifindex = index as i32;
    // SAFETY: `addr` is a sockaddr_ll of the size passed.
    let rc = unsafe {
        libc::bind(
            sock.as_raw_fd(),
            (&addr as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(sock)
}

/// A 60-byte frame (the Ethernet minimum without FCS) from `src` to `dst`, ethertype 0x88b5
/// (IEEE local experimental: no stack on the way reacts to it).
pub fn frame(dst: [u8; 6], src: [u8; 6]) -> Vec<u8> {
    let mut f = Vec::with_capacity(60);
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&[0x88, 0xb5]);
    f.resize(60, 0);
    f
}

/// A locally administered unicast MAC `02:aa:` + the 32 bits of `n`: distinct for every `n`,
/// recognizable in flow dumps (`dl_dst=02:aa:...`).
pub fn numbered_mac(n: u32) -> [u8; 6] {
    let b = n.to_be_bytes();
    [0x02, 0xaa, b[0], b[1], b[2], b[3]]
}
