//! Links across two private namespaces: veth, MTU, MAC, addresses, ping, offloads, clashes,
//! delete, rename, move, bridge, routes. Needs root; fails (never skips) without it.
//! Addresses are 10.x / fd00::/8 and exist only inside the test namespaces.

mod common;

use std::net::IpAddr;

use common::{ip_n, netns_exec, ping, unique_prefix, TestNs};
use ipnet::IpNet;
use l2sm_netns::{with_netlink, Error};

const MAC_A: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0a];
const MAC_B: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0b];

fn net(s: &str) -> IpNet {
    s.parse().expect("test prefix")
}

/// Configures one veth end: MAC, v4 + v6 address, TX checksum off, up.
fn configure(t: &TestNs, ifname: &'static str, mac: [u8; 6], v4: &str, v6: &str) {
    let (v4, v6) = (net(v4), net(v6));
    with_netlink(&t.ns, move |nl| {
        nl.set_mac(ifname, mac)?;
        nl.add_address(ifname, v4)?;
        nl.add_address(ifname, v6)?;
        nl.set_tx_checksum(ifname, false)?;
        nl.set_up(ifname)
    })
    .unwrap_or_else(|e| panic!("configure {ifname}: {e}"));
}

#[test]
fn veth_pair_across_namespaces_carries_traffic() {
    let prefix = unique_prefix();
    let a = TestNs::new(&prefix, "a");
    let b = TestNs::new(&prefix, "b");

    let peer = b.ns.clone();
    with_netlink(&a.ns, move |nl| {
        nl.create_veth("va", "vb", Some(&peer), Some(1400))
    })
    .unwrap();
    configure(&a, "va", MAC_A, "10.254.0.1/24", "fd00:254::1/64");
    configure(&b, "vb", MAC_B, "10.254.0.2/24", "fd00:254::2/64");

    // The peer was created directly in b and never appeared in a.
    let (a_links, a_mtu, a_mac, a_addrs, a_csum) = with_netlink(&a.ns, |nl| {
        Ok((
            nl.link_names()?,
            nl.mtu("va")?,
            nl.mac("va")?,
            nl.addresses("va")?,
            nl.tx_checksum("va")?,
        ))
    })
    .unwrap();
    assert_eq!(a_links, vec!["lo", "va"]);
    assert_eq!(a_mtu, 1400);
    assert_eq!(a_mac, MAC_A);
    assert!(a_addrs.contains(&net("10.254.0.1/24")), "{a_addrs:?}");
    assert!(a_addrs.contains(&net("fd00:254::1/64")), "{a_addrs:?}");
    assert!(!a_csum, "tx checksum still on");

    let (b_links, b_mtu, b_index) = with_netlink(&b.ns, |nl| {
        Ok((nl.link_names()?, nl.mtu("vb")?, nl.link_index("vb")?))
    })
    .unwrap();
    assert_eq!(b_links, vec!["lo", "vb"]);
    assert_eq!(b_mtu, 1400);
    assert!(b_index.is_some());

    // Observe with iproute2.
    let show = ip_n(&b.name, &["-o", "link", "show", "vb"]);
    assert!(show.contains("mtu 1400"), "{show}");
    assert!(show.contains("02:00:00:00:00:0b"), "{show}");
    assert!(show.contains("UP"), "{show}");
    let addrs = ip_n(&a.name, &["-o", "addr", "show", "dev", "va"]);
    assert!(addrs.contains("10.254.0.1/24"), "{addrs}");
    assert!(addrs.contains("fd00:254::1/64"), "{addrs}");
    // Our IPv6 address is usable at once (NODAD); only the kernel's link-local one does DAD.
    let ours = addrs
        .lines()
        .find(|l| l.contains("fd00:254::1/64"))
        .expect("v6 line");
    assert!(
        ours.contains("nodad") && !ours.contains("tentative"),
        "{ours}"
    );

    ping(&a.name, "10.254.0.2");
    ping(&b.name, "10.254.0.1");
    ping(&a.name, "fd00:254::2");

    // ethtool agrees that TX checksumming is off.
    let k = netns_exec(&a.name, &["ethtool", "-k", "va"]);
    assert!(k.status.success(), "ethtool -k failed: {k:?}");
    let k = String::from_utf8_lossy(&k.stdout);
    assert!(k.contains("tx-checksumming: off"), "{k}");

    // And back on.
    let on = with_netlink(&a.ns, |nl| {
        nl.set_tx_checksum("va", true)?;
        nl.tx_checksum("va")
    })
    .unwrap();
    assert!(on);

    // Duplicate address is AlreadyExists.
    let dup = with_netlink(&a.ns, |nl| nl.add_address("va", net("10.254.0.1/24")));
    assert!(dup.as_ref().is_err_and(Error::is_already_exists), "{dup:?}");
}

