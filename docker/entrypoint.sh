#!/usr/bin/env bash
# Entry point of the SEFM image: run a command with the venv first on PATH.
#
#   docker run IMAGE sefm doctor     ->  sefm doctor
#   docker run IMAGE doctor          ->  sefm doctor   (a first word that is no program, or an option, goes to sefm)
#   docker run IMAGE                 ->  sefm --help
#   docker run -it IMAGE bash        ->  a shell
#
# Nothing needs sourcing: ROS 2 comes from wheels in the venv, whose bootstrapper
# finds the venv's libraries (sefm_interfaces is installed there too).
set -euo pipefail

VENV="${SEFM_VENV:-/sefm/.venv}"
case ":${PATH}:" in
  *":${VENV}/bin:"*) ;;
  *) PATH="${VENV}/bin:${PATH}" ;;
esac
export PATH

if [[ $# -eq 0 ]]; then
  set -- sefm --help
elif [[ "$1" == -* ]] || ! command -v "$1" >/dev/null 2>&1; then
  set -- sefm "$@"
fi
exec "$@"
