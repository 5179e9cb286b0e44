#!/usr/bin/env bash
# The "remote" interpreter of the venv-mode tests: a venv owned by the test user of
# scripts/ci/sshd.sh, at ~cosmos-test/venv, holding what a GPU host's environment would
# (CPU torch, transformers and the project's dependencies) but not cosmos-workflow itself:
# the remote executor installs its own wheel there. Idempotent. Prints the interpreter's path.
set -euo pipefail
cd "$(dirname "$0")/../.."

TEST_USER=${COSMOS_SSHD_USER:-cosmos-test}
HOME_DIR=$(getent passwd "$TEST_USER" | cut -d: -f6)
VENV=$HOME_DIR/venv
as_user() { runuser -u "$TEST_USER" -- env HOME="$HOME_DIR" "$@"; }

REQUIREMENTS=$(mktemp)
trap 'rm -f "$REQUIREMENTS"' EXIT
python3 - pyproject.toml >"$REQUIREMENTS" <<'PY'
import sys, tomllib
project = tomllib.load(open(sys.argv[1], "rb"))["project"]
wanted = project["dependencies"] + project["optional-dependencies"]["hf"]
print("\n".join(r for r in wanted if not r.startswith("torch")))
PY
chmod 644 "$REQUIREMENTS"
STAMP=$VENV/.requirements.sha256
WANT=$(sha256sum "$REQUIREMENTS" | cut -c1-64)
if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$WANT" ]]; then
    echo "$VENV/bin/python"
    exit 0
fi
[[ -x "$VENV/bin/python" ]] || as_user python3 -m venv "$VENV"
as_user "$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null
# CPU torch, as scripts/setup.sh installs it (never a bare torch requirement)
as_user "$VENV/bin/python" -m pip install -q torch==2.13.0 >/dev/null
as_user "$VENV/bin/python" -m pip install -q -r "$REQUIREMENTS" >/dev/null
echo "$WANT" | as_user tee "$STAMP" >/dev/null
echo "$VENV/bin/python"
