#!/usr/bin/env bash
# Builds the release image from the Dockerfile with buildah (no container daemon), runs smoke
# checks inside it and writes it as an OCI archive. Root, Debian 12; installs buildah and
# debootstrap when missing.
#
# 1. The runtime stage's base (Debian 12) is made from Debian's packages with debootstrap
#    (minbase, updated from bookworm-updates and bookworm-security, documentation left out as
#    in Debian's slim images), cached in $L2SM_IMAGE_CACHE (default /var/cache/l2sm-image) as a
#    tarball keyed by the ISO week and this recipe, imported into buildah's storage as
#    localhost/l2sm-base:<key>; a new week or a changed recipe makes a new one.
# 2. The binaries come from the host's release build (`cargo build --release --bin l2sm` and
#    the static CNI plugin of scripts/build-cni-static.sh): the Dockerfile's `build` stage
#    needs the Rust image, which cannot be pulled here, so the build uses its `prebuilt` stage
#    (build argument BINARIES=prebuilt and the build context `prebuilt-bin`).
# 3. `buildah bud --isolation chroot --layers` builds the Dockerfile's runtime stage, the one
#    users get, on that base (build argument RUNTIME_BASE).
# 4. Smoke checks inside the image, in a network and PID namespace of their own (nothing
#    listens on the host, nothing outlives the checks): the binaries are this build's,
#    `l2sm --version`, the default user
#    65532, the controller (as that user) answering its API on loopback, ovsdb-server and
#    ovs-vswitchd (userspace datapath, as the lab runs them) with `l2sm agent` making its bridge
#    and the bridge's switch connecting to the controller, `l2sm-cni` answering VERSION.
# 5. `buildah push` to an OCI archive; prints its size (compressed and unpacked) and layers.
# Containers it makes are removed, also on failure; the base image, its tarball and buildah's
# layer cache stay.
#
# Usage: scripts/build-image.sh [--dockerfile FILE] [--output FILE] [--tag NAME]
#   --dockerfile  the Dockerfile to build (default: Dockerfile)
#   --output      the OCI archive (default: $CARGO_TARGET_DIR or target, /l2sm-image.oci.tar)
#   --tag         the image's name in buildah's storage (default: localhost/l2sm:latest)
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
dockerfile=Dockerfile
output="${CARGO_TARGET_DIR:-target}/l2sm-image.oci.tar"
tag=localhost/l2sm:latest
while [ $# -gt 0 ]; do
  case "$1" in
    --dockerfile) dockerfile=${2:?--dockerfile needs a file}; shift 2 ;;
    --output) output=${2:?--output needs a file}; shift 2 ;;
    --tag) tag=${2:?--tag needs a name}; shift 2 ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "build-image.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
if [ "$(id -u)" != 0 ]; then
  echo "build-image.sh must run as root (buildah with chroot isolation, debootstrap)" >&2
  exit 1
