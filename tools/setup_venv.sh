#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Create or update the project's virtual environment: pinned CPU torch, the
# ROS 2 Kilted wheels and the rosidl/colcon toolchain, plus the cmake path fix
# the wheels need. Safe to re-run: it does nothing when the stamp matches.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${VENV:-$ROOT/.venv}
REQ=$ROOT/tools/requirements.txt
TORCH_SPEC=$(grep -E "^torch[=<>!~ ]" "$REQ" | head -n1)
STAMP=$VENV/.dynvit_setup_stamp

# The ROS wheels on PyPI are cp311 only.
if [ -z "${PYTHON:-}" ]; then
    if command -v python3.11 >/dev/null 2>&1; then PYTHON=python3.11; else PYTHON=python3; fi
fi

EXTRAS_KEY=$(ls "${DYNVIT_ROS_EXTRAS:-$ROOT/../shared/ros-extras}/wheels" 2>/dev/null || true)
key=$( { cat "$REQ"; cat "${BASH_SOURCE[0]}"; echo "$EXTRAS_KEY"; } | sha256sum | cut -d' ' -f1)
if [ -x "$VENV/bin/python" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$key" ]; then
    echo "setup_venv: $VENV is up to date"
    exit 0
fi

if [ ! -x "$VENV/bin/python" ]; then
    version=$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
    if [ "$version" != "3.11" ]; then
        echo "setup_venv: $PYTHON is Python $version; the ROS 2 Kilted wheels need 3.11 (set PYTHON=...)" >&2
        exit 1
    fi
    echo "setup_venv: creating $VENV"
    "$PYTHON" -m venv "$VENV"
fi

# pip itself never loads ROS libraries, so skip the wheels' re-exec.
export _ROS_WHEELS_BOOTSTRAP_COMPLETE=1
PIP=("$VENV/bin/python" -m pip install --disable-pip-version-check)
# Torch first and pinned: an unpinned torch pulled in by anything else would be
# a multi-GB CUDA build.
"${PIP[@]}" "${TORCH_SPEC:?tools/requirements.txt must pin torch}"
"${PIP[@]}" -r "$REQ"

# launch, launch_ros, launch_testing and friends are not on PyPI: take the
# official wheels from ../shared/ros-extras where that folder exists (their
# interface packages are built by `make build`). On a real ROS install they
# come from the distribution.
EXTRAS=${DYNVIT_ROS_EXTRAS:-$ROOT/../shared/ros-extras}
if compgen -G "$EXTRAS/wheels/*.whl" >/dev/null; then
    echo "setup_venv: installing ROS extras from $EXTRAS/wheels"
    "${PIP[@]}" --no-deps "$EXTRAS"/wheels/*.whl
fi

# Some wheel-installed cmake exports hard-code the wheel builder's Python
# paths; point them at this interpreter's include dir and site-packages.
read -r py_include py_site < <("$VENV/bin/python" -c \
    'import sysconfig as s; p = s.get_paths(); print(p["include"], p["purelib"])')
mapfile -t broken < <(grep -rlE '/opt/python/cp3[0-9]+-cp3[0-9]+/' "$VENV/share" --include='*.cmake' || true)
if [ "${#broken[@]}" -gt 0 ]; then
    echo "setup_venv: fixing Python paths in ${#broken[@]} cmake files"
    sed -i -E \
        -e "s#/opt/python/cp3[0-9]+-cp3[0-9]+/include/python3\.[0-9]+#${py_include}#g" \
        -e "s#/opt/python/cp3[0-9]+-cp3[0-9]+/lib/python3\.[0-9]+/site-packages#${py_site}#g" \
        "${broken[@]}"
fi
if grep -rqE '/opt/python/cp3[0-9]+-cp3[0-9]+/' "$VENV/share" --include='*.cmake'; then
    echo "setup_venv: cmake files still reference /opt/python; the wheels changed layout" >&2
    exit 1
fi

echo "$key" > "$STAMP"
echo "setup_venv: done"
