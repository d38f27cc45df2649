# SPDX-License-Identifier: Apache-2.0
# shellcheck shell=bash
# Source this (bash) to use the project's virtualenv ROS 2 prefix and, when it
# has been built, the colcon install space:  source tools/env.sh
# Safe under `set -euo pipefail` and safe to source twice.

_dynvit_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${VENV:-$_dynvit_root/.venv}
export VENV

_dynvit_prepend() {  # _dynvit_prepend VAR DIR: put DIR first in VAR unless already present
    local current=${!1:-}
    case ":$current:" in
        *":$2:"*) ;;
        *) export "$1=$2${current:+:$current}" ;;
    esac
}

if [ -d "$VENV" ]; then
    export VIRTUAL_ENV=$VENV
    _dynvit_prepend PATH "$VENV/bin"
    # The wheels' bootstrapper re-executes every Python start to set
    # LD_LIBRARY_PATH unless this is done beforehand.
    for _dynvit_libs in "$VENV"/lib/python3.*/site-packages/ros_*.libs; do
        if [ -d "$_dynvit_libs" ]; then _dynvit_prepend LD_LIBRARY_PATH "$_dynvit_libs"; fi
    done
    _dynvit_prepend LD_LIBRARY_PATH "$VENV/lib"
    export _ROS_WHEELS_BOOTSTRAP_COMPLETE=1
    _dynvit_prepend AMENT_PREFIX_PATH "$VENV"
    _dynvit_prepend CMAKE_PREFIX_PATH "$VENV"
    unset _dynvit_libs
fi

if [ -f "$_dynvit_root/install/setup.bash" ]; then
    # colcon's setup scripts read unset variables.
    case $- in *u*) _dynvit_had_u=1; set +u ;; *) _dynvit_had_u=0 ;; esac
    # shellcheck disable=SC1091
    source "$_dynvit_root/install/setup.bash"
    if [ "$_dynvit_had_u" = 1 ]; then set -u; fi
    unset _dynvit_had_u
fi
unset _dynvit_root
unset -f _dynvit_prepend
