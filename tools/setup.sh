#!/usr/bin/env bash
# One-command, idempotent setup of the SEFM development environment.
#
#   apt packages  ->  .venv (Python 3.11)  ->  pinned pip packages
#   ->  colcon build of sefm_interfaces (installed into .venv as well)
#   ->  the SEFM Python packages in development mode
#
# Each step is skipped when its inputs have not changed since the last run
# (hashes under .venv/.sefm-setup/). Safe to run again at any time.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${SEFM_VENV:-$ROOT/.venv}"
PYTHON="${SEFM_PYTHON:-python3.11}"
STAMPS="$VENV/.sefm-setup"
WS="$ROOT/ros2_ws"
APT_PACKAGES=(cmake g++ make libegl1 libegl-mesa0 libgl1-mesa-dri libosmesa6)
PY_PACKAGES=(sefm_core sefm_ros sefm_sim sefm_sim_bridge sefm_drivers sefm_policy sefm_reward sefm_trainer sefm_bags sefm_bringup sefm_cli sefm_station)

T0=$(date +%s)
step() { printf '\n[setup %3ss] %s\n' "$(( $(date +%s) - T0 ))" "$*"; }
die() { printf '\n[setup] ERROR: %s\n' "$*" >&2; exit 1; }

hash_of() { { cat "$@" 2>/dev/null || true; } | sha256sum | cut -d" " -f1; }  # (missing files hash as absent)
fresh() { [[ -f "$STAMPS/$1" && "$(cat "$STAMPS/$1")" == "$2" ]]; }
mark() { mkdir -p "$STAMPS"; echo "$2" > "$STAMPS/$1"; }

