#!/usr/bin/env bash
# Writes docs/PROFILE.md: where the simulator's time goes, beside a raw madsim echo. Counts
# instructions under valgrind's callgrind, which barely move between runs of the same binary and
# seeds, whatever else the machine is doing, where `cargo sim bench`'s wall-clock rates move
# from run to run here. Runs `sim bench --rate-only` twice: once counting only inside
# the harness's runs (sim::run::run_with), once only inside the echo (sim::bench::echo).
# Needs valgrind (Debian: apt-get install valgrind); takes about a minute once the simulator is built.
#
#   bash ci/profile.sh              (rewrites docs/PROFILE.md)
#   SEEDS=2 bash ci/profile.sh      (fewer runs; the default is 5)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

seeds=${SEEDS:-5}
case $seeds in '' | *[!0-9]* | 0*) echo "profile: SEEDS=$seeds is not a number of seeds: give a positive integer, e.g. SEEDS=5" >&2; exit 2 ;; esac
command -v valgrind >/dev/null || { echo "profile: valgrind is missing: install it (Debian: apt-get install valgrind)" >&2; exit 2; }
command -v python3 >/dev/null || { echo "profile: python3 is missing: install it (Debian: apt-get install python3)" >&2; exit 2; }
command -v callgrind_annotate >/dev/null || { echo "profile: callgrind_annotate is missing: it comes with valgrind (apt-get install valgrind)" >&2; exit 2; }

page=docs/PROFILE.md
# The commit the counts are of, taken before the build (the page itself is left out of the check
# for changes).
rev=$(git rev-parse --short HEAD)
[ -z "$(git status --porcelain -- . ":(exclude)$page")" ] || rev="$rev, with uncommitted changes"

cargo build -q --release --locked -p sim --target-dir target/sim --config 'build.rustflags=["--cfg", "madsim"]'
bin=target/sim/release/sim
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Each toggle names one function exactly (both are #[inline(never)]): callgrind flips counting on
# every entry to a matching function, so a pattern that also matched their async blocks would
# switch it off inside them.
for part in harness echo; do
    case $part in
        harness) toggle='sim::run::run_with' ;;
        echo) toggle='sim::bench::echo' ;;
    esac
    valgrind --tool=callgrind --callgrind-out-file="$work/$part.cg" --toggle-collect="$toggle" \
        "$bin" bench --seeds "$seeds" --rate-only >"$work/$part.txt" 2>"$work/$part.err" || {
        tail -5 "$work/$part.err" >&2
        echo "profile: valgrind on the $part run failed (its last lines above): run $bin bench --seeds $seeds --rate-only without valgrind to see why" >&2
        exit 1
    }
    # Every function's own instructions (no threshold): "Ir (pct) file:function [object]".
    callgrind_annotate --auto=no --threshold=100 --tree=caller "$work/$part.cg" >"$work/$part.ann" 2>"$work/$part.annerr" || {
        tail -5 "$work/$part.annerr" >&2
        echo "profile: callgrind_annotate could not read the $part run's counts (its last lines above): check that valgrind and callgrind_annotate are the same version" >&2
        exit 1
    }
done

# Messages each part sent: from the bench's own lines (both runs print them; the harness run's
# are read).
harness_msgs=$(sed -n 's/^ *harness: *[0-9]* ops, \([0-9]*\) messages.*/\1/p' "$work/harness.txt")
echo_msgs=$(sed -n 's/^ *raw echo: *\([0-9]*\) messages.*/\1/p' "$work/harness.txt")
total() { sed -n 's/^ *\([0-9,]*\) .*PROGRAM TOTALS.*/\1/p' "$1" | tr -d ,; }
harness_ir=$(total "$work/harness.ann")
echo_ir=$(total "$work/echo.ann")
[ -n "$harness_msgs" ] && [ -n "$echo_msgs" ] && [ -n "$harness_ir" ] && [ -n "$echo_ir" ] || {
    echo "profile: could not read the counts from $work: the bench's or callgrind_annotate's output changed; update the sed patterns under 'Messages each part sent'" >&2
    trap - EXIT
    exit 1
}

