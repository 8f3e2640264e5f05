#!/usr/bin/env bash
# The README's test command: everything a fresh machine needs, then every test suite.
# Runs as root on CI (`.ci/run`); safe to rerun anywhere.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

step() { printf '\n==> %s\n' "$*" >&2; }

command -v cargo >/dev/null 2>&1 || { echo "test: cargo not found: install Rust with rustup (https://rustup.rs)" >&2; exit 2; }

step "format"
cargo fmt --all -- --check
step "lints (std build)"
cargo clippy --workspace --all-targets --locked -- -D warnings
step "tests (std build)"
cargo test --workspace --locked
step "bench smoke run (figures only; a bench never fails on speed)"
cargo bench -p invariants --bench staleness --locked -- --quick
