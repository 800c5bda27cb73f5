#!/usr/bin/env bash
# Install the detection stack (mmcv 2.1.0 with compiled ops, mmengine, mmdet 3.3.0) into a venv.
#
# Usage: scripts/setup_detection.sh [VENV] [--wheel-only] [--cuda]   (VENV defaults to .venv)
#        --wheel-only: only make sure the cached mmcv wheel exists (build it if absent).
#        --cuda (or QBENCH_MMCV_CUDA=1): build mmcv's ops for CUDA as well (FORCE_CUDA=1), for
#            training SSD on GPUs (the paper scale, docs/cluster.md). Needs nvcc (on PATH or in
#            $CUDA_HOME/bin) of the CUDA version the venv's torch was built for; set
#            TORCH_CUDA_ARCH_LIST (e.g. "8.0;9.0") on a build node without GPUs. Without it the
#            build is CPU-only: the default, so `make setup` stays as fast as before.
#
# PyPI only has mmcv's sdist, so the first run on a machine builds an mmcv wheel (CPU ops:
# about 15-25 minutes on 2 cores; with CUDA ops considerably longer) and keeps it in
# $QBENCH_CACHE/wheels (default ~/.cache/qbench/wheels), one directory per torch, python and
# cpu/cuXYZ; later runs, and fresh clones on the same machine, install that wheel.
# The build runs in a throwaway helper venv that sees the target venv's torch through a .pth
# file, with setuptools<81 (mmcv's setup.py imports pkg_resources) and without build isolation
# (it must compile against the installed torch). mmcv 2.1.0 passes -std=c++17, which current
# torch headers reject, so the unpacked sdist is patched to -std=c++20 before building.
# Idempotent: when everything is installed at the pinned versions (and, with --cuda, mmcv has
# CUDA ops) it installs nothing.
set -euo pipefail

MMCV_VERSION=2.1.0
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv=.venv
wheel_only=0
cuda="${QBENCH_MMCV_CUDA:-0}"
for arg in "$@"; do
    case "$arg" in
        --wheel-only) wheel_only=1 ;;
        --cuda) cuda=1 ;;
        -*) echo "[setup_detection] ERROR: unknown option $arg" >&2; exit 2 ;;
        *) venv="$arg" ;;
    esac
done
py="$venv/bin/python"
reqs="$here/requirements/detection.txt"
cache="${QBENCH_CACHE:-$HOME/.cache/qbench}"

say() { echo "[setup_detection] $*"; }
die() { echo "[setup_detection] ERROR: $*" >&2; exit 1; }

[ -x "$py" ] || die "no python at $py (create the venv first, or pass its path as \$1)"
[ -f "$reqs" ] || die "missing $reqs"
torch_version="$("$py" -c 'import torch; print(torch.__version__)' 2>/dev/null)" \
    || die "torch is not importable from $py; the detection stack builds against it"
pytag="$("$py" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')"
variant=cpu
if [ "$cuda" = 1 ]; then
    torch_cuda="$("$py" -c 'import torch; print(torch.version.cuda or "")')"
    [ -n "$torch_cuda" ] || die "--cuda: the venv's torch $torch_version has no CUDA support; install a CUDA build of torch first"
    nvcc="$(command -v nvcc || true)"
    [ -n "$nvcc" ] || { [ -n "${CUDA_HOME:-}" ] && [ -x "$CUDA_HOME/bin/nvcc" ] && nvcc="$CUDA_HOME/bin/nvcc"; } \
        || die "--cuda: nvcc not found (put the CUDA $torch_cuda toolkit's bin on PATH or set CUDA_HOME)"
    say "CUDA ops: torch built for CUDA $torch_cuda, nvcc $nvcc ($("$nvcc" --version | grep -o 'release [0-9.]*' || echo '?'))"
    variant="cu${torch_cuda//./}"
fi
wheeldir="$cache/wheels/mmcv-$MMCV_VERSION/torch-$torch_version-$pytag-$variant"
say "venv: $venv (python $pytag, torch $torch_version)"
say "wheel cache: $wheeldir"

# Everything pinned already importable with its compiled ops? Then there is nothing to do.
if [ "$wheel_only" = 0 ] && "$py" - "$reqs" "$cuda" <<'EOF' 2>/dev/null
import sys
from importlib.metadata import version
for line in open(sys.argv[1]):
    line = line.split("#")[0].strip()
    if line:
        name, pin = line.split("==")
        assert version(name) == pin, (name, version(name), pin)
import mmcv.ops  # noqa: F401  (fails when mmcv lacks its compiled ops)
import mmdet.models  # noqa: F401
if sys.argv[2] == "1":  # --cuda: the installed ops must have been compiled for CUDA
    assert mmcv.ops.get_compiling_cuda_version() not in ("", "not available")
EOF
then
    say "all pinned packages already installed; nothing to do"
    exit 0
fi

