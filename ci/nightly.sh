#!/usr/bin/env bash
# Nightly chaos. One night is one folder ($ASIDE_NIGHTLY_OUT, default target/aside/nightly):
# seed logs of failing runs, each shard's results, the containers' runs, and what the triage
# makes of them (results.json, summary.md, shrunk witnesses).
#
#   ci/nightly.sh [SEEDS_PER_CELL]            the whole night on this machine: the simulator
#                                             (every promise over SEEDS seeds, default 200), the
#                                             containers world when ASIDE_NIGHTLY_CONTAINERS=1,
#                                             then the triage against the last night here
#   ci/nightly.sh shard SEEDS_PER_CELL I/N    shard I of N of the simulator's runs (one machine each)
#   ci/nightly.sh containers                  the containers world, release build, 3 runs per cell
#   ci/nightly.sh triage [LAST_RESULTS_JSON]  merge and judge the folder; exit 1 when the night is
#                                             red (a broken promise, or something new since LAST)
#   ci/nightly.sh first-seed                  tonight's first seed (so that every shard runs one window)
#
# The seed window moves with the date (days since the epoch x 1000, or ASIDE_NIGHTLY_FIRST_SEED),
# so each night explores new seeds and a night's seeds can be recomputed from its date. A shard
# starts no run after ASIDE_NIGHTLY_BUDGET_MIN minutes (default 80) and counts the ones it skipped.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

out=${ASIDE_NIGHTLY_OUT:-target/aside/nightly}
budget=${ASIDE_NIGHTLY_BUDGET_MIN:-80}
days=$(( $(date -u +%s) / 86400 ))
first=${ASIDE_NIGHTLY_FIRST_SEED:-$(( days * 1000 ))}
die() { echo "nightly: $*" >&2; exit 2; }
number() { [[ "$2" =~ ^[1-9][0-9]*$ ]] || die "$1 must be a positive number, got '$2'"; }
number ASIDE_NIGHTLY_BUDGET_MIN "$budget"
[[ "$first" =~ ^[0-9]+$ ]] || die "ASIDE_NIGHTLY_FIRST_SEED must be a number, got '$first'"

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo -n "$@"; fi
}

# The simulator's share of the night: its runs, and on shard 1 the checkers' randomised suites
# from tonight's seed, the seeds-to-first-failure figures and the fuzzing budget.
shard() {
    local seeds=$1 which=$2 status=0
    number SEEDS_PER_CELL "$seeds"
    [[ "$which" =~ ^[1-9][0-9]*/[1-9][0-9]*$ ]] || die "the shard is I/N (e.g. 2/4), got '$which'"
    mkdir -p "$out"
    cargo sim nightly --seeds "$seeds" --first-seed "$first" --shard "$which" \
        --out "$out" --budget-min "$budget" || status=1
    if [[ "$which" == 1/* ]]; then
        # Each suite prints its seed; PROPTEST_RNG_SEED=<seed> cargo test -p invariants --test props
        # replays it.
        PROPTEST_RNG_SEED=$first cargo test -q --locked -p invariants --test props || status=1
        cargo sim stf | tee "$out/stf.txt" || status=1
        # Which coverage goals tonight's first 20 seeds of every promise reached (exit 1: a goal
        # no run reached).
        cargo sim coverage --first-seed "$first" --seeds 20 | tee "$out/coverage.md" || status=1
        # Every parser of outside input, 200,000 mutants each from tonight's seed; a crash is saved
        # in $out/fuzz with the command that replays it.
        cargo run -q --release --locked -p aside-fuzz -- --iterations 200000 --seed "$first" \
            --out "$out/fuzz" || status=1
    fi
    return "$status"
}

# The containers world in a release build (a debug build misses hit-latency's bound): every
# cell it runs, three runs each, none started after the budget (the cells left are named),
# written to $out/compare.json for the triage, which holds each cell to the verdict
# docs/results/compare.json records.
containers() {
    as_root bash ci/build-images.sh
    cargo build -q --release --locked -p aside-cli
    mkdir -p "$out"
    ./target/release/aside chaos compare --runs 3 --save "$out/compare.json" \
        --keep "$out/containers" --budget-min "$budget"
}

triage() {
    local last=${1:-}
    local args=("$out")
    [ -n "$last" ] && args+=(--last "$last")
    local status=0
    cargo sim triage "${args[@]}" || status=$?
    # The night as pages: the matrix, and each failure signature's witness as a timeline.
    if [ -f "$out/results.json" ]; then
        cargo run -q --locked -p aside-cli -- report "$out" -o "$out/report" || status=2
    fi
    if [ -n "${GITHUB_STEP_SUMMARY:-}" ] && [ -f "$out/summary.md" ]; then
        cat "$out/summary.md" >>"$GITHUB_STEP_SUMMARY"
    fi
    return "$status"
}

case "${1:-200}" in
    shard) [ $# -eq 3 ] || die "usage: ci/nightly.sh shard SEEDS_PER_CELL I/N"; shard "$2" "$3" ;;
    containers) containers ;;
    triage) triage "${2:-}" ;;
    first-seed) echo "$first" ;;
    *)
        seeds=${1:-200}
        number SEEDS_PER_CELL "$seeds"
        rm -rf "$out"
        status=0
        shard "$seeds" 1/1 || status=1
        if [[ "${ASIDE_NIGHTLY_CONTAINERS:-0}" == 1 ]]; then containers || status=1; fi
        # The last night on this machine is the baseline; tonight's results become the next one's.
        last=target/aside/nightly-last.json
        triage "$last" || status=1
        if [ -f "$out/results.json" ]; then cp "$out/results.json" "$last"; fi
        exit "$status"
        ;;
esac
