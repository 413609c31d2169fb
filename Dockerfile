# One image for every component: `l2sm controller`, `l2sm agent` (with Open vSwitch beside
# it), `l2sm operator`, and the static CNI plugin `l2sm-cni` beside `l2sm`, which the agent's
# init container installs on the host (`l2sm install-cni --dir /host/cni-bin`).
# Build: docker build -t l2sm:latest .
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

FROM debian:bookworm-slim
# Open vSwitch for the agent's pod (ovsdb-server, ovs-vswitchd, ovsdb-tool), kmod for
# loading the kernel datapath module. The controller and operator use only the binary.
RUN apt-get update \
    && apt-get install -y --no-install-recommends openvswitch-switch kmod ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/l2sm /out/l2sm-cni /usr/local/bin/
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/l2sm"]