#[test]
fn name_clash_is_already_exists_and_leaves_nothing() {
    let prefix = unique_prefix();
    let a = TestNs::new(&prefix, "a");
    let b = TestNs::new(&prefix, "b");
    with_netlink(&b.ns, |nl| nl.create_bridge("vb")).unwrap();
    with_netlink(&a.ns, |nl| nl.create_bridge("busy")).unwrap();

    // Peer name taken in the peer namespace.
    let (b_name, peer) = (b.name.clone(), b.ns.clone());
    let err = with_netlink(&a.ns, move |nl| {
        nl.create_veth("va", "vb", Some(&peer), Some(1450))
    })
    .unwrap_err();
    match &err {
        Error::AlreadyExists { ns, what } => {
            assert_eq!(ns, &b_name);
            assert_eq!(what, "link \"vb\"");
        }
        other => panic!("expected AlreadyExists, got {other:?}"),
    }
    assert_eq!(
        err.to_string(),
        format!("netns \"{b_name}\": link \"vb\" already exists")
    );

    // Local name taken.
    let peer = b.ns.clone();
    let err = with_netlink(&a.ns, move |nl| {
        nl.create_veth("busy", "vx", Some(&peer), None)
    })
    .unwrap_err();
    match &err {
        Error::AlreadyExists { ns, what } => {
            assert_eq!(ns, &a.name);
            assert_eq!(what, "link \"busy\"");
        }
        other => panic!("expected AlreadyExists, got {other:?}"),
    }

    // Peer name taken in the same namespace.
    let err = with_netlink(&a.ns, |nl| nl.create_veth("vy", "busy", None, None)).unwrap_err();
    assert!(err.is_already_exists(), "{err:?}");

    // Nothing left on either side.
    let a_links = with_netlink(&a.ns, |nl| nl.link_names()).unwrap();
    let b_links = with_netlink(&b.ns, |nl| nl.link_names()).unwrap();
    assert_eq!(a_links, vec!["busy", "lo"]);
    assert_eq!(b_links, vec!["lo", "vb"]);
    let a_ip = ip_n(&a.name, &["-o", "link"]);
    assert!(!a_ip.contains("va") && !a_ip.contains("vy"), "{a_ip}");
    assert!(!ip_n(&b.name, &["-o", "link"]).contains("vx"));
}

#[test]
fn delete_link_twice_and_peer_goes_too() {
    let prefix = unique_prefix();
    let a = TestNs::new(&prefix, "a");
    let b = TestNs::new(&prefix, "b");
    let peer = b.ns.clone();
    let (first, second, exists_after) = with_netlink(&a.ns, move |nl| {
        nl.create_veth("d0", "d1", Some(&peer), None)?;
        Ok((
            nl.delete_link("d0")?,
            nl.delete_link("d0")?,
            nl.link_exists("d0")?,
        ))
    })
    .unwrap();
    assert!(first, "first delete_link should report true");
    assert!(!second, "second delete_link should report false");
    assert!(!exists_after);
    let peer_left = with_netlink(&b.ns, |nl| nl.link_exists("d1")).unwrap();
    assert!(!peer_left, "peer survived deleting its veth");

    // Operations on a missing link are NotFound.
    let err = with_netlink(&a.ns, |nl| nl.set_up("nosuch0")).unwrap_err();
    assert!(err.is_not_found(), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!("netns \"{}\": link \"nosuch0\" not found", a.name)
    );
    let err = with_netlink(&a.ns, |nl| nl.link_exists("name-too-long-x1")).unwrap_err();
    assert!(matches!(err, Error::InvalidName { .. }), "{err:?}");
}

