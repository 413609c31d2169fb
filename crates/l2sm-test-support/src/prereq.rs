//! Prerequisites that fail loudly: a test that needs root or Open vSwitch must not pass
//! silently on a machine without them.

/// Panics unless the test runs as root.
pub fn require_root(what: &str) {
    assert!(
        nix::unistd::geteuid().is_root(),
        "{what} need root (run scripts/test.sh as root); refusing to skip"
    );
}

/// Panics unless every tool is installed in a system directory.
pub fn require_tools(tools: &[&str]) {
    for tool in tools {
        let found = ["/usr/sbin", "/usr/bin", "/sbin", "/bin"]
            .iter()
            .any(|d| std::path::Path::new(d).join(tool).exists());
        assert!(
            found,
            "{tool} is not installed (scripts/test.sh installs it); refusing to skip"
        );
    }
}

/// Root plus what a lab needs: Open vSwitch, ping, tcpdump, iproute2.
pub fn require_lab() {
    require_root("lab end-to-end tests");
    require_tools(&[
        "ovsdb-server",
        "ovs-vswitchd",
        "ovsdb-tool",
        "ping",
        "tcpdump",
        "ip",
    ]);
}
