#!/usr/bin/env bash
# The README's run command: build love-host and its plugins (release) and run them on the
# built-in SAL simulator. Without a manager URL the messages go to standard output as JSON
# lines. Extra arguments are passed on (e.g. --manager-url, or --xml-dir DIR for a newer ts_xml
# than the built-in catalog's).
set -euo pipefail
cd "$(dirname "$0")"
.ci/system-deps
cargo build --release --workspace --quiet
exec target/release/love-host --plugin-dir target/release --components Watcher ScriptQueue:1 ATDome "$@"
