//! Per-node API credentials of a lab: each node's agent gets its own `agent:<node>` identity
//! (it may only change its own switch's ports), a `reader` identity exists for scraping
//! `/metrics`, and the controller reads them all from one users file. Passwords are random
//! tokens kept in `<lab>/api/<user>.token` (mode 0600); the users file holds only salted
//! hashes.

use crate::state::Lab;
use anyhow::Context as _;
use l2sm_controller::api::auth::{users_file_line, Role};
use std::path::PathBuf;

/// Name of the read-only user.
pub const READER_USER: &str = "reader";

/// API user name of `node`'s agent.
pub fn agent_user(node: &str) -> String {
    format!("agent-{node}")
}

fn api_dir(lab: &Lab) -> PathBuf {
    lab.dir().join("api")
}

/// Random bytes from the kernel.
fn random_bytes<const N: usize>() -> anyhow::Result<[u8; N]> {
    use std::io::Read as _;
    let mut bytes = [0u8; N];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes)
}

/// The password of `user`, made (32 random bytes, hex) and stored on first use.
fn token(lab: &Lab, user: &str) -> anyhow::Result<String> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let dir = api_dir(lab);
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(format!("{user}.token"));
    if let Ok(existing) = std::fs::read_to_string(&path) {
        if !existing.trim().is_empty() {
            return Ok(existing.trim().to_string());
        }
    }
    let token: String = random_bytes::<32>()?
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    f.write_all(token.as_bytes())?;
    Ok(token)
}

/// Environment giving `node`'s agent its own credentials (replacing the lab's admin ones).
pub fn agent_env(lab: &Lab, node: &str) -> anyhow::Result<[(&'static str, String); 2]> {
    let user = agent_user(node);
    let password = token(lab, &user)?;
    Ok([("L2SM_API_USER", user), ("L2SM_API_PASSWORD", password)])
}

/// The reader's user name and password.
pub fn reader_credentials(lab: &Lab) -> anyhow::Result<(String, String)> {
    Ok((READER_USER.to_string(), token(lab, READER_USER)?))
}

/// Writes the controller's users file for `nodes` (each agent, and the reader); returns its
/// path. The lab's admin stays the controller's `--api-user`.
pub fn write_users_file<'a>(
    lab: &Lab,
    nodes: impl IntoIterator<Item = &'a str>,
) -> anyhow::Result<PathBuf> {
    write_users_file_named(lab, "users", nodes)
}

/// [`write_users_file`] under another file name (one per controller of a multi-cluster lab:
/// each knows only its own cluster's agents).
pub fn write_users_file_named<'a>(
    lab: &Lab,
    file: &str,
    nodes: impl IntoIterator<Item = &'a str>,
) -> anyhow::Result<PathBuf> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut text = String::from("# l2sm lab API users: name role salt sha256(salt+password)\n");
    for node in nodes {
        let user = agent_user(node);
        let password = token(lab, &user)?;
        let line = users_file_line(
            &user,
            &Role::Agent(node.to_string()),
            &password,
            &random_bytes::<16>()?,
        );
        text.push_str(&line);
        text.push('\n');
    }
    let (reader, password) = reader_credentials(lab)?;
    text.push_str(&users_file_line(
        &reader,
        &Role::Reader,
        &password,
        &random_bytes::<16>()?,
    ));
    text.push('\n');
    let path = api_dir(lab).join(file);
    let tmp = api_dir(lab).join(format!("{file}.tmp"));
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, &path)?;
    Ok(path)
}
