//! The workspace's binaries. A test in one crate cannot ask cargo for another crate's binary,
//! so this looks beside the test executable (`target/<profile>/`), where `cargo build
//! --workspace --bins` (run by `scripts/test.sh`) puts them. `L2SM_BIN_DIR` overrides.

use std::path::PathBuf;

/// Path of the workspace binary `name`; panics with the command to run when it is missing.
pub fn path(name: &str) -> PathBuf {
    let dir = match std::env::var_os("L2SM_BIN_DIR") {
        Some(d) => PathBuf::from(d),
        None => {
            let exe = std::env::current_exe().expect("cannot locate the test executable");
            // target/<profile>/deps/<test> -> target/<profile>
            let deps = exe.parent().expect("test executable has no directory");
            if deps.file_name().is_some_and(|n| n == "deps") {
                deps.parent().unwrap_or(deps).to_path_buf()
            } else {
                deps.to_path_buf()
            }
        }
    };
    let bin = dir.join(name);
    assert!(
        bin.is_file(),
        "{} is missing: build the workspace's binaries first (`cargo build --workspace --bins`; \
         scripts/test.sh does) or set L2SM_BIN_DIR",
        bin.display()
    );
    bin
}

/// The `l2sm` command.
pub fn l2sm() -> PathBuf {
    path("l2sm")
}
