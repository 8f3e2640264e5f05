#!/usr/bin/env bash
# Writes docs/BENCHMARKS.md: every benchmark of the project run once, side by side, on this
# machine, with the machine and the commit named. Each figure is printed by a bench beside its
# reference, measured in the same run (the machine is noisy: only ratios travel). Needs Docker
# and the offline image for the tiers bench (ci/build-images.sh); takes about ten minutes.
#
#   bash ci/benchmarks.sh            (rewrites docs/BENCHMARKS.md)
#   bash ci/benchmarks.sh --quick    (the benches' smoke runs, to a file under target/: the test
#                                     command's, so the script cannot rot)
# Exit 1 when a bench did not finish (its page says how); never on speed.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

quick=()
page=docs/BENCHMARKS.md
if [ "${1:-}" = --quick ]; then
    quick=(--quick)
    page=target/aside/BENCHMARKS.quick.md
    mkdir -p target/aside
fi
sim_seeds=20
explore_runs=1000
# The smoke runs of the benches reuse the test command's debug build (release builds of the
# tiers' and the report's dependencies cost minutes there, and a smoke run's figures are not
# read); the full run's are release builds.
profile=()
[ ${#quick[@]} -eq 0 ] || { sim_seeds=5; explore_runs=48; profile=(--profile dev); }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failed=0

run() { # NAME COMMAND...: the command's stdout, or the reason it could not run
    local name=$1
    shift
    echo "benchmarks: $name: $*" >&2
    local started=$SECONDS
    if "$@" >"$work/$name.out" 2>"$work/$name.err"; then
        echo "benchmarks: $name took $(( SECONDS - started )) s" >&2
    else
        local code=$?
        failed=1
        { echo "(did not finish: exit $code; the last lines it wrote to stderr follow)"; tail -n 5 "$work/$name.err"; } >>"$work/$name.out"
        echo "benchmarks: $name did not finish (exit $code): see $page" >&2
    fi
}

run checkers cargo bench -q --locked "${profile[@]}" -p invariants --bench staleness -- "${quick[@]}"
run tiers cargo bench -q --locked "${profile[@]}" -p containers --bench tiers -- "${quick[@]}"
run report cargo bench -q --locked "${profile[@]}" -p aside-cli --bench report -- "${quick[@]}"
run simulator cargo sim bench --seeds "$sim_seeds" --explore-runs "$explore_runs"

cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//' || echo unknown)
{
    echo "# Benchmarks"
    echo
    echo "Written by \`bash ci/benchmarks.sh\` on $(date -u +%Y-%m-%d) at commit $(git rev-parse --short HEAD),"
    echo "on $(nproc) cores ($cpu), $(rustc --version). Do not edit: rerun the command."
    echo "Every figure stands beside the reference it was measured against in the same run; on"
    echo "another machine the absolute figures move and the ratios are what to compare."
    echo
    echo "## Checkers (\`cargo bench -p invariants --bench staleness\`)"
    echo
    echo "Histories from the sequential model, whose staleness is known, checked on one core: the"
    echo "staleness checker alone and all checkers together; peak heap by a counting allocator; how"
    echo "the figures move when ops or keys grow."
    echo
    echo '```'
    cat "$work/checkers.out"
    echo '```'
    echo
    echo "## The library against real servers (\`cargo bench -p containers --bench tiers\`)"
    echo
    echo "An L1 hit beside a raw Redis GET, the miss path's round trips, throughput beside"
    echo "redis-benchmark, \`durable\` beside \`versioned\`, the chaos proxy's hop, typed values' codec,"
    echo "pattern invalidation: each interleaved call by call with its reference."
    echo
    echo '```'
    cat "$work/tiers.out"
    echo '```'
    echo
    echo "## Report pages (\`cargo bench -p aside-cli --bench report\`)"
    echo
    echo "\`aside report\` on generated histories beside \`aside check\` on the same file (the two"
    echo "checks bracket the page), each stale read a witness the page must ring: what the page costs"
    echo "over the verdicts, and how it grows with the ops."
    echo
    echo '```'
    cat "$work/report.out"
    echo '```'
    echo
    echo "## The simulator (\`cargo sim bench --seeds $sim_seeds --explore-runs $explore_runs\`)"
    echo
    echo "Simulated ops per wall second and time compression, beside a raw madsim echo with the"
    echo "same message count, then the busiest scenario; then the coverage goals that runs of"
    echo "\`durable\` reach per 1,000 runs with the \`random\` scenario's plans, with swarm plans,"
    echo "and with swarm plans guided by the goals rare so far (\`cargo sim explore\`)."
    echo
    echo '```'
    cat "$work/simulator.out"
    echo '```'
} >"$page"
echo "benchmarks: wrote $page" >&2
# A bench never fails on speed; one that crashed fails the command, after the page says how.
exit "$failed"
