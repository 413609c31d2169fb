//! Looking at interfaces: in this process's namespace (the node side) and, from a short-lived
//! thread that joins it, in a container's namespace. Plain `getifaddrs(3)`: no netlink library,
//! no async runtime.

use ipnet::IpNet;
use nix::ifaddrs::getifaddrs;
use nix::net::if_::InterfaceFlags;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;

/// What `getifaddrs` tells about one interface.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct LinkInfo {
    pub mac: Option<String>,
    pub up: bool,
    pub addresses: Vec<IpNet>,
}

fn prefix_len(mask: IpAddr) -> u8 {
    match mask {
        IpAddr::V4(m) => u32::from(m).count_ones() as u8,
        IpAddr::V6(m) => u128::from(m).count_ones() as u8,
    }
}

/// Interfaces of the calling thread's network namespace, by name.
pub(crate) fn links_here() -> Result<BTreeMap<String, LinkInfo>, String> {
    let mut out: BTreeMap<String, LinkInfo> = BTreeMap::new();
    for ifa in getifaddrs().map_err(|e| format!("getifaddrs: {e}"))? {
        let entry = out.entry(ifa.interface_name.clone()).or_default();
        entry.up |= ifa.flags.contains(InterfaceFlags::IFF_UP);
        let Some(addr) = ifa.address else { continue };
        if let Some(link) = addr.as_link_addr() {
            if let Some(mac) = link.addr() {
                entry.mac = Some(
                    mac.iter()
                        .map(|b| format!("{b:02x}"))
                        .collect::<Vec<_>>()
                        .join(":"),
                );
            }
            continue;
        }
        let mask = ifa.netmask.as_ref();
        let (ip, mask): (IpAddr, Option<IpAddr>) = if let Some(a) = addr.as_sockaddr_in() {
            (
                a.ip().into(),
                mask.and_then(|m| m.as_sockaddr_in()).map(|m| m.ip().into()),
            )
        } else if let Some(a) = addr.as_sockaddr_in6() {
            (
                a.ip().into(),
                mask.and_then(|m| m.as_sockaddr_in6())
                    .map(|m| m.ip().into()),
            )
        } else {
            continue;
        };
        let len = mask
            .map(prefix_len)
            .unwrap_or(if ip.is_ipv4() { 32 } else { 128 });
        if let Ok(net) = IpNet::new(ip, len) {
            entry.addresses.push(net);
        }
    }
    Ok(out)
}

/// Opens a namespace file and checks it really is a network namespace (a `/run/netns` entry
/// whose bind mount is gone is a plain empty file).
pub(crate) fn open_netns(path: &Path) -> Result<std::fs::File, String> {
    let f =
        std::fs::File::open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    let fs = nix::sys::statfs::fstatfs(&f)
        .map_err(|e| format!("cannot stat {}: {e}", path.display()))?;
    if fs.filesystem_type() != nix::sys::statfs::NSFS_MAGIC {
        return Err(format!("{} is not a network namespace", path.display()));
    }
    Ok(f)
}

/// Interfaces inside the namespace at `path`.
pub(crate) fn links_in(path: &Path) -> Result<BTreeMap<String, LinkInfo>, String> {
    let ns = open_netns(path)?;
    let label = path.display().to_string();
    std::thread::spawn(move || {
        // Only this thread changes namespace; it ends right after.
        nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET)
            .map_err(|e| format!("cannot enter {label}: {e}"))?;
        links_here()
    })
    .join()
    .map_err(|_| "the thread reading the container's interfaces failed".to_string())?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_seen() {
        let links = links_here().unwrap();
        let lo = links.get("lo").expect("lo");
        assert!(
            lo.addresses.iter().any(|a| a.to_string() == "127.0.0.1/8"),
            "{lo:?}"
        );
    }

    #[test]
    fn a_plain_file_is_not_a_namespace() {
        let e = open_netns(Path::new("/proc/self/status")).unwrap_err();
        assert!(e.contains("not a network namespace"), "{e}");
        assert!(open_netns(Path::new("/nonexistent/ns"))
            .unwrap_err()
            .contains("cannot open"));
    }
}
