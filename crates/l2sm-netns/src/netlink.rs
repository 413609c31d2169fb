//! A synchronous rtnetlink handle bound to one namespace.
//!
//! rtnetlink is async, but link setup is short request/response work, and the socket must be
//! opened on a thread that is inside the namespace. So [`with_netlink`] spawns a helper thread,
//! joins the namespace, builds a current-thread tokio runtime there, and lets the closure drive
//! requests with `block_on`. Nothing of this touches the caller's runtime or thread.

use std::marker::PhantomData;
use std::net::IpAddr;
use std::os::fd::AsRawFd;

use futures::TryStreamExt;
use ipnet::IpNet;
use netlink_packet_route::address::{AddressAttribute, AddressFlags, AddressMessage};
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVeth, LinkAttribute, LinkInfo, LinkMessage,
};
use netlink_packet_route::route::RouteScope;
use nix::errno::Errno;
use rtnetlink::{LinkBridge, LinkMessageBuilder, LinkUnspec, LinkVeth, RouteMessageBuilder};

use crate::error::netlink_errno;
use crate::ns::run_in_netns_with;
use crate::{ethtool, Error, Netns, Result};

/// Longest interface name (`IFNAMSIZ - 1`).
const IFNAME_MAX: usize = 15;

/// Runs `f` with a [`Netlink`] handle whose socket lives in `ns`.
///
/// Everything happens on a dedicated thread (see [`crate::run_in_netns`]); several operations
/// can share one call, which saves a thread and a socket per operation.
pub fn with_netlink<T: Send + 'static>(
    ns: &Netns,
    f: impl FnOnce(&mut Netlink) -> Result<T> + Send + 'static,
) -> Result<T> {
    let label = ns.label().to_owned();
    run_in_netns_with(ns, move || {
        let mut nl = Netlink::on_current_thread(&label)?;
        f(&mut nl)
    })
}

/// Synchronous netlink operations inside one namespace.
///
/// Only exists on a helper thread that joined the namespace (it is deliberately `!Send`), so
/// ioctl sockets it opens for ethtool land in the same namespace as its netlink socket.
pub struct Netlink {
    rt: tokio::runtime::Runtime,
    handle: rtnetlink::Handle,
    ns: String,
    _thread_bound: PhantomData<*const ()>,
}

impl std::fmt::Debug for Netlink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Netlink").field("ns", &self.ns).finish()
    }
}

fn quoted(name: &str) -> String {
    format!("link {name:?}")
}

/// Rejects names the kernel cannot accept as interface names.
fn validate_ifname(name: &str) -> Result<()> {
    let reason = if name.is_empty() {
        "empty"
    } else if name.len() > IFNAME_MAX {
        "longer than 15 bytes"
    } else if name == "." || name == ".." {
        "reserved"
    } else if name.contains(|c: char| c == '/' || c == ':' || c == '\0' || c.is_whitespace()) {
        "contains '/', ':', NUL or whitespace"
    } else {
        return Ok(());
    };
    Err(Error::InvalidName {
        kind: "link",
        name: name.to_owned(),
        reason,
    })
}

