//! The shipped plugin is static: Multus (thick) runs it in the host's root, whose C library
//! may be older than the build's (RHEL 8, Ubuntu 20.04, Amazon Linux 2). The binary checked is
//! the one scripts/build-cni-static.sh makes (the Dockerfile's and CI's single way to build
//! it): `L2SM_CNI_PLUGIN` when scripts/test.sh has built it already, else built here.
//!
//! Checked by reading the ELF file itself (no `ldd`, which says "not a dynamic executable" for
//! anything it cannot run): no program interpreter, no needed shared library, none of glibc's
//! NSS entry points (which would dlopen `libnss_*.so` of the host's glibc at run time), and it
//! runs for real in an empty root directory with nothing but itself.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const PT_DYNAMIC: u32 = 2;
const PT_INTERP: u32 = 3;
const PT_LOAD: u32 = 1;
const DT_NULL: u64 = 0;
const DT_NEEDED: u64 = 1;
const SHT_SYMTAB: u32 = 2;

/// The static plugin: `L2SM_CNI_PLUGIN`, or the output of scripts/build-cni-static.sh.
fn static_plugin() -> PathBuf {
    if let Some(p) = std::env::var_os("L2SM_CNI_PLUGIN").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out = Command::new(root.join("scripts/build-cni-static.sh"))
        .stderr(Stdio::inherit())
        .output()
        .expect("cannot run scripts/build-cni-static.sh");
    assert!(out.status.success(), "scripts/build-cni-static.sh failed");
    let path = String::from_utf8(out.stdout).expect("path is not UTF-8");
    PathBuf::from(path.trim())
}

fn read_plugin() -> (PathBuf, Vec<u8>) {
    let path = static_plugin();
    assert!(path.is_file(), "{} is missing", path.display());
    let bytes = std::fs::read(&path).expect("cannot read the plugin");
    (path, bytes)
}

fn u16_at(b: &[u8], off: usize) -> u16 {
    u16::from_le_bytes(b[off..off + 2].try_into().unwrap())
}
fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(b[off..off + 4].try_into().unwrap())
}
fn u64_at(b: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(b[off..off + 8].try_into().unwrap())
}
fn usize_at(b: &[u8], off: usize) -> usize {
    usize::try_from(u64_at(b, off)).unwrap()
}

/// A program header of a 64-bit ELF file: (type, file offset, file size).
fn program_headers(elf: &[u8]) -> Vec<(u32, usize, usize)> {
    assert_eq!(&elf[..4], b"\x7fELF", "not an ELF file");
    assert_eq!(elf[4], 2, "not a 64-bit ELF file");
    assert_eq!(elf[5], 1, "not a little-endian ELF file");
    let (phoff, phentsize, phnum) = (
        usize_at(elf, 0x20),
        usize::from(u16_at(elf, 0x36)),
        usize::from(u16_at(elf, 0x38)),
    );
    (0..phnum)
        .map(|i| {
            let h = phoff + i * phentsize;
            (
                u32_at(elf, h),
                usize_at(elf, h + 8),
                usize_at(elf, h + 0x20),
            )
        })
        .collect()
}

/// Names of the symbols the file defines (from `.symtab`; panics when the file has none, so
/// a stripped build cannot pass this check unseen).
fn defined_symbols(elf: &[u8]) -> Vec<String> {
    let (shoff, shentsize, shnum) = (
        usize_at(elf, 0x28),
        usize::from(u16_at(elf, 0x3a)),
        usize::from(u16_at(elf, 0x3c)),
    );
    let section = |i: usize| -> (u32, usize, usize, usize, usize) {
        let h = shoff + i * shentsize;
        (
            u32_at(elf, h + 4),                              // sh_type
            usize_at(elf, h + 0x18),                         // sh_offset
            usize_at(elf, h + 0x20),                         // sh_size
            usize::try_from(u32_at(elf, h + 0x28)).unwrap(), // sh_link
            usize_at(elf, h + 0x38),                         // sh_entsize
        )
    };
    let symtab = (0..shnum)
        .map(section)
        .find(|s| s.0 == SHT_SYMTAB)
        .expect("the plugin has no symbol table (stripped?): this check needs it");
    let (_, off, size, link, entsize) = symtab;
    let (_, stroff, strsize, _, _) = section(link);
    let strtab = &elf[stroff..stroff + strsize];
    (0..size / entsize)
        .filter_map(|i| {
            let s = off + i * entsize;
            let name = usize::try_from(u32_at(elf, s)).unwrap();
            let shndx = u16_at(elf, s + 6);
            let end = strtab[name..].iter().position(|&c| c == 0).unwrap() + name;
            (shndx != 0 && end > name)
                .then(|| String::from_utf8_lossy(&strtab[name..end]).into_owned())
        })
        .collect()
}

