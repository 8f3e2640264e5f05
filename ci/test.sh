#!/usr/bin/env bash
# The README's test command: installs and starts what it needs, then runs every suite:
# the std build (unit, property, oracle tests), the container tests against real Redis,
# Sentinel, memcached and PostgreSQL, the sim build (madsim), and smoke runs of the benchmarks.
# Runs as root on CI (`.ci/run`); safe to rerun anywhere.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# Each step says when it began, in seconds since the command did: where the time goes.
step() { printf '\n==> [%d s] %s\n' "$SECONDS" "$*" >&2; }
die() { echo "test: $*" >&2; exit 2; }

# Incremental compilation keeps caches for the next build of a crate that changed: this command
# builds each crate once, and writing them cost time and disk (set CARGO_INCREMENTAL=1 to keep it).
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"

command -v cargo >/dev/null 2>&1 || die "cargo not found: install Rust with rustup (https://rustup.rs)"
command -v docker >/dev/null 2>&1 || die "docker not found: install docker.io (the container tests need it)"
docker version --format '{{.Server.Version}}' >/dev/null 2>&1 || die "docker is not reachable: start the Docker engine (systemctl start docker)"

step "host tools (redis-benchmark for the throughput comparison, promtool for the alerting rules, chromium for the report's browser test)"
# Debian's packages: redis-tools has redis-benchmark, prometheus has promtool, chromium draws
# the report pages. A hosted CI runner's user is not root but has passwordless sudo.
as_root=()
if [ "$(id -u)" -ne 0 ] && sudo -n true 2>/dev/null; then as_root=(sudo -n); fi
can_install() { [ "$(id -u)" -eq 0 ] || [ "${#as_root[@]}" -gt 0 ]; }
apt_install() {
    local install=("${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@")
    "${install[@]}" >/dev/null \
        || { "${as_root[@]}" apt-get update -q >/dev/null && "${install[@]}" >/dev/null; }
}
missing=()
command -v redis-benchmark >/dev/null 2>&1 || missing+=(redis-tools)
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
if [ "${#missing[@]}" -gt 0 ]; then
    if can_install; then
        apt_install "${missing[@]}" || die "could not install ${missing[*]} from Debian's packages"
    else
        echo "test: ${missing[*]} missing and not root: the bench runs redis-benchmark inside the container, and the alerting rules are checked without promtool" >&2
    fi
fi
# chromium on its own: where no package provides it (Ubuntu's is a snap stub), the browser test
# says so and passes instead of the whole command failing.
if ! command -v chromium >/dev/null 2>&1; then
    if ! can_install || ! apt_install chromium; then
        echo "test: chromium could not be installed: the report's browser test is skipped" >&2
    fi
fi
# Where promtool is here (CI: always, as root), the alerting rules' test fails without it
# instead of skipping it.
if command -v promtool >/dev/null 2>&1; then export ASIDE_REQUIRE_PROMTOOL=1; fi
# Likewise the report's screenshots in headless Chromium (cli/src/report_cmd/browser_tests.rs).
if command -v chromium >/dev/null 2>&1; then export ASIDE_REQUIRE_CHROMIUM=1; fi

step "offline image (Redis, Sentinel, memcached, PostgreSQL from Debian packages)"
if [ "$(id -u)" -eq 0 ]; then bash ci/build-images.sh; else sudo bash ci/build-images.sh; fi

step "format"
cargo fmt --all -- --check
step "workflow lint (actionlint, ShellCheck on run: blocks)"
bash ci/actionlint.sh
step "lints (std build)"
cargo clippy --workspace --all-targets --locked -- -D warnings
step "tests (std build: unit, property, oracle; container tests and model conformance against real servers)"
cargo test --workspace --locked
step "lints (sim build, --cfg madsim)"
cargo sim-clippy
step "tests (sim build): every promise of the scenario files and the generated tables, versioned on 500 seeds, determinism, replay, a user's scenario file, bad input"
cargo sim-test --locked
# The main job's runs (every cell over seeds 1-20) are sim/tests/table.rs's, judged the same
# way: here its command runs end to end on two scenarios, and on a user's file.
step "the main job's command (exit 0: every promise held) on two scenarios, and a user's scenario file"
cargo sim --scenario redis-failover --scenario swarm
cargo sim --scenario-file examples/scenarios/failover-under-pause.toml
# Seeds 1-20 of every durable cell ran in sim/tests/table.rs.
# Seeds 101-200 are a longer campaign (as long again): `cargo sim matrix --strategy
# durable --seeds 200` before a change lands, and the nightly job's fresh seeds every night.
step "durable holds every scenario over seeds 21-100 (cargo sim matrix exits 1 on a broken promise)"
cargo sim matrix --strategy durable --first-seed 21 --seeds 80
step "bench smoke runs (figures only; a bench never fails on speed): ci/benchmarks.sh --quick"
bash ci/benchmarks.sh --quick
step "no container left behind"
left=$(docker ps -aq --filter label=aside.run | wc -l)
[ "$left" -eq 0 ] || { docker ps -a --filter label=aside.run >&2; die "$left test container(s) left behind"; }
echo "all tests passed in $SECONDS s" >&2
