//! The one `SIOCETHTOOL` ioctl this crate needs (TX checksum offload on/off).
//!
//! Kept apart because it is the crate's only `unsafe`: the ioctl takes a C `struct ifreq` whose
//! `ifr_data` points at a `struct ethtool_value`. Neither `libc` (on glibc targets) nor `nix`
//! define these, so they are declared here from `linux/sockios.h`, `linux/if.h` and
//! `linux/ethtool.h`. The ethtool netlink family would avoid `unsafe`, but needs a genetlink
//! client this workspace does not otherwise use.
//!
//! The ioctl resolves the interface name in the namespace of the *socket*, so the socket is
//! opened here, on the caller's thread, which must already be inside the target namespace.
#![allow(unsafe_code)]

use std::os::fd::AsRawFd;

use nix::errno::Errno;
use nix::sys::socket::{socket, AddressFamily, SockFlag, SockType};

/// `linux/sockios.h`.
const SIOCETHTOOL: libc::Ioctl = 0x8946;
/// `linux/ethtool.h`: get / set TX checksum offload (legacy commands, still supported; the
/// kernel maps them onto all `NETIF_F_CSUM_MASK` features, like `ethtool -K IF tx on|off`).
const ETHTOOL_GTXCSUM: u32 = 0x16;
const ETHTOOL_STXCSUM: u32 = 0x17;

/// `struct ethtool_value`.
#[repr(C)]
struct EthtoolValue {
    cmd: u32,
    data: u32,
}

/// `struct ifreq` with the `ifr_data` member of its union. The union is 24 bytes on 64-bit
/// targets (`struct ifmap`); the padding keeps ours at least that large, as the kernel copies
/// `sizeof(struct ifreq)` bytes from us.
#[repr(C)]
struct IfReq {
    name: [libc::c_char; libc::IFNAMSIZ],
    data: *mut EthtoolValue,
    _pad: [u8; 16],
}

const _: () = assert!(std::mem::size_of::<IfReq>() >= 40);

fn ethtool_value(ifname: &str, cmd: u32, data: u32) -> Result<u32, Errno> {
    let bytes = ifname.as_bytes();
    // Leave room for the NUL terminator. Callers validate names; this keeps the copy in bounds.
    if bytes.is_empty() || bytes.len() >= libc::IFNAMSIZ || bytes.contains(&0) {
        return Err(Errno::EINVAL);
    }
    let sock = socket(
        AddressFamily::Inet,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    let mut value = EthtoolValue { cmd, data };
    let mut req = IfReq {
        name: [0; libc::IFNAMSIZ],
        data: &mut value,
        _pad: [0; 16],
    };
    for (dst, src) in req.name.iter_mut().zip(bytes) {
        *dst = *src as libc::c_char;
    }
    // SAFETY: `sock` is an open socket fd owned by this function. `req` is a live, properly
    // initialised `struct ifreq` (NUL-terminated name, at least sizeof(struct ifreq) bytes) whose
    // `ifr_data` points at `value`, a live `struct ethtool_value`; both outlive the call and are
    // not otherwise borrowed, so the kernel may read and write them. The kernel keeps no pointer.
    let rc = unsafe { libc::ioctl(sock.as_raw_fd(), SIOCETHTOOL, &mut req as *mut IfReq) };
    Errno::result(rc)?;
    Ok(value.data)
}

/// `ethtool -K IFNAME tx on|off` in the calling thread's namespace.
pub(crate) fn set_tx_checksum(ifname: &str, on: bool) -> Result<(), Errno> {
    ethtool_value(ifname, ETHTOOL_STXCSUM, u32::from(on)).map(drop)
}

/// Whether TX checksum offload is on, in the calling thread's namespace.
pub(crate) fn tx_checksum(ifname: &str) -> Result<bool, Errno> {
    ethtool_value(ifname, ETHTOOL_GTXCSUM, 0).map(|d| d != 0)
}