#[test]
fn the_plugin_has_no_interpreter_and_needs_no_shared_library() {
    let (path, elf) = read_plugin();
    let headers = program_headers(&elf);
    assert!(
        headers.iter().any(|h| h.0 == PT_LOAD),
        "{}: no loadable segment: not parsed right",
        path.display()
    );
    assert!(
        !headers.iter().any(|h| h.0 == PT_INTERP),
        "{} has an ELF interpreter (PT_INTERP): it is dynamically linked",
        path.display()
    );
    // A static-pie has a dynamic section (for its own relocations) but must need nothing.
    let mut needed = 0;
    for &(_, off, size) in headers.iter().filter(|h| h.0 == PT_DYNAMIC) {
        for entry in elf[off..off + size].chunks_exact(16) {
            match u64_at(entry, 0) {
                DT_NULL => break,
                DT_NEEDED => needed += 1,
                _ => {}
            }
        }
    }
    assert_eq!(
        needed,
        0,
        "{} needs {needed} shared libraries (DT_NEEDED)",
        path.display()
    );
}

#[test]
fn the_plugin_links_no_name_service_lookups() {
    let (path, elf) = read_plugin();
    let symbols = defined_symbols(&elf);
    assert!(
        symbols.iter().any(|s| s == "main"),
        "{}: no `main` among the symbols: not parsed right",
        path.display()
    );
    // Each of these goes through NSS, which dlopens the host's libnss_*.so: a static binary
    // calling them breaks (or crashes) on a host with another glibc.
    let nss = [
        "getaddrinfo",
        "getnameinfo",
        "gethostbyname",
        "gethostbyname_r",
        "gethostbyname2_r",
        "getpwnam",
        "getpwnam_r",
        "getpwuid",
        "getpwuid_r",
        "getgrnam_r",
        "getgrgid_r",
        "getgrouplist",
        "initgroups",
        "getservbyname_r",
    ];
    let found: Vec<&String> = symbols
        .iter()
        .filter(|s| nss.contains(&s.as_str()))
        .collect();
    assert!(
        found.is_empty(),
        "{} links NSS lookups {found:?}: a static plugin must not call them",
        path.display()
    );
}

#[test]
fn the_plugin_runs_in_an_empty_root() {
    let (path, _) = read_plugin();
    // Nothing but the plugin: no loader, no libc.so, no /etc. A dynamic build fails to start
    // here ("No such file or directory" for its missing interpreter).
    let root = tempfile::tempdir().unwrap();
    std::fs::copy(&path, root.path().join("l2sm-cni")).unwrap();
    let out = Command::new("/usr/sbin/chroot")
        .arg(root.path())
        .arg("/l2sm-cni")
        .env_clear()
        .env("CNI_COMMAND", "VERSION")
        .stdin(Stdio::null())
        .output()
        .expect("cannot run /usr/sbin/chroot (coreutils)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the plugin did not run in an empty root: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answer: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(answer["cniVersion"], "1.1.0", "{stdout}");
    assert!(
        answer["supportedVersions"]
            .as_array()
            .is_some_and(|v| v.iter().any(|x| x == "0.3.0")),
        "{stdout}"
    );
}
