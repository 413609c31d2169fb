#!/usr/bin/env bash
# Property-based fuzzing of the controller's REST API with schemathesis, driven by the OpenAPI
# document the controller serves: every operation with and without valid data, plus the
# stateful phase, with HTTP Basic credentials so the authenticated operations are exercised.
# Every check is on (scripts/api-fuzz/schemathesis.toml): no server error, status codes,
# content types and bodies as documented, schema-valid bodies accepted and invalid ones
# refused, authentication enforced. Two of them are replaced on a few operations by narrower
# ones (scripts/api-fuzz/hooks.py says why): the 500s upstream's vnets contract answers, and
# two IPAM rules that relate items of a list to each other.
#
# Part of scripts/test.sh (CI): bounded (50 cases per operation by default, a wall-clock
# limit, a per-request timeout) and reproducible (fixed seed, no example database). Starts its
# own controller on loopback, on a temporary state directory and free ports, and stops it (by
# pid) on exit. Installs schemathesis from PyPI into a cached venv the first time; fails if it
# cannot.
#
# Usage: scripts/api-fuzz.sh [extra schemathesis options, e.g. --max-examples 500 --seed 7]
# Environment: L2SM_BIN (the l2sm binary; default: built here), L2SM_FUZZ_VENV (the venv),
# L2SM_FUZZ_TIMEOUT (wall-clock limit in seconds, default 300).
set -euo pipefail
cd "$(dirname "$0")/.."
here="$PWD/scripts/api-fuzz"

# One version everywhere, so a run is reproducible from its seed.
schemathesis_version=4.32.5
venv="${L2SM_FUZZ_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/l2sm-api-fuzz}"
if ! "$venv/bin/schemathesis" --version 2>/dev/null | grep -q " $schemathesis_version\$"; then
    echo "installing schemathesis $schemathesis_version into $venv"
    rm -rf "$venv"
    if ! python3 -m venv "$venv" ||
        ! "$venv/bin/pip" install --quiet "schemathesis==$schemathesis_version"; then
        echo "api-fuzz: cannot install schemathesis $schemathesis_version (needs python3-venv, see scripts/deps.sh, and PyPI)" >&2
        exit 1
    fi
fi

if [[ -n "${L2SM_BIN:-}" ]]; then
    bin="$L2SM_BIN"
else
    cargo build --quiet --locked -p l2sm
    bin="${CARGO_TARGET_DIR:-target}/debug/l2sm"
fi
[[ -x "$bin" ]] || {
    echo "api-fuzz: $bin is not an executable" >&2
    exit 1
}
bin="$(realpath "$bin")"

state="$(mktemp -d)"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
port="$(free_port)"
of_port="$(free_port)"
user=fuzz
password="$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"

L2SM_API_USER="$user" L2SM_API_PASSWORD="$password" "$bin" controller \
    --api-listen "127.0.0.1:$port" --openflow-listen "127.0.0.1:$of_port" --insecure-openflow \
    --state-dir "$state/controller" >"$state/controller.log" 2>&1 &
pid=$!
cleanup() {
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    rm -rf "$state"
}
trap cleanup EXIT

url="http://127.0.0.1:$port/api/v1/openapi.json"
for _ in $(seq 100); do
    curl -sf "$url" >/dev/null && break
    sleep 0.1
done
curl -sf "$url" >/dev/null || {
    echo "api-fuzz: the controller did not serve $url" >&2
    cat "$state/controller.log" >&2
    exit 1
}

# Run from the temporary directory: schemathesis keeps a cache of failures in its working
# directory, which must not land in the repository nor replay an old run.
status=0
(
    cd "$state"
    SCHEMATHESIS_HOOKS="$here/hooks.py" timeout --kill-after=10 "${L2SM_FUZZ_TIMEOUT:-300}" \
        "$venv/bin/schemathesis" --no-color --config-file "$here/schemathesis.toml" run "$url" \
        --auth "$user:$password" --workers 1 --seed 1 --max-examples 50 \
        --generation-database none --request-timeout 15 --max-failures 20 "$@"
) || status=$?
if [[ $status == 124 || $status == 137 ]]; then
    echo "api-fuzz: schemathesis did not finish within ${L2SM_FUZZ_TIMEOUT:-300} s" >&2
fi
# The controller must still be alive after the fuzzing, and must not have panicked.
if ! kill -0 "$pid" 2>/dev/null || grep -q panicked "$state/controller.log"; then
    echo "api-fuzz: the controller died or panicked; its log:" >&2
    tail -n 50 "$state/controller.log" >&2
    exit 1
fi
if [[ $status != 0 ]]; then
    echo "api-fuzz: schemathesis failed (exit $status); the controller's log ends with:" >&2
    tail -n 20 "$state/controller.log" >&2
    exit "$status"
fi
echo "api-fuzz: clean; the controller survived"