build_wheel() {
    mkdir -p "$cache/tmp"
    local work
    work="$(mktemp -d "$cache/tmp/mmcv-build.XXXXXX")"
    trap 'rm -rf "$work"' RETURN
    say "building mmcv $MMCV_VERSION wheel in $work (log: $work/build.log; takes 15-25 min on 2 cores)"
    "$py" -m venv "$work/benv"
    local target_site helper_site
    target_site="$("$py" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
    helper_site="$("$work/benv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
    # the helper's own setuptools wins (its site-packages comes first); torch comes from the target
    echo "$target_site" > "$helper_site/zz_qbench_target.pth"
    "$work/benv/bin/python" -m pip install -q "setuptools<81" wheel ninja \
        || die "could not install build tools (setuptools<81, wheel, ninja) into the helper venv"
    "$work/benv/bin/python" -m pip download -q --no-deps --no-binary :all: --no-build-isolation \
        -d "$work" "mmcv==$MMCV_VERSION" || die "could not download the mmcv $MMCV_VERSION sdist"
    tar -xzf "$work/mmcv-$MMCV_VERSION.tar.gz" -C "$work"
    local src="$work/mmcv-$MMCV_VERSION"
    sed -i "s/'-std=c++17'/'-std=c++20'/g" "$src/setup.py"
    grep -q "'-std=c++20'" "$src/setup.py" || die "could not patch mmcv's setup.py to C++20"
    say "patched mmcv setup.py: -std=c++17 -> -std=c++20; compiling $variant ops (MAX_JOBS=${MAX_JOBS:-2})"
    # CPU: hide the GPUs so mmcv's setup.py does not pick CUDA up on its own
    local -a build_env=(FORCE_CUDA=0 CUDA_VISIBLE_DEVICES="")
    if [ "$cuda" = 1 ]; then
        build_env=(FORCE_CUDA=1 CUDA_HOME="${CUDA_HOME:-$(dirname "$(dirname "$nvcc")")}")
    fi
    if ! env MAX_JOBS="${MAX_JOBS:-2}" MMCV_WITH_OPS=1 "${build_env[@]}" \
        nice -n 10 "$work/benv/bin/python" -m pip wheel -v --no-deps --no-build-isolation \
        -w "$work/dist" "$src" > "$work/build.log" 2>&1; then
        tail -n 40 "$work/build.log" >&2
        cp "$work/build.log" "$cache/mmcv-build-failed.log"
        die "mmcv build failed; full log kept at $cache/mmcv-build-failed.log"
    fi
    local built
    built="$(ls "$work"/dist/mmcv-"$MMCV_VERSION"-*.whl)" || die "mmcv build produced no wheel"
    mkdir -p "$wheeldir"
    # copy then rename inside the cache, so a reader never sees a half-written wheel
    cp "$built" "$wheeldir/.partial.whl"
    mv "$wheeldir/.partial.whl" "$wheeldir/$(basename "$built")"
    say "cached $(basename "$built")"
}

have_wheel() { compgen -G "$wheeldir/mmcv-$MMCV_VERSION-*.whl" > /dev/null; }

if have_wheel; then
    say "found cached mmcv wheel: $(basename "$(ls "$wheeldir"/mmcv-"$MMCV_VERSION"-*.whl)")"
else
    mkdir -p "$cache"
    # one build per machine even when two clones set up at once
    exec 9> "$cache/mmcv-build.lock"
    say "waiting for the mmcv build lock ($cache/mmcv-build.lock)"
    flock 9
    if have_wheel; then
        say "another process built the wheel meanwhile"
    else
        build_wheel
    fi
    flock -u 9
fi

if [ "$wheel_only" = 1 ]; then
    say "wheel ready in $wheeldir"
    exit 0
fi

say "installing pinned packages from $reqs (mmcv from the cached wheel)"
# --force-reinstall of mmcv alone: replaces a CPU-only mmcv of the same version by the CUDA one
reinstall=()
[ "$cuda" = 1 ] && reinstall=(--force-reinstall --no-deps "mmcv==$MMCV_VERSION")
"$py" -m pip install --find-links "$wheeldir" --only-binary mmcv -r "$reqs" \
    || die "pip install of the detection requirements failed"
if [ "${#reinstall[@]}" -gt 0 ]; then
    "$py" -m pip install --find-links "$wheeldir" --only-binary mmcv --no-index "${reinstall[@]}" \
        || die "pip install of the CUDA mmcv wheel failed"
fi
"$py" -c 'import mmcv.ops, mmdet.models, mmengine; print("[setup_detection] ok: mmcv", mmcv.__version__, "mmengine", mmengine.__version__)' \
    || die "installed, but importing mmcv.ops / mmdet.models fails"
if [ "$cuda" = 1 ]; then
    "$py" -c 'from mmcv.ops import get_compiling_cuda_version as v; import sys; c = v(); print("[setup_detection] mmcv CUDA ops built for CUDA", c); sys.exit(c in ("", "not available"))' \
        || die "installed, but mmcv reports no CUDA ops"
fi