# Reads callgrind_annotate's caller tree on stdin and prints "instructions<TAB>crate<TAB>function"
# for the COUNT functions that cost the most themselves (`functions COUNT`), or the instructions of each group of crates
# (`groups TOTAL`). A function's own instructions count for the crate its symbol names (code
# inlined from a generic function counts for the function it was inlined into), but those of the
# standard library and libc (hashing, formatting, malloc, memcpy) count for the crates whose code
# called them, through any chain of standard-library callers, split among the callers by what
# each call cost.
attribute() { # functions COUNT | groups TOTAL
    python3 -c '
import re, sys
from collections import defaultdict
sys.setrecursionlimit(100000)
mode, total = sys.argv[1], float(sys.argv[2]) if len(sys.argv) > 2 else 0.0
line_re = re.compile(r"^\s*([0-9,]+) \(\s*[0-9.]+%\)  ([<*]) +(.*)$")
def parse(rest):
    obj = ""
    m = re.search(r" \[([^]]*)\]$", rest)
    if m:
        obj, rest = m.group(1), rest[: m.start()]
    rest = re.sub(r" \([0-9,]+x\)$", "", rest)
    return rest.split(":", 1)[1] if ":" in rest.split("::", 1)[0] else rest, obj
def crate(fn, obj):
    s = re.sub(r"^<?&?(mut )?", "", fn)
    m = re.match(r"([A-Za-z_][A-Za-z0-9_]*)::", s)
    if m:
        return m.group(1)
    if re.search(r"libc|ld-linux", obj) or re.match(r"_*(mem|malloc|free|cfree|realloc|clock_gettime|_int_|unlink_chunk)", fn):
        return "libc"
    return "other"
GENERIC = {"core", "alloc", "std", "hashbrown", "libc", "other", "__rustc", "rand", "rand_core"}
own = defaultdict(float)       # function -> its own instructions
callers = defaultdict(lambda: defaultdict(float))  # function -> caller -> cost of the calls
kind = {}
pending = []
for raw in sys.stdin:
    m = line_re.match(raw.rstrip("\n"))
    if not m:
        if not raw.strip():
            pending = []
        continue
    ir, mark, rest = float(m.group(1).replace(",", "")), m.group(2), m.group(3)
    if rest.startswith("PROGRAM TOTALS"):
        continue
    fn, obj = parse(rest)
    kind.setdefault(fn, crate(fn, obj))
    if mark == "<":
        pending.append((fn, ir))
    else:
        own[fn] += ir
        for c, w in pending:
            if c != fn:
                callers[fn][c] += w
        pending = []
if mode == "functions":
    for fn, ir in sorted(own.items(), key=lambda kv: -kv[1])[: int(total)]:
        print(f"{ir:.0f}\t{kind[fn]}\t{fn}")
    sys.exit(0)
# Which crates a generic function works for, as shares summing to 1 (cycles count for the
# generic crate itself).
memo = {}
def shares(fn, seen=()):
    c = kind[fn]
    if c not in GENERIC:
        return {c: 1.0}
    if fn in memo:
        return memo[fn]
    total_w = sum(callers[fn].values())
    if total_w == 0 or fn in seen:
        return {c: 1.0}
    out = defaultdict(float)
    for caller, w in callers[fn].items():
        for k, v in shares(caller, seen + (fn,)).items():
            out[k] += v * w / total_w
    memo[fn] = out
    return out
sums = defaultdict(float)
for fn, ir in own.items():
    for k, v in shares(fn).items():
        sums[k] += ir * v
groups = [
    ("madsim (executor, timers, network, RNG)", lambda c: c in {"madsim", "naive_timer", "async_task", "rand_xoshiro"}),
    ("aside (the library: read, write, fill paths)", lambda c: c == "aside"),
    ("sim (the servers, their messages, runs)", lambda c: c == "sim"),
    ("chaos (workload, nemesis, recorder)", lambda c: c == "chaos"),
    ("invariants (history lines written)", lambda c: c == "invariants"),
    ("tracing (spans)", lambda c: c.startswith("tracing")),
    ("futures_util, tokio (combinators)", lambda c: c in {"futures_util", "futures_core", "tokio", "pin_project_lite"}),
    ("std, libc (for no crate above)", lambda c: c in GENERIC),
]
by_group = defaultdict(float)
for c, ir in sums.items():
    by_group[next((g for g, f in groups if f(c)), "other crates")] += ir
for g, ir in sorted(by_group.items(), key=lambda kv: -kv[1]):
    print(f"{g:<46} {ir:16.0f} {100 * ir / total:6.1f} %")
' "$@"
}
top() { # ANNOTATION TOTAL: the 12 functions that cost the most themselves
    attribute functions 12 <"$1" | awk -F'\t' -v total="$2" '{
        f = $3; if (length(f) > 100) f = substr(f, 1, 97) "..."
        printf "%5.1f %%  %s\n", 100 * $1 / total, f
    }'
}
per_msg() { awk -v ir="$1" -v m="$2" 'BEGIN { printf "%.0f", ir / m }'; }
harness_per=$(per_msg "$harness_ir" "$harness_msgs")
echo_per=$(per_msg "$echo_ir" "$echo_msgs")
attribute groups "$harness_ir" <"$work/harness.ann" >"$work/harness.groups"
attribute groups "$echo_ir" <"$work/echo.ann" >"$work/echo.groups"
# The harness's instructions in madsim, and in everything else (the work the echo does not do).
harness_madsim=$(awk '/^madsim / { print $(NF - 2) }' "$work/harness.groups")
echo_madsim=$(awk '/^madsim / { print $(NF - 2) }' "$work/echo.groups")
[ -n "$harness_madsim" ] && [ -n "$echo_madsim" ] || {
    echo "profile: no madsim line in the attribution of $work's counts: madsim's crate names changed; update the groups in attribute()" >&2
    trap - EXIT
    exit 1
}
echo_own_per=$(per_msg "$((echo_ir - echo_madsim))" "$echo_msgs")
harness_madsim_per=$(per_msg "$harness_madsim" "$harness_msgs")
harness_own_per=$(per_msg "$((harness_ir - harness_madsim))" "$harness_msgs")

