#!/usr/bin/env bash
# Property-based fuzzing of the controller's REST API with schemathesis, driven by the OpenAPI
# document the controller serves. Starts its own controller on a temporary state directory
# and free ports, and stops it (by pid) on exit. Not part of CI: it needs PyPI and takes a
# while. Two rules the schema cannot express are known to show up as "schema-valid request
# rejected": podRanges/exclude without cidrs, and address strings that only look like CIDRs.
# Usage: scripts/api-fuzz.sh [extra schemathesis options, e.g. --max-examples 50]
set -euo pipefail
cd "$(dirname "$0")/.."

venv="${L2SM_FUZZ_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/l2sm-api-fuzz}"
if [[ ! -x "$venv/bin/schemathesis" ]]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet 'schemathesis>=4,<5'
fi

cargo build --quiet -p l2sm
bin="${CARGO_TARGET_DIR:-target}/debug/l2sm"
state="$(mktemp -d)"
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
of_port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
user=fuzz
password="$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"

L2SM_API_USER="$user" L2SM_API_PASSWORD="$password" "$bin" controller \
    --api-listen "127.0.0.1:$port" --openflow-listen "127.0.0.1:$of_port" --insecure-openflow \
    --state-dir "$state" >"$state/controller.log" 2>&1 &
pid=$!
cleanup() {
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    rm -rf "$state"
}
trap cleanup EXIT

for _ in $(seq 100); do
    curl -sf "http://127.0.0.1:$port/api/v1/openapi.json" >/dev/null && break
    sleep 0.1
done

# The upstream contract answers 500 to some client errors (missing or malformed endpoints, a
# port that is not a member), as documented; whether each status is documented is still
# checked (status_code_conformance), and a crash would show as a connection error.
"$venv/bin/schemathesis" run "http://127.0.0.1:$port/api/v1/openapi.json" \
    --auth "$user:$password" --checks all --exclude-checks not_a_server_error "$@"
# The controller must still be alive after the fuzzing.
kill -0 "$pid"
echo "controller survived"
