//! `l2sm install-cni --dir DIR [--from PATH]`: puts the CNI plugin into the host's CNI binary
//! directory as `l2sm` (the `type` of the L2S-M network attachments). The agent DaemonSet's
//! init container runs it with the host directory mounted, so the plugin is installed wherever
//! an agent runs, into whatever directory the distribution uses.
//!
//! The copy is atomic: a temporary file in DIR is written, flushed to disk, made executable
//! and renamed over the old plugin. A runtime executing the old plugin meanwhile keeps its
//! (now unlinked) file; one starting it sees either the old or the new file, never half of
//! one. Writing into the old file instead would fail (`ETXTBSY`) while it runs, or corrupt it.

use anyhow::{bail, Context as _};
use std::fs::{self, File, OpenOptions};
use std::io::{Read as _, Seek as _, SeekFrom};
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

/// The plugin's name in the CNI directory (`"type": "l2sm"` in a network configuration).
pub(crate) const PLUGIN_NAME: &str = "l2sm";
/// The plugin's file name beside `l2sm` in the image (and in cargo's target directory).
const SOURCE_NAME: &str = "l2sm-cni";
/// Prefix of the temporary files; each installer's is its own (pid and time in the name).
const TEMP_PREFIX: &str = ".l2sm.install-";

/// The default source: `l2sm-cni` beside the running `l2sm`.
pub(crate) fn default_source() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("cannot locate the running l2sm executable")?;
    let dir = exe
        .parent()
        .with_context(|| format!("{} has no directory", exe.display()))?;
    Ok(dir.join(SOURCE_NAME))
}

/// Installs `from` as `dir/l2sm` (mode 0755), creating `dir` if missing; returns the installed
/// path. On failure nothing is left behind: no temporary file, no directory it created, and
/// an existing plugin stays as it was.
pub(crate) fn install(dir: &Path, from: &Path) -> anyhow::Result<PathBuf> {
    let mut source = open_plugin(from)?;
    let created = missing_ancestors(dir);
    fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the CNI directory {}", dir.display()))?;
    let installed = replace(dir, &mut source)
        .with_context(|| format!("cannot install {} into {}", from.display(), dir.display()));
    if installed.is_err() {
        // Deepest first; only directories this call made, and only if still empty.
        for d in created.iter().rev() {
            let _ = fs::remove_dir(d);
        }
    }
    installed
}

/// Opens the plugin to install: a regular file that starts like an executable.
fn open_plugin(from: &Path) -> anyhow::Result<File> {
    let mut file = File::open(from)
        .with_context(|| format!("cannot read the CNI plugin {}", from.display()))?;
    let meta = file
        .metadata()
        .with_context(|| format!("cannot read the CNI plugin {}", from.display()))?;
    if !meta.is_file() {
        bail!("the CNI plugin {} is not a regular file", from.display());
    }
    let mut magic = [0u8; 4];
    let elf = file.read_exact(&mut magic).is_ok() && magic == *b"\x7fELF";
    if !elf {
        bail!(
            "the CNI plugin {} is not an executable (no ELF header)",
            from.display()
        );
    }
    file.seek(SeekFrom::Start(0))
        .with_context(|| format!("cannot read the CNI plugin {}", from.display()))?;
    Ok(file)
}

/// `dir` and those of its ancestors that do not exist yet, outermost first.
fn missing_ancestors(dir: &Path) -> Vec<PathBuf> {
    let mut missing: Vec<PathBuf> = dir
        .ancestors()
        .take_while(|d| !d.as_os_str().is_empty() && fs::symlink_metadata(d).is_err())
        .map(Path::to_path_buf)
        .collect();
    missing.reverse();
    missing
}

/// Writes `source` to a temporary file in `dir`, syncs it, makes it executable and renames it
/// over `dir/l2sm`; removes the temporary file on any failure.
fn replace(dir: &Path, source: &mut File) -> anyhow::Result<PathBuf> {
    let target = dir.join(PLUGIN_NAME);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let temp = dir.join(format!("{TEMP_PREFIX}{}-{nanos}", std::process::id()));
    let mut out = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o700)
        .open(&temp)
        .with_context(|| format!("cannot create {}", temp.display()))?;
    let written = (|| -> anyhow::Result<()> {
        std::io::copy(source, &mut out).context("cannot copy the plugin")?;
        // fchmod: exact mode whatever the umask.
        out.set_permissions(fs::Permissions::from_mode(0o755))
            .context("cannot make the plugin executable")?;
        out.sync_all().context("cannot flush the plugin to disk")?;
        drop(out);
        fs::rename(&temp, &target)
            .with_context(|| format!("cannot rename it to {}", target.display()))?;
        Ok(())
    })();
    if let Err(e) = written {
        let _ = fs::remove_file(&temp);
        return Err(e);
    }
    // The rename itself is durable once the directory is.
    File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("cannot flush the directory {}", dir.display()))?;
    Ok(target)
}