{
    echo "# Where the simulator's time goes"
    echo
    echo "Written by \`bash ci/profile.sh\` on $(date -u +%Y-%m-%d) at commit $rev,"
    echo "$(valgrind --version), $(rustc --version). Do not edit: rerun the command."
    echo
    echo "\`cargo sim bench\` compares the harness's message rate with a raw madsim echo's in wall"
    echo "time, which moves from run to run on a busy machine. Here the same two parts"
    echo "(fill-race under \`versioned\`, $seeds seeds, and the echo sending as many messages) are"
    echo "counted in instructions under callgrind, which barely move between runs."
    echo
    echo '```'
    printf '%-44s %16s %10s %14s\n' "part" "instructions" "messages" "per message"
    printf '%-44s %16s %10s %14s\n' "harness (sim::run::run_with)" "$harness_ir" "$harness_msgs" "$harness_per"
    printf '%-44s %16s %10s %14s\n' "raw madsim echo (sim::bench::echo)" "$echo_ir" "$echo_msgs" "$echo_per"
    printf '%-44s %41s\n' "echo / harness, per message" "$(awk -v a="$echo_per" -v b="$harness_per" 'BEGIN { printf "%.2f", a / b }')"
    printf '%-44s %41s\n' "harness: in madsim, per message" "$harness_madsim_per"
    printf '%-44s %41s\n' "harness: in everything else, per message" "$harness_own_per"
    printf '%-44s %41s\n' "echo: in everything else, per message" "$echo_own_per"
    echo '```'
    echo
    awk -v e="$echo_per" -v h="$harness_per" -v o="$harness_own_per" -v eo="$echo_own_per" 'BEGIN {
        t = e / 0.8
        printf "At a rate of 0.8 of the echo'"'"'s, the harness would spend at most %.0f instructions per\n", t
        printf "message: %.0f fewer than now, %.0f %% of what it spends outside madsim (the library, the\n", h - t, 100 * (h - t) / o
        printf "server models, the workload and the history; the echo spends %.0f there), if instructions\n", eo
        printf "stood for time.\n"
    }'
    echo
    echo "## The harness, by crate"
    echo
    echo "Each function's own instructions, by the crate its symbol names (code inlined from a"
    echo "generic function counts for the function it was inlined into). The standard library's and"
    echo "libc's (hashing, formatting, malloc, memcpy) count for the crates whose code called them,"
    echo "through any chain of standard-library callers, split by what each call cost."
    echo
    echo '```'
    cat "$work/harness.groups"
    echo '```'
    echo
    echo "The 12 functions of the harness that cost the most themselves:"
    echo
    echo '```'
    top "$work/harness.ann" "$harness_ir"
    echo '```'
    echo
    echo "## The echo, by crate"
    echo
    echo '```'
    cat "$work/echo.groups"
    echo '```'
} >"$work/page.md"
mv "$work/page.md" "$page"
echo "profile: wrote $page (harness $harness_per instructions per message, echo $echo_per)" >&2
