#!/usr/bin/env bash
# Tests that must also pass with other releases of our dependencies than .venv's newest ones.
#
#  1. The Cosmos-Transfer1 image's pins (scripts/ci/cosmos-image-pins.txt: mistral-common 1.5.4,
#     pydantic 2.10.6, numpy 2.2.6, av 14.2.0, transformers 4.49.0): the token counts and the planner
#     (tokens counted with the image's mistral-common equal ours), video decoding, the vllm engine's
#     own logic, and the hf engine's one-line refusal of transformers 4.49.
#  2. The lowest transformers the hf extra allows (its lower bound in pyproject.toml), with CPU
#     torch: the tiny-model tests of the hf engine, the checkpoint converter and the tiny model (not
#     the races between its builders: those test a file lock).
#
# The newest releases are .venv's (scripts/setup.sh), which the main test run uses. Each environment
# here is built once under .cache/ci/ and rebuilt when what it is made from changes. CI's Python is
# 3.11; the image's is 3.12. Called by scripts/check.sh on a full run.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
CACHE=.cache/ci
# the same CPU torch as scripts/setup.sh
TORCH=${TORCH:-torch==2.13.0}
mkdir -p "$CACHE"

pytest_in() { # VENV TEST...
    local venv=$1
    shift
    echo "== $(basename "$venv"): $("$venv/bin/python" -m pip list --format=freeze 2>/dev/null |
        grep -iE '^(mistral.common|pydantic|numpy|av|transformers|torch)==' | tr '\n' ' ')" >&2
    "$venv/bin/python" -m pytest -q -p no:cacheprovider -n logical --dist loadgroup "$@"
}

# 1. the image: its pins, then cosmos-workflow (editable: the checkout's code as it is) and pytest on
#    top, the pins kept; installed again only when what it is made from changes (pip takes 10-20 s
#    even when nothing is to do: it builds the editable wheel)
image=$(bash scripts/ci/image_venv.sh "$CACHE/image-venv")
want="$(cat pyproject.toml scripts/ci/cosmos-image-pins.txt "$image/.pins-stamp" | sha256sum | cut -d' ' -f1)"
here=$("$image/bin/python" -I -c "import cosmos_workflow; print(cosmos_workflow.__file__)" 2>/dev/null || true)
if [ "$(cat "$image/.install-stamp" 2>/dev/null)" != "$want" ] || [ "$here" != "$PWD/cosmos_workflow/__init__.py" ]; then
    "$image/bin/python" -m pip install -q -c scripts/ci/cosmos-image-pins.txt -e . pytest pytest-timeout pytest-xdist >&2
    echo "$want" >"$image/.install-stamp"
fi
pytest_in "$image" tests/unit/test_planner.py tests/unit/test_token_counts.py tests/unit/test_versions.py \
    tests/unit/test_engine_vllm.py tests/unit/test_media_sampling.py tests/integration/test_media.py

# 2. the hf extra's lowest transformers
floor=$("$PY" - <<'EOF'
import re, tomllib
(spec,) = [s for s in tomllib.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"]["hf"]
           if s.startswith("transformers")]
print(re.search(r">=\s*([\d.]+)", spec).group(1))
EOF
)
hf="$CACHE/hf-floor-venv"
want="$(cat pyproject.toml <(echo "$TORCH transformers==$floor") <(python3 -VV) | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$hf/.stamp" 2>/dev/null)" != "$want" ]; then
    rm -rf "$hf"
    python3 -m venv "$hf"
    "$hf/bin/python" -m pip install -q "$TORCH" >&2
    "$hf/bin/python" -m pip install -q -e ".[dev]" "transformers==$floor" >&2
    echo "$want" >"$hf/.stamp"
fi
# test_tiny.py's races between builders (four more builds) test the cache's lock and rename, which
# no transformers release changes; its other tests build the model with this one
pytest_in "$hf" tests/unit/test_engine_hf.py tests/unit/test_engine_hf_speed.py tests/unit/test_engine_hf_auto.py \
    tests/unit/test_versions.py tests/integration/test_engine_hf_model.py \
    tests/integration/test_engine_hf_speed_model.py tests/integration/test_shared_prefix_model.py \
    tests/integration/test_tiny_shared_prefix_run.py \
    tests/unit/test_shared_prefix.py tests/integration/test_tiny.py \
    tests/integration/test_tiny_auto.py tests/integration/test_checkpoint.py \
    --deselect tests/integration/test_tiny.py::test_concurrent_builders_agree_on_one_complete_checkpoint \
    --deselect tests/integration/test_tiny.py::test_a_builder_that_loses_the_race_uses_the_winners_copy
