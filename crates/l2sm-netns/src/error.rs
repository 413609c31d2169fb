//! The crate's error type.
//!
//! Every message names the namespace (`netns "NAME"`, or the path when the namespace was opened
//! from somewhere other than [`crate::NETNS_DIR`]) and the object involved, so a log line is
//! enough to find what failed. The cause is kept as `#[source]` and not repeated in the message.

use std::path::PathBuf;

use nix::errno::Errno;

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Errors from namespace and netlink operations.
///
/// `EEXIST` becomes [`Error::AlreadyExists`] and `ENODEV`/`ENOENT` become [`Error::NotFound`], so
/// callers can branch on "someone else did it already" / "it is gone" without errno numbers.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The object (link, address, route, namespace file) exists already.
    #[error("netns {ns:?}: {what} already exists")]
    AlreadyExists {
        /// Namespace name, or a path (a namespace file outside `/run/netns`, or
        /// `/run/netns` itself).
        ns: String,
        /// The object or operation involved (e.g. `link "veth0"`, `setns(CLONE_NEWNET)`).
        what: String,
    },

    /// The object does not exist (the kernel said `ENODEV` or `ENOENT`).
    #[error("netns {ns:?}: {what} not found")]
    NotFound {
        /// Namespace name, or a path (a namespace file outside `/run/netns`, or
        /// `/run/netns` itself).
        ns: String,
        /// The object or operation involved (e.g. `link "veth0"`, `setns(CLONE_NEWNET)`).
        what: String,
    },

    /// A namespace name, link name or sysctl key that cannot be valid.
    #[error("invalid {kind} name {name:?}: {reason}")]
    InvalidName {
        /// What the name is for: `netns`, `link` or `sysctl`.
        kind: &'static str,
        /// The rejected name.
        name: String,
        /// Which rule it breaks.
        reason: &'static str,
    },

    /// An argument combination the kernel would reject (checked before asking it).
    #[error("netns {ns:?}: invalid argument: {what}")]
    InvalidArgument {
        /// Namespace name, or a path (a namespace file outside `/run/netns`, or
        /// `/run/netns` itself).
        ns: String,
        /// What is wrong with the arguments.
        what: String,
    },

    /// The file is not an `nsfs` file (for example a leftover `/run/netns/NAME` with no mount).
    #[error("{path:?}: not a namespace file (no nsfs mount)")]
    NotANetns {
        /// Path of the file.
        path: PathBuf,
    },

    /// The kernel answered something this crate cannot interpret.
    #[error("netns {ns:?}: unexpected {what}")]
    Unexpected {
        /// Namespace name, or a path (a namespace file outside `/run/netns`, or
        /// `/run/netns` itself).
        ns: String,
        /// What the kernel answered.
        what: String,
    },

    /// A failed system call.
    #[error("netns {ns:?}: {what}")]
    Os {
        /// Namespace name, or a path (a namespace file outside `/run/netns`, or
        /// `/run/netns` itself).
        ns: String,
        /// The object or operation involved (e.g. `link "veth0"`, `setns(CLONE_NEWNET)`).
        what: String,
        /// The errno of the system call.
        #[source]
        source: Errno,
    },

    /// A failed filesystem or thread operation.
    #[error("netns {ns:?}: {what}")]
    Io {
        /// Namespace name, or a path (a namespace file outside `/run/netns`, or
        /// `/run/netns` itself).
        ns: String,
        /// The object or operation involved (e.g. `link "veth0"`, `setns(CLONE_NEWNET)`).
        what: String,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },

    /// A failed netlink request.
    #[error("netns {ns:?}: {what}")]
    Netlink {
        /// Namespace name, or a path (a namespace file outside `/run/netns`, or
        /// `/run/netns` itself).
        ns: String,
        /// The object or operation involved (e.g. `link "veth0"`, `setns(CLONE_NEWNET)`).
        what: String,
        /// The netlink error.
        #[source]
        source: rtnetlink::Error,
    },

    /// The closure given to [`crate::run_in_netns`] or [`crate::with_netlink`] panicked.
    #[error("netns {ns:?}: helper thread panicked: {message}")]
    Panicked {
        /// Namespace name, or a path (a namespace file outside `/run/netns`, or
        /// `/run/netns` itself).
        ns: String,
        /// The panic message.
        message: String,
    },
}

impl Error {
    /// True for [`Error::AlreadyExists`].
    pub fn is_already_exists(&self) -> bool {
        matches!(self, Error::AlreadyExists { .. })
    }

    /// True for [`Error::NotFound`].
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::NotFound { .. })
    }

    /// Classifies an errno: `EEXIST` and `ENODEV`/`ENOENT` get their own variants.
    pub(crate) fn from_errno(errno: Errno, ns: &str, what: impl Into<String>) -> Error {
        let (ns, what) = (ns.to_owned(), what.into());
        match errno {
            Errno::EEXIST => Error::AlreadyExists { ns, what },
            Errno::ENODEV | Errno::ENOENT => Error::NotFound { ns, what },
            source => Error::Os { ns, what, source },
        }
    }

    /// Like [`Error::from_errno`] for `std::io::Error`.
    pub(crate) fn from_io(source: std::io::Error, ns: &str, what: impl Into<String>) -> Error {
        match source.raw_os_error().map(Errno::from_raw) {
            Some(errno @ (Errno::EEXIST | Errno::ENODEV | Errno::ENOENT)) => {
                Error::from_errno(errno, ns, what)
            }
            _ => Error::Io {
                ns: ns.to_owned(),
                what: what.into(),
                source,
            },
        }
    }

    /// Like [`Error::from_errno`] for netlink errors.
    pub(crate) fn from_netlink(
        source: rtnetlink::Error,
        ns: &str,
        what: impl Into<String>,
    ) -> Error {
        match netlink_errno(&source) {
            Some(errno @ (Errno::EEXIST | Errno::ENODEV | Errno::ENOENT)) => {
                Error::from_errno(errno, ns, what)
            }
            _ => Error::Netlink {
                ns: ns.to_owned(),
                what: what.into(),
                source,
            },
        }
    }
}

/// The errno carried by a netlink error message (the kernel sends it negated).
pub(crate) fn netlink_errno(err: &rtnetlink::Error) -> Option<Errno> {
    match err {
        rtnetlink::Error::NetlinkError(msg) => msg.code.map(|c| Errno::from_raw(-c.get())),
        _ => None,
    }
}