# --- 1. system packages --------------------------------------------------------
step "system packages: ${APT_PACKAGES[*]}"
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if (( ${#missing[@]} )); then
  if [[ $(id -u) -ne 0 ]] && ! command -v sudo >/dev/null; then
    die "missing apt packages: ${missing[*]} (run as root, or install them first)"
  fi
  SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO="sudo"
  echo "installing: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  echo "all present"
fi

# --- 2. virtual environment ----------------------------------------------------
step "virtual environment: $VENV"
if [[ ! -x "$VENV/bin/python" ]]; then
  command -v "$PYTHON" >/dev/null || die "$PYTHON not found (set SEFM_PYTHON to a Python 3.11 interpreter)"
  "$PYTHON" -c 'import sys; assert sys.version_info[:2] == (3, 11), sys.version' \
    || die "the ROS 2 Kilted wheels are cp311: $PYTHON must be Python 3.11"
  "$PYTHON" -m venv "$VENV"
  echo "created"
else
  echo "exists ($("$VENV/bin/python" --version))"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)
# pip, minus the noise of this machine's optional local indexes; keeps pip's exit status.
pip_q() { "${PIP[@]}" "$@" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2); }

# --- 3. pinned pip packages ----------------------------------------------------
REQ_HASH=$(hash_of "$ROOT"/requirements/*.txt)
step "pip packages (requirements/ros.txt, requirements/base.txt, pinned by requirements/constraints.txt)"
if fresh pip "$REQ_HASH"; then
  echo "up to date"
else
  pip_q install -q -r "$ROOT/requirements/ros.txt" -r "$ROOT/requirements/base.txt" \
    -c "$ROOT/requirements/constraints.txt"
  "$VENV/bin/python" -c 'import torch, rclpy, mujoco' || die "pip install did not produce a working environment"
  mark pip "$REQ_HASH"
  rm -f "$STAMPS/interfaces"  # new wheels: rebuild the interfaces against them
fi

# --- 4. interface packages (ament_cmake, built with colcon) -------------------
# sefm_interfaces (the learning layer) and interbotix_xs_msgs (the vendor's X-Series driver contract)
IF_PACKAGES=(interbotix_xs_msgs sefm_interfaces)
IF_HASH=$(hash_of $(for p in "${IF_PACKAGES[@]}"; do echo "$ROOT/src/$p/CMakeLists.txt" "$ROOT/src/$p/package.xml" \
  "$ROOT"/src/$p/msg/*.msg "$ROOT"/src/$p/srv/*.srv; done))
IF_IMPORT="import interbotix_xs_msgs.msg, interbotix_xs_msgs.srv, sefm_interfaces.msg, sefm_interfaces.srv"
step "interfaces (${IF_PACKAGES[*]}): colcon build in ros2_ws/, install into the venv"
if fresh interfaces "$IF_HASH" && "$VENV/bin/python" -c "$IF_IMPORT" 2>/dev/null; then
  echo "up to date"
else
  # The wheels' CMake exports name their build container's Python; point them at ours.
  "$VENV/bin/python" "$ROOT/tools/fix_wheel_cmake_paths.py" "$VENV"
  [[ -e "$WS/src" ]] || ln -s ../src "$WS/src"
  for p in "${IF_PACKAGES[@]}"; do rm -rf "$WS/build/$p" "$WS/install/$p"; done
  (
    cd "$WS"
    export PATH="$VENV/bin:$PATH" CMAKE_PREFIX_PATH="$VENV" AMENT_PREFIX_PATH="$VENV" MAKEFLAGS="-j$(nproc)"
    colcon --log-base "$WS/log" build --packages-select "${IF_PACKAGES[@]}" \
      --event-handlers console_cohesion- status- \
      --cmake-args -DPython3_EXECUTABLE="$VENV/bin/python" -DBUILD_TESTING=OFF >"$WS/colcon_build.log" 2>&1 \
      || { tail -40 "$WS/colcon_build.log"; die "colcon build failed (full log: ros2_ws/colcon_build.log)"; }
    # The same builds, installed into the venv: the ROS wheels' bootstrapper puts
    # $VENV/lib on LD_LIBRARY_PATH, so nothing needs to be sourced to import them.
    for p in "${IF_PACKAGES[@]}"; do cmake --install "$WS/build/$p" --prefix "$VENV" >/dev/null; done
  )
  "$VENV/bin/python" -c "$IF_IMPORT" || die "the interfaces built but do not import"
  mark interfaces "$IF_HASH"
  for p in "${IF_PACKAGES[@]}"; do
    echo "built $p ($(ls "$ROOT"/src/$p/msg | wc -l) messages, $(ls "$ROOT"/src/$p/srv | wc -l) services)"
  done
fi

# --- 5. SEFM Python packages (development mode) --------------------------------
PKG_HASH=$(hash_of $(for p in "${PY_PACKAGES[@]}"; do echo "$ROOT/src/$p/setup.py" "$ROOT/src/$p/setup.cfg" "$ROOT/src/$p/package.xml"; done) \
  "$ROOT/experiments/pyproject.toml" "$ROOT"/src/sefm_bringup/launch/*.launch.py "$ROOT"/src/sefm_bringup/config/*.yaml)
step "SEFM Python packages (editable): ${PY_PACKAGES[*]} and experiments/"
if fresh packages "$PKG_HASH" && "$VENV/bin/python" -c 'import sefm_core, sefm_cli, sefm_experiments' 2>/dev/null; then
  echo "up to date"
else
  args=()
  for p in "${PY_PACKAGES[@]}"; do args+=(-e "$ROOT/src/$p"); done
  args+=(-e "$ROOT/experiments")
  pip_q install -q --no-deps --no-build-isolation "${args[@]}"
  # sefm_cli owns the `sefm` script: installed last, so no reinstall of an older layout removes it
  pip_q install -q --no-deps --no-build-isolation --force-reinstall -e "$ROOT/src/sefm_cli"
  "$VENV/bin/sefm" --help >/dev/null || die "the sefm command did not install"
  mark packages "$PKG_HASH"
fi

step "done in $(( $(date +%s) - T0 )) s. Next: make test, or .venv/bin/sefm doctor"