impl Netlink {
    /// Opens a netlink connection in the calling thread's namespace. Crate-internal: callers
    /// must already be on a helper thread.
    pub(crate) fn on_current_thread(ns: &str) -> Result<Netlink> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .map_err(|e| Error::from_io(e, ns, "build netlink runtime"))?;
        let (conn, handle, _) = {
            let _enter = rt.enter();
            rtnetlink::new_connection().map_err(|e| Error::from_io(e, ns, "open netlink socket"))?
        };
        rt.spawn(conn);
        Ok(Netlink {
            rt,
            handle,
            ns: ns.to_owned(),
            _thread_bound: PhantomData,
        })
    }

    fn nl_err(&self, e: rtnetlink::Error, what: impl Into<String>) -> Error {
        Error::from_netlink(e, &self.ns, what)
    }

    fn get_link(&mut self, name: &str) -> Result<Option<LinkMessage>> {
        validate_ifname(name)?;
        let req = self.handle.link().get().match_name(name).execute();
        match self.rt.block_on(req.try_collect::<Vec<_>>()) {
            Ok(mut msgs) => Ok(msgs.pop()),
            Err(e) if matches!(netlink_errno(&e), Some(Errno::ENODEV)) => Ok(None),
            Err(e) => Err(self.nl_err(e, format!("get {}", quoted(name)))),
        }
    }

    fn require_link(&mut self, name: &str) -> Result<LinkMessage> {
        self.get_link(name)?.ok_or_else(|| Error::NotFound {
            ns: self.ns.clone(),
            what: quoted(name),
        })
    }

    fn require_index(&mut self, name: &str) -> Result<u32> {
        Ok(self.require_link(name)?.header.index)
    }

    /// Sends an RTM_SETLINK for `name`; the kernel's errno is reported against `what`.
    fn set_link(
        &mut self,
        name: &str,
        what: String,
        edit: impl FnOnce(LinkMessageBuilder<LinkUnspec>) -> LinkMessageBuilder<LinkUnspec>,
    ) -> Result<()> {
        let index = self.require_index(name)?;
        let msg = edit(LinkUnspec::new_with_index(index)).build();
        let req = self.handle.link().set(msg).execute();
        self.rt.block_on(req).map_err(|e| self.nl_err(e, what))
    }

    /// Interface index of `name`, `None` if there is no such link.
    pub fn link_index(&mut self, name: &str) -> Result<Option<u32>> {
        Ok(self.get_link(name)?.map(|m| m.header.index))
    }

    /// Whether a link called `name` exists in this namespace.
    pub fn link_exists(&mut self, name: &str) -> Result<bool> {
        Ok(self.get_link(name)?.is_some())
    }

    /// Names of all links in this namespace, sorted.
    pub fn link_names(&mut self) -> Result<Vec<String>> {
        let req = self.handle.link().get().execute();
        let msgs = self
            .rt
            .block_on(req.try_collect::<Vec<_>>())
            .map_err(|e| self.nl_err(e, "list links"))?;
        let mut names: Vec<String> = msgs
            .iter()
            .filter_map(|m| {
                m.attributes.iter().find_map(|a| match a {
                    LinkAttribute::IfName(n) => Some(n.clone()),
                    _ => None,
                })
            })
            .collect();
        names.sort();
        Ok(names)
    }

    /// Creates the veth pair `name` <-> `peer_name`, both down.
    ///
    /// With `peer_ns`, the peer is created directly in that namespace (`IFLA_NET_NS_FD` inside
    /// the peer's attributes), so it never appears here and a name clash there is reported
    /// instead of silently renaming or leaving half a pair. Name, peer namespace and MTU go in a
    /// single RTM_NEWLINK, which the kernel applies all-or-nothing: on any error neither end
    /// exists, so there is nothing to roll back.
    pub fn create_veth(
        &mut self,
        name: &str,
        peer_name: &str,
        peer_ns: Option<&Netns>,
        mtu: Option<u32>,
    ) -> Result<()> {
        validate_ifname(name)?;
        validate_ifname(peer_name)?;
        let mut peer = LinkUnspec::new_with_name(peer_name);
        if let Some(mtu) = mtu {
            peer = peer.mtu(mtu);
        }
        if let Some(ns) = peer_ns {
            // The kernel resolves the fd in this process's fd table while handling the
            // request; `ns` is borrowed for the whole call, so the fd stays open.
            peer = peer.setns_by_fd(ns.fd().as_raw_fd());
        }
        let mut link = LinkVeth::new(name, peer_name)
            .set_info_data(InfoData::Veth(InfoVeth::Peer(peer.build())));
        if let Some(mtu) = mtu {
            link = link.mtu(mtu);
        }
        let req = self.handle.link().add(link.build()).execute();
        match self.rt.block_on(req) {
            Ok(()) => Ok(()),
            Err(e) if netlink_errno(&e) == Some(Errno::EEXIST) => {
                // The kernel does not say which end clashed; ask.
                let (ns, clash) = if self.link_exists(name)? {
                    (self.ns.clone(), name)
                } else {
                    let ns = peer_ns.map_or_else(|| self.ns.clone(), |n| n.label().to_owned());
                    (ns, peer_name)
                };
                Err(Error::AlreadyExists {
                    ns,
                    what: quoted(clash),
                })
            }
            Err(e) => Err(self.nl_err(e, format!("create veth {name:?} <-> {peer_name:?}"))),
        }
    }

    /// Deletes the link; `Ok(false)` if it did not exist. Deleting either end of a veth pair
    /// removes both, wherever the peer is.
    pub fn delete_link(&mut self, name: &str) -> Result<bool> {
        let Some(index) = self.link_index(name)? else {
            return Ok(false);
        };
        let req = self.handle.link().del(index).execute();
        match self.rt.block_on(req) {
            Ok(()) => Ok(true),
            Err(e) if netlink_errno(&e) == Some(Errno::ENODEV) => Ok(false),
            Err(e) => Err(self.nl_err(e, format!("delete {}", quoted(name)))),
        }
    }

    /// Sets the link administratively up.
    pub fn set_up(&mut self, name: &str) -> Result<()> {
        self.set_link(name, quoted(name), |b| b.up())
    }

    /// Sets the link administratively down.
    pub fn set_down(&mut self, name: &str) -> Result<()> {
        self.set_link(name, quoted(name), |b| b.down())
    }

    /// Sets the MTU.
    pub fn set_mtu(&mut self, name: &str, mtu: u32) -> Result<()> {
        self.set_link(name, format!("set mtu {mtu} on {}", quoted(name)), |b| {
            b.mtu(mtu)
        })
    }

    /// Current MTU of the link.
    pub fn mtu(&mut self, name: &str) -> Result<u32> {
        let msg = self.require_link(name)?;
        msg.attributes
            .iter()
            .find_map(|a| match a {
                LinkAttribute::Mtu(m) => Some(*m),
                _ => None,
            })
            .ok_or_else(|| Error::Unexpected {
                ns: self.ns.clone(),
                what: format!("{} without IFLA_MTU", quoted(name)),
            })
    }

    /// Sets the Ethernet address.
    pub fn set_mac(&mut self, name: &str, mac: [u8; 6]) -> Result<()> {
        self.set_link(name, format!("set address on {}", quoted(name)), |b| {
            b.address(mac.to_vec())
        })
    }

    /// Current Ethernet address of the link.
    pub fn mac(&mut self, name: &str) -> Result<[u8; 6]> {
        let msg = self.require_link(name)?;
        msg.attributes
            .iter()
            .find_map(|a| match a {
                LinkAttribute::Address(v) => <[u8; 6]>::try_from(v.as_slice()).ok(),
                _ => None,
            })
            .ok_or_else(|| Error::Unexpected {
                ns: self.ns.clone(),
                what: format!("{} without a 6-byte hardware address", quoted(name)),
            })
    }

    /// Renames a link. Older kernels refuse (`EBUSY`) to rename a link that is up (6.18 allows
    /// it), so set it down first if the code must run on those.
    pub fn rename(&mut self, name: &str, new_name: &str) -> Result<()> {
        validate_ifname(new_name)?;
        let index = self.require_index(name)?;
        let msg = LinkUnspec::new_with_index(index).name(new_name).build();
        let req = self.handle.link().set(msg).execute();
        match self.rt.block_on(req) {
            Ok(()) => Ok(()),
            Err(e) if netlink_errno(&e) == Some(Errno::EEXIST) => Err(Error::AlreadyExists {
                ns: self.ns.clone(),
                what: quoted(new_name),
            }),
            Err(e) => Err(self.nl_err(e, format!("rename {} to {new_name:?}", quoted(name)))),
        }
    }

    /// Moves a link into `ns`. The kernel sets it down on the way; addresses are lost.
    pub fn move_to_netns(&mut self, name: &str, ns: &Netns) -> Result<()> {
        let index = self.require_index(name)?;
        let msg = LinkUnspec::new_with_index(index)
            .setns_by_fd(ns.fd().as_raw_fd())
            .build();
        let req = self.handle.link().set(msg).execute();
        match self.rt.block_on(req) {
            Ok(()) => Ok(()),
            Err(e) if netlink_errno(&e) == Some(Errno::EEXIST) => Err(Error::AlreadyExists {
                ns: ns.label().to_owned(),
                what: quoted(name),
            }),
            Err(e) => Err(self.nl_err(
                e,
                format!("move {} to netns {:?}", quoted(name), ns.label()),
            )),
        }
    }

    /// Adds an IPv4 or IPv6 address (with its prefix route, as `ip addr add` does).
    ///
    /// IPv6 addresses are added with `IFA_F_NODAD`: the emulated links are private veths with
    /// addresses we assign, and duplicate address detection would only keep the address
    /// tentative (unusable) for a second or two after the link comes up.
    pub fn add_address(&mut self, name: &str, addr: IpNet) -> Result<()> {
        let index = self.require_index(name)?;
        let mut req = self
            .handle
            .address()
            .add(index, addr.addr(), addr.prefix_len());
        if addr.addr().is_ipv6() {
            req.message_mut()
                .attributes
                .push(AddressAttribute::Flags(AddressFlags::Nodad));
        }
        self.rt
            .block_on(req.execute())
            .map_err(|e| self.nl_err(e, format!("address {addr} on {}", quoted(name))))
    }

    /// Addresses on the link, in kernel order (includes IPv6 link-local ones).
    pub fn addresses(&mut self, name: &str) -> Result<Vec<IpNet>> {
        let index = self.require_index(name)?;
        let req = self
            .handle
            .address()
            .get()
            .set_link_index_filter(index)
            .execute();
        let msgs: Vec<AddressMessage> = self
            .rt
            .block_on(req.try_collect())
            .map_err(|e| self.nl_err(e, format!("list addresses of {}", quoted(name))))?;
        let mut out = Vec::with_capacity(msgs.len());
        for m in msgs {
            // IFA_LOCAL is the interface's own address; IFA_ADDRESS is the peer on
            // point-to-point links and equal to IFA_LOCAL otherwise.
            let find = |want_local: bool| {
                m.attributes.iter().find_map(|a| match (a, want_local) {
                    (AddressAttribute::Local(ip), true)
                    | (AddressAttribute::Address(ip), false) => Some(*ip),
                    _ => None,
                })
            };
            let Some(ip) = find(true).or_else(|| find(false)) else {
                continue;
            };
            let net = IpNet::new(ip, m.header.prefix_len).map_err(|_| Error::Unexpected {
                ns: self.ns.clone(),
                what: format!("prefix length {} for {ip}", m.header.prefix_len),
            })?;
            out.push(net);
        }
        Ok(out)
    }

    /// Adds a route in the main table. Without a gateway the route is on-link
    /// (scope link, like `ip route add DST dev DEV`), which needs `dev`.
    pub fn add_route(
        &mut self,
        dst: IpNet,
        gateway: Option<IpAddr>,
        dev: Option<&str>,
    ) -> Result<()> {
        let what = format!("route {dst}");
        if gateway.is_none() && dev.is_none() {
            return Err(Error::InvalidArgument {
                ns: self.ns.clone(),
                what: format!("{what} needs a gateway or a device"),
            });
        }
        let ns = self.ns.clone();
        let invalid = |e: &dyn std::fmt::Display| Error::InvalidArgument {
            ns: ns.clone(),
            what: format!("{what}: {e}"),
        };
        let mut b = RouteMessageBuilder::<IpAddr>::new()
            .destination_prefix(dst.addr(), dst.prefix_len())
            .map_err(|e| invalid(&e))?;
        match gateway {
            Some(gw) => b = b.gateway(gw).map_err(|e| invalid(&e))?,
            None => b = b.scope(RouteScope::Link),
        }
        if let Some(dev) = dev {
            b = b.output_interface(self.require_index(dev)?);
        }
        let req = self.handle.route().add(b.build()).execute();
        self.rt.block_on(req).map_err(|e| self.nl_err(e, what))
    }

    /// Creates a Linux bridge, down (like `ip link add NAME type bridge`).
    pub fn create_bridge(&mut self, name: &str) -> Result<()> {
        validate_ifname(name)?;
        let msg = LinkMessageBuilder::<LinkBridge>::new(name).build();
        let req = self.handle.link().add(msg).execute();
        self.rt
            .block_on(req)
            .map_err(|e| self.nl_err(e, quoted(name)))
    }

    /// Enslaves `name` to the bridge (or other master) `master`.
    pub fn set_master(&mut self, name: &str, master: &str) -> Result<()> {
        let master_index = self.require_index(master)?;
        self.set_link(
            name,
            format!("set master {master:?} on {}", quoted(name)),
            |b| b.controller(master_index),
        )
    }

    /// Whether `name` is a Linux bridge (`None`: there is no such link).
    pub fn is_bridge(&mut self, name: &str) -> Result<Option<bool>> {
        let Some(link) = self.get_link(name)? else {
            return Ok(None);
        };
        Ok(Some(link.attributes.iter().any(|a| {
            match a {
                LinkAttribute::LinkInfo(infos) => infos
                    .iter()
                    .any(|i| matches!(i, LinkInfo::Kind(InfoKind::Bridge))),
                _ => false,
            }
        })))
    }

    /// The name of the link `name` is enslaved to (its bridge), `None` if it has none.
    pub fn master_of(&mut self, name: &str) -> Result<Option<String>> {
        let link = self.require_link(name)?;
        let Some(index) = link.attributes.iter().find_map(|a| match a {
            LinkAttribute::Controller(i) => Some(*i),
            _ => None,
        }) else {
            return Ok(None);
        };
        let req = self.handle.link().get().match_index(index).execute();
        let msgs = self
            .rt
            .block_on(req.try_collect::<Vec<_>>())
            .map_err(|e| self.nl_err(e, format!("get the master of {}", quoted(name))))?;
        Ok(msgs.iter().find_map(|m| {
            m.attributes.iter().find_map(|a| match a {
                LinkAttribute::IfName(n) => Some(n.clone()),
                _ => None,
            })
        }))
    }

    /// Turns TX checksum offload on or off (`ethtool -K NAME tx on|off`).
    ///
    /// OVS userspace (netdev) tunnels drop or corrupt packets whose checksum was left to
    /// "hardware", so pods behind native OVS tunnels need this off on both veth ends. Turning it
    /// off also makes the kernel drop features that depend on it (scatter-gather, TSO).
    pub fn set_tx_checksum(&mut self, name: &str, on: bool) -> Result<()> {
        validate_ifname(name)?;
        ethtool::set_tx_checksum(name, on).map_err(|e| {
            Error::from_errno(
                e,
                &self.ns,
                format!(
                    "set tx checksum {} on {}",
                    if on { "on" } else { "off" },
                    quoted(name)
                ),
            )
        })
    }

    /// Whether TX checksum offload is on (`ethtool -k NAME`, "tx-checksumming").
    pub fn tx_checksum(&mut self, name: &str) -> Result<bool> {
        validate_ifname(name)?;
        ethtool::tx_checksum(name).map_err(|e| {
            Error::from_errno(e, &self.ns, format!("get tx checksum of {}", quoted(name)))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ifnames_are_checked() {
        for bad in ["", ".", "..", "a/b", "a b", "a:b", "sixteen-chars-xx"] {
            assert!(validate_ifname(bad).is_err(), "{bad:?} accepted");
        }
        validate_ifname("fifteen-chars-x").unwrap();
    }
}