#[test]
fn rename_move_bridge_and_mtu() {
    let prefix = unique_prefix();
    let a = TestNs::new(&prefix, "a");
    let b = TestNs::new(&prefix, "b");
    let target = b.ns.clone();
    let busy = with_netlink(&a.ns, move |nl| {
        nl.create_veth("m0", "m1", None, None)?;
        // Renaming an up link: older kernels say EBUSY, 6.18 allows it. Record, don't assume.
        nl.set_up("m1")?;
        let busy = nl.rename("m1", "mup").map(|()| "allowed");
        if busy.is_ok() {
            nl.rename("mup", "m1")?;
        }
        nl.set_down("m1")?;
        nl.rename("m1", "m2")?;
        assert!(nl.rename("m2", "m0").is_err_and(|e| e.is_already_exists()));
        nl.move_to_netns("m2", &target)?;
        assert!(!nl.link_exists("m2")?);
        nl.create_bridge("br0")?;
        nl.set_master("m0", "br0")?;
        nl.set_mtu("m0", 1280)?;
        assert_eq!(nl.mtu("m0")?, 1280);
        nl.set_up("br0")?;
        nl.set_up("m0")?;
        nl.set_down("m0")?;
        Ok(busy)
    })
    .unwrap();
    eprintln!("rename of an up veth: {busy:?}");
    let m0 = ip_n(&a.name, &["-o", "link", "show", "m0"]);
    assert!(m0.contains("master br0"), "{m0}");
    assert!(m0.contains("mtu 1280"), "{m0}");
    assert!(!m0.contains(",UP"), "m0 still up: {m0}");
    let m2 = ip_n(&b.name, &["-o", "link", "show", "m2"]);
    assert!(m2.contains("m2@"), "{m2}");

    // Moving onto a taken name is AlreadyExists against the target namespace.
    with_netlink(&b.ns, |nl| nl.create_bridge("m3")).unwrap();
    let (target, b_name) = (b.ns.clone(), b.name.clone());
    let err = with_netlink(&a.ns, move |nl| {
        nl.create_veth("m3", "m4", None, None)?;
        nl.move_to_netns("m3", &target)
    })
    .unwrap_err();
    match err {
        Error::AlreadyExists { ns, .. } => assert_eq!(ns, b_name),
        other => panic!("expected AlreadyExists, got {other:?}"),
    }
}

#[test]
fn routes_v4_and_v6() {
    let prefix = unique_prefix();
    let a = TestNs::new(&prefix, "a");
    let b = TestNs::new(&prefix, "b");
    let peer = b.ns.clone();
    with_netlink(&a.ns, move |nl| {
        nl.create_veth("r0", "r1", Some(&peer), None)?;
        nl.set_up("r0")
    })
    .unwrap();
    with_netlink(&b.ns, |nl| {
        nl.add_address("r1", net("10.9.0.2/24"))?;
        nl.add_address("r1", net("fd00:9::2/64"))?;
        nl.set_up("r1")?;
        let gw4: IpAddr = "10.9.0.1".parse().expect("ip");
        let gw6: IpAddr = "fd00:9::1".parse().expect("ip");
        nl.add_route(net("10.10.0.0/16"), Some(gw4), None)?;
        nl.add_route(net("10.11.0.0/16"), None, Some("r1"))?;
        nl.add_route(net("fd00:10::/64"), Some(gw6), Some("r1"))?;
        let dup = nl.add_route(net("10.11.0.0/16"), None, Some("r1"));
        assert!(dup.is_err_and(|e| e.is_already_exists()));
        let none = nl.add_route(net("10.12.0.0/16"), None, None);
        assert!(
            matches!(none, Err(Error::InvalidArgument { .. })),
            "{none:?}"
        );
        let missing = nl.add_route(net("10.13.0.0/16"), None, Some("nosuch0"));
        assert!(missing.is_err_and(|e| e.is_not_found()));
        Ok(())
    })
    .unwrap();
    let v4 = ip_n(&b.name, &["route", "show"]);
    assert!(v4.contains("10.10.0.0/16 via 10.9.0.1 dev r1"), "{v4}");
    assert!(
        v4.contains("10.11.0.0/16 dev r1 proto static scope link"),
        "{v4}"
    );
    let v6 = ip_n(&b.name, &["-6", "route", "show"]);
    assert!(v6.contains("fd00:10::/64 via fd00:9::1 dev r1"), "{v6}");
}
