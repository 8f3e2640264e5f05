#!/usr/bin/env bash
# Nightly chaos: every promise of the results table (sim/src/expect.rs) over a window of seeds
# that moves with the date, so each night explores new ones; one seed per process (madsim's
# statics leak between seeds in one process). Every failure is listed with the command that
# replays it; seed logs land in target/aside/failures/. Exit 1 when a promise breaks: a strategy
# fails where the table says it holds, or the harness stops finding what the table says it finds.
#
#   ci/nightly.sh [SEEDS_PER_CELL]       (default 200)
#
# With ASIDE_NIGHTLY_CONTAINERS=1 (a runner with Docker and root or sudo) it also runs every
# scenario the containers world runs, three times per strategy, beside the simulator's promise
# (`aside chaos compare`), and fails when the two worlds disagree.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

seeds=${1:-200}
[[ "$seeds" =~ ^[1-9][0-9]*$ ]] || { echo "nightly: SEEDS_PER_CELL must be a positive number, got '$seeds'" >&2; exit 2; }
# Days since the epoch x 1000: a fresh window every night, and the seeds of a failing night can be
# recomputed from its date.
first=$(( $(date -u +%s) / 86400 * 1000 ))
status=0
# The checkers' randomised suites, from tonight's seed instead of the test command's fixed one
# (each prints its seed; PROPTEST_RNG_SEED=<seed> cargo test -p invariants --test props replays).
PROPTEST_RNG_SEED=$first cargo test -q --locked -p invariants --test props || status=1
cargo sim nightly --seeds "$seeds" --first-seed "$first" || status=1
# How many seeds each finding takes to show, without and with BUGGIFY (figures, not a gate).
cargo sim stf || status=1
if [[ "${ASIDE_NIGHTLY_CONTAINERS:-0}" == 1 ]]; then
    bash ci/build-images.sh
    cargo run -q --locked -p aside-cli -- chaos compare --runs 3 || status=1
fi
exit "$status"
