#!/usr/bin/env bash
# The README's test command: builds everything the tests need (the plugins as .so files are
# built by the tests themselves) and runs the whole suite.
set -euo pipefail
cd "$(dirname "$0")"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
# ../shared (spec, golden vectors, ts_xml) sits beside the repository.
export LOVE_SHARED_DIR="${LOVE_SHARED_DIR:-$(cd .. && pwd)/shared}"
if [ ! -d "$LOVE_SHARED_DIR/ts_xml/sal_interfaces" ]; then
    echo "test.sh: $LOVE_SHARED_DIR/ts_xml/sal_interfaces not found; set LOVE_SHARED_DIR" >&2
    exit 2
fi
# The tests build the example, template and fixture workspaces too; keep their debug info as
# small as the workspace's so a clean run stays well inside a CI machine's disk.
export CARGO_PROFILE_DEV_DEBUG="${CARGO_PROFILE_DEV_DEBUG:-line-tables-only}"
# The SDK's documentation is part of the plugin kit: it must build without a warning.
RUSTDOCFLAGS="-D warnings" cargo doc -p love-plugin-api --no-deps --quiet
cargo test --workspace --no-fail-fast "$@"
