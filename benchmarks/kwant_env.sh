#!/usr/bin/env bash
# Build .kwant-venv (in the repository root): a separate virtualenv with Kwant 1.5, used only for the
# cross-checks and side-by-side timings of benchmarks/bench_kwant.py. Kwant is never a dependency of
# difftransport; the project venv (.venv) does not see this one.
#
#     bash benchmarks/kwant_env.sh            # once; takes a few minutes (Kwant's Cython extensions)
#     .kwant-venv/bin/python -c "import kwant; print(kwant.__version__)"
#
# Recipe (Debian/Ubuntu):
#   1. the sequential MUMPS library, which Kwant's default sparse solver links against, and an optimized BLAS
#      for it (without libopenblas0-pthread, Debian's MUMPS runs on the netlib reference BLAS, several times
#      slower on large samples, and a comparison against it would flatter difftransport):
#          apt-get install -y libmumps-seq-dev libopenblas0-pthread   (needs root; done here when run as root)
#   2. in the venv, Kwant 1.5's build pins, then Kwant itself built against the already installed numpy:
#          pip install "numpy<2" "scipy<1.14" "cython<3" tinyarray
#          pip install --no-build-isolation kwant
# Environment: PYTHON (interpreter for the venv, default python3), KWANT_VENV (default <repo>/.kwant-venv).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=${KWANT_VENV:-$root/.kwant-venv}
python=${PYTHON:-python3}

system_packages=(libmumps-seq-dev libopenblas0-pthread)
missing=()
for package in "${system_packages[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "kwant_env: installing ${missing[*]} with apt-get" >&2
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
    else
        echo "kwant_env: the Debian package(s) ${missing[*]} are missing; installing them needs root:" >&2
        echo "    sudo apt-get install -y ${missing[*]}" >&2
        exit 1
    fi
fi

if [ ! -x "$venv/bin/python" ]; then
    "$python" -m venv "$venv"
fi
pip=("$venv/bin/python" -m pip install --quiet)
# setuptools < 72 still has the setuptools.command.test module that Kwant 1.5's setup.py imports.
"${pip[@]}" --upgrade pip wheel "setuptools<70"
"${pip[@]}" "numpy<2" "scipy<1.14" "cython<3" tinyarray
# Compiling Kwant's extensions is the slow part: be polite to whatever else runs on the machine.
nice -n 10 "${pip[@]}" --no-build-isolation "kwant>=1.5,<1.6"

"$venv/bin/python" - <<'EOF'
import kwant
from kwant.solvers import mumps  # fails if Kwant was built without MUMPS
print(f"kwant {kwant.__version__} with MUMPS in", kwant.__file__.rsplit("/", 2)[0])
EOF