fi
[ -f "$dockerfile" ] || { echo "build-image.sh: no Dockerfile at $dockerfile" >&2; exit 1; }
case "$output" in /*) ;; *) output="$repo/$output" ;; esac

step() { echo "== build-image: $1 (at ${SECONDS}s)"; }

need=()
for tool in buildah:buildah debootstrap:debootstrap unshare:util-linux ip:iproute2 curl:curl python3:python3; do
  command -v "${tool%%:*}" >/dev/null || need+=("${tool#*:}")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

work=$(mktemp -d /tmp/l2sm-image.XXXXXX)
# Containers that exist before this run are not ours; every other one is removed at the end
# (buildah bud leaves working containers behind on failure, and at times with --layers).
buildah containers --all --quiet --notruncate | sort >"$work/containers.before"
cleanup() {
  local c
  buildah containers --all --quiet --notruncate | sort | comm -13 "$work/containers.before" - |
    while read -r c; do
      buildah rm "$c" >/dev/null 2>&1 || echo "build-image.sh: could not remove container $c" >&2
    done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
trap 'echo "build-image.sh: failed at line $LINENO: $BASH_COMMAND" >&2' ERR

# ---- 1. the Debian 12 base
cache=${L2SM_IMAGE_CACHE:-/var/cache/l2sm-image}
mirror=${L2SM_DEBIAN_MIRROR:-http://deb.debian.org/debian}
security_mirror=${L2SM_DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
arch=$(dpkg --print-architecture)

# The base's root filesystem in $1, from Debian's packages.
make_base_rootfs() {
  local root=$1
  debootstrap --variant=minbase --arch="$arch" bookworm "$root" "$mirror"
  rm -f "$root/etc/apt/sources.list"
  cat >"$root/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $mirror
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $security_mirror
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  # Packages installed later (the Dockerfile's Open vSwitch) bring no documentation either;
  # the copyright files stay.
  cat >"$root/etc/dpkg/dpkg.cfg.d/l2sm-slim" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/lintian/*
EOF
  # Updates and security fixes, in a mount namespace of its own (proc unmounts with it).
  cp /etc/resolv.conf "$root/etc/resolv.conf"
  # shellcheck disable=SC2016 # $1 is the inner shell's
  unshare --mount --fork -- sh -ec '
    mount -t proc proc "$1/proc"
    chroot "$1" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    chroot "$1" env DEBIAN_FRONTEND=noninteractive apt-get upgrade -y -qq
    chroot "$1" apt-get clean' sh "$root"
  find "$root/usr/share/doc" -mindepth 1 ! -type d ! -name copyright -delete
  find "$root/usr/share/doc" -mindepth 1 -type d -empty -delete
  rm -rf "${root:?}"/usr/share/man/* "$root"/usr/share/info/* "$root"/usr/share/locale/* \
    "$root"/usr/share/lintian/* "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin \
    "$root"/var/cache/ldconfig/aux-cache "$root"/var/log/*.log "$root"/var/log/apt/* \
    "${root:?}"/tmp/*
  : >"$root/etc/resolv.conf"
  : >"$root/etc/machine-id"
  rm -f "$root/etc/hostname"
}
# The key changes with the week (updates) and with the recipe above.
recipe=$(printf '%s\n' "$(declare -f make_base_rootfs)" "$mirror" "$security_mirror" "$arch" | sha256sum | cut -c1-12)
key="bookworm-$(date -u +%G-w%V)-$recipe"
base_ref="localhost/l2sm-base:$key"
base_tar="$cache/base-$key.tar"
if buildah inspect --type image "$base_ref" >/dev/null 2>&1; then
  step "base $base_ref (cached image)"
else
  mkdir -p "$cache"
  if [ ! -f "$base_tar" ]; then
    step "base from Debian's packages (debootstrap)"
    rootfs="$cache/rootfs.partial"
    rm -rf "$rootfs"
    make_base_rootfs "$rootfs" >"$work/base.log" 2>&1 || {
      tail -n 30 "$work/base.log" >&2
      rm -rf "$rootfs"
      echo "build-image.sh: making the base failed (log above)" >&2
      exit 1
    }
    tar --numeric-owner --xattrs --exclude='./dev/*' -C "$rootfs" -cf "$base_tar.partial" .
    mv "$base_tar.partial" "$base_tar"
    rm -rf "$rootfs"
  fi
  step "import $base_tar as $base_ref"
  ctr=$(buildah from --pull=never scratch)
  mnt=$(buildah mount "$ctr")
  tar --numeric-owner --xattrs -xpf "$base_tar" -C "$mnt"
  buildah umount "$ctr" >/dev/null
  buildah config --os linux --arch "$arch" --cmd bash \
    --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --label "org.opencontainers.image.description=Debian 12 minbase made by scripts/build-image.sh ($key)" \
    "$ctr"
  buildah commit --quiet --rm "$ctr" "$base_ref" >/dev/null
  # Only the new base stays: older tarballs, older bases and the layers built on them (the
  # untagged images of earlier builds) are removed.
  find "$cache" -maxdepth 1 -name 'base-*.tar' ! -name "base-$key.tar" -delete
  buildah rmi --prune >/dev/null 2>&1 || true
  buildah images --format '{{.Name}}:{{.Tag}}' | while read -r old; do
    case "$old" in
      "$base_ref") ;;
      localhost/l2sm-base:*) buildah rmi "$old" >/dev/null 2>&1 || true ;;
    esac
  done
fi

# ---- 2. binaries from the host's release build
step "release binaries"
cargo build --release --locked --bin l2sm
l2sm_bin="${CARGO_TARGET_DIR:-target}/release/l2sm"
cni_bin=$(scripts/build-cni-static.sh)
mkdir "$work/bin"
cp "$l2sm_bin" "$work/bin/l2sm"
cp "$cni_bin" "$work/bin/l2sm-cni"
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)

# ---- 3. the image
step "buildah bud $dockerfile"
buildah bud --isolation chroot --layers --pull=never -f "$dockerfile" -t "$tag" \
  --build-arg BINARIES=prebuilt --build-context prebuilt-bin="$work/bin" \
  --build-arg RUNTIME_BASE="$base_ref" .

# ---- 4. smoke checks
step "smoke checks inside $tag"
fail() { echo "build-image.sh: smoke check failed: $*" >&2; exit 1; }
user=$(buildah inspect --type image --format '{{.OCIv1.Config.User}}' "$tag")
[ "$user" = "65532:65532" ] || fail "the image's user is '$user', not 65532:65532"
ctr=$(buildah from --pull=never "$tag")
rootfs=$(buildah mount "$ctr")
# The image holds this run's binaries (not a stale cached layer).
for b in l2sm l2sm-cni; do
  cmp -s "$work/bin/$b" "$rootfs/usr/local/bin/$b" ||
    fail "/usr/local/bin/$b in the image is not the host's release build"
done
echo "ok: /usr/local/bin/l2sm and l2sm-cni are the host's release build"
cat >"$work/smoke.sh" <<'EOF'
# Runs in fresh network and PID namespaces: every process it starts ends with it.
set -euo pipefail
ctr=$1 version=$2 rootfs=$3
fail() {
  local f
  for f in "$rootfs"/tmp/smoke/*.log "$rootfs"/tmp/ovs/ovs-vswitchd.log; do
    [ -f "$f" ] && { echo "--- ${f#"$rootfs"} in the image" >&2; tail -n 20 "$f" >&2; }
  done
  echo "build-image.sh: smoke check failed: $*" >&2
  exit 1
}
# `in_image [--root] SCRIPT`: runs SCRIPT with sh in the image, as its default user or as
# root with what Open vSwitch's userspace datapath needs for its tap devices (a cluster runs
# the switch and agent privileged). buildah run's own standard output comes back empty now
# and then (buildah 1.28, chroot isolation, in a PID namespace), so the output goes through a
# file in the container, read here through the container's mount.
in_image() {
  local opts=() rc=0
  if [ "$1" = --root ]; then
    opts=(--user 0:0 --cap-add CAP_NET_ADMIN --cap-add CAP_NET_RAW)
    shift
  fi
  buildah run --isolation chroot "${opts[@]}" "$ctr" -- sh -c "{ $1 ; } >/tmp/smoke/out 2>&1" || rc=$?
  cat "$rootfs/tmp/smoke/out"
  return "$rc"
}
ip link set lo up
install -d -m 1777 "$rootfs/tmp/smoke"

out=$(in_image 'l2sm --version') || fail "l2sm --version: $out"
[ "$out" = "l2sm $version" ] || fail "l2sm --version says '$out', expected 'l2sm $version'"
echo "ok: l2sm --version = $out"

uid=$(in_image 'id -u')
[ "$uid" = 65532 ] || fail "commands run as uid '$uid' by default, not 65532"
echo "ok: default user uid $uid"

out=$(in_image 'CNI_COMMAND=VERSION l2sm-cni </dev/null') || fail "l2sm-cni VERSION: $out"
grep -q '"supportedVersions"' <<<"$out" || fail "l2sm-cni VERSION answered: $out"
echo "ok: l2sm-cni VERSION = $out"

# The controller as the image's default user, with a state directory it may write.
creds="L2SM_API_USER=smoke L2SM_API_PASSWORD=smoke-password"
buildah run --isolation chroot "$ctr" -- sh -c "env $creds l2sm controller --insecure-openflow \
  --api-listen 127.0.0.1:8181 --openflow-listen 127.0.0.1:6653 \
  --state-dir /tmp/l2sm-controller >/tmp/smoke/controller.log 2>&1" &
for _ in $(seq 100); do
  curl -fsS -o /dev/null http://127.0.0.1:8181/onos/ui 2>/dev/null && break
  sleep 0.2
done
curl -fsS -o /dev/null http://127.0.0.1:8181/onos/ui || fail "the controller does not answer on 127.0.0.1:8181"
# What the controller wrote is owned by the user it runs as.
cuid=$(stat -c %u "$rootfs/tmp/l2sm-controller/state.redb") || fail "no controller store"
[ "$cuid" = 65532 ] || fail "the controller runs as uid $cuid, not 65532"
api="env $creds l2sm --controller-url http://127.0.0.1:8181"
out=$(in_image "$api network create smoke") ||
  fail "the image's l2sm cannot create a network through the controller: $out"
out=$(in_image "$api network list") || fail "network list: $out"
grep -qw smoke <<<"$out" || fail "the network made is not listed: $out"
echo "ok: controller answers on loopback (created and listed network smoke; its store is owned by uid $cuid)"

# Open vSwitch as the lab runs it (userspace datapath), then the agent, as root.
out=$(in_image --root '
  set -e; d=/tmp/ovs; mkdir -p $d; cd $d
  export OVS_RUNDIR=$d OVS_DBDIR=$d OVS_LOGDIR=$d
  ovsdb-tool create conf.db /usr/share/openvswitch/vswitch.ovsschema
  ovsdb-server conf.db --remote=punix:$d/db.sock --pidfile=$d/ovsdb-server.pid \
    --unixctl=$d/ovsdb-server.ctl --log-file=$d/ovsdb-server.log -vconsole:off --detach --no-chdir
  ovs-vswitchd unix:$d/db.sock --pidfile=$d/ovs-vswitchd.pid --unixctl=$d/ovs-vswitchd.ctl \
    --log-file=$d/ovs-vswitchd.log -vconsole:off --detach --no-chdir
  ovs-appctl -t $d/ovs-vswitchd.ctl version') || fail "ovsdb-server / ovs-vswitchd did not start: $out"
echo "ok: ovsdb-server and ovs-vswitchd started ($(tail -n 1 <<<"$out"))"
buildah run --isolation chroot --user 0:0 --cap-add CAP_NET_ADMIN --cap-add CAP_NET_RAW "$ctr" -- \
  sh -c "env $creds l2sm agent --node smoke --ovsdb unix:/tmp/ovs/db.sock \
  --datapath-type netdev --controller tcp:127.0.0.1:6653 \
  --controller-api http://127.0.0.1:8181 --listen /tmp/ovs/agent.sock >/tmp/smoke/agent.log 2>&1" &
bridge=""
for _ in $(seq 50); do
  bridge=$(in_image --root 'ovs-vsctl --db=unix:/tmp/ovs/db.sock list-br' | head -n 1 || true)
  [ -n "$bridge" ] && break
  sleep 0.2
done
[ -n "$bridge" ] || fail "no bridge appeared in OVSDB"
echo "ok: l2sm agent made bridge $bridge in OVSDB"
dpid=$(in_image --root "ovs-vsctl --db=unix:/tmp/ovs/db.sock get bridge $bridge datapath_id" | tr -d '"')
[[ "$dpid" =~ ^[0-9a-f]{16}$ ]] || fail "bridge $bridge has no datapath id: $dpid"
switches=""
for _ in $(seq 100); do
  switches=$(curl -fsS -u smoke:smoke-password http://127.0.0.1:8181/api/v1/switches 2>/dev/null || true)
  grep -q "\"id\":\"of:$dpid\"" <<<"$switches" && break
  sleep 0.2
done
grep -q "\"id\":\"of:$dpid\"" <<<"$switches" ||
  fail "the bridge's switch of:$dpid did not connect to the controller: $switches"
echo "ok: the bridge's switch is connected to the controller: $switches"
EOF
unshare --net --pid --fork --kill-child -- bash "$work/smoke.sh" "$ctr" "$version" "$rootfs"
buildah umount "$ctr" >/dev/null

# ---- 5. OCI archive
step "OCI archive $output"
mkdir -p "$(dirname "$output")"
rm -f "$output"
buildah push --quiet "$tag" "oci-archive:$output:${tag##*/}" >/dev/null
python3 - "$output" <<'EOF'
import gzip, json, sys, tarfile
path = sys.argv[1]
with tarfile.open(path) as t:
    blob = lambda d: t.extractfile("blobs/" + d.replace(":", "/")).read()
    index = json.loads(t.extractfile("index.json").read())
    manifest = json.loads(blob(index["manifests"][0]["digest"]))
    layers = manifest["layers"]
    compressed = sum(l["size"] for l in layers)
    unpacked = 0
    for l in layers:
        data = blob(l["digest"])
        unpacked += len(gzip.decompress(data)) if "gzip" in l["mediaType"] else len(data)
import os
mib = lambda n: f"{n / 1048576:.1f} MiB"
print(f"image: {path}: {mib(os.path.getsize(path))} archive, layers {mib(compressed)} compressed, "
      f"{mib(unpacked)} unpacked, {len(layers)} layers")
EOF
step "done"
