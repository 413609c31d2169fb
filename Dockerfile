# One image for every component: `l2sm controller`, `l2sm agent` (with Open vSwitch beside
# it), `l2sm operator`, and the static CNI plugin `l2sm-cni` beside `l2sm`, which the agent's
# init container installs on the host (`l2sm install-cni --dir /host/cni-bin`).
# Build: docker build -t l2sm:latest .
#
# Where the two binaries come from (build argument BINARIES):
# - `build` (the default): compiled in the `build` stage below, from this source tree.
# - `prebuilt`: taken from the host's release build, for builders that cannot pull the Rust
#   image (scripts/build-image.sh builds the image this way with buildah, without a daemon):
#     buildah bud --build-arg BINARIES=prebuilt --build-context prebuilt-bin=DIR .
#   DIR holds `l2sm` (`cargo build --release --locked --bin l2sm`) and `l2sm-cni` (the static
#   plugin from scripts/build-cni-static.sh). The stage not chosen is never built.
# RUNTIME_BASE names the runtime stage's base image: Debian 12 slim by default;
# scripts/build-image.sh passes one it made from Debian's packages with debootstrap.
ARG BINARIES=build
ARG RUNTIME_BASE=debian:bookworm-slim

FROM rust:1-bookworm AS build
# protoc and the well-known .proto files: the controller's etcd client (--store etcd://…)
# generates its gRPC code at build time.
RUN apt-get update \
    && apt-get install -y --no-install-recommends protobuf-compiler libprotobuf-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# The CNI plugin runs on the host (Multus thick runs it in the host's root, any distribution):
# it is built static, the one way scripts/build-cni-static.sh builds it (it prints the path).
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin l2sm \
    && install -D -m 0755 target/release/l2sm /out/l2sm \
    && cni=$(scripts/build-cni-static.sh) \
    && install -D -m 0755 "$cni" /out/l2sm-cni

FROM scratch AS prebuilt
COPY --from=prebuilt-bin l2sm l2sm-cni /out/

FROM ${BINARIES} AS binaries

FROM ${RUNTIME_BASE}
# Open vSwitch for the agent's pod (ovsdb-server, ovs-vswitchd, ovsdb-tool), kmod for
# loading the kernel datapath module. The controller and operator use only the binary.
RUN apt-get update \
    && apt-get install -y --no-install-recommends openvswitch-switch kmod ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY --from=binaries /out/l2sm /out/l2sm-cni /usr/local/bin/
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/l2sm"]
