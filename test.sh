#!/usr/bin/env bash
# The README's test command: builds everything the tests need (the plugins as .so files are
# built by the tests themselves) and runs the whole suite.
set -euo pipefail
cd "$(dirname "$0")"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
.ci/system-deps
# The suite carries its own data (tests/golden, the built-in topic catalog). Given a ts_xml
# checkout it also checks the built-in catalog against it; without one those tests skip.
if [ -n "${LOVE_TS_XML_DIR:-}" ]; then
    echo "test.sh: the built-in topic catalog is checked against ts_xml at $LOVE_TS_XML_DIR"
else
    echo "test.sh: no ts_xml directory (set LOVE_TS_XML_DIR): the tests comparing the built-in topic catalog with ts_xml skip"
fi
# The tests build the example, template and fixture workspaces too; keep their debug info as
# small as the workspace's so a clean run stays well inside a CI machine's disk.
export CARGO_PROFILE_DEV_DEBUG="${CARGO_PROFILE_DEV_DEBUG:-line-tables-only}"
# The SDK's documentation is part of the plugin kit: it must build without a warning.
RUSTDOCFLAGS="-D warnings" cargo doc -p love-plugin-api --no-deps --quiet
# The host's modules must not import each other in a circle.
.ci/module-cycles
cargo test --workspace --no-fail-fast "$@"
