#!/usr/bin/env bash
# The packages of pyproject.toml that the device machine's image lacks, as files a `run` call can carry
# (`carry: [".whl"]`; the folder is git-ignored through .git/info/exclude), for its Python (3.12 on x86-64):
#
#   bash benchmarks/device_wheels.sh [DIR]        # DIR defaults to .whl; run here, where PyPI is reachable
#
# Versions are the ones installed in this checkout's .venv, so both machines run the same code. SimpleITK's wheel
# (53 MB) alone would nearly fill the 64 MiB a call may carry, so it travels unpacked and xz-compressed (29 MB).
# benchmarks/device_unpaired.sh installs DIR into /tmp/site when it finds it (DEVICE_WHEELS=DIR, default .whl).
set -euo pipefail
dir=${1:-.whl}
py=${PYTHON:-.venv/bin/python}
case $py in */*) py="$(cd "$(dirname "$py")" && pwd)/$(basename "$py")" ;; esac  # used after a cd below
mkdir -p "$dir"
grep -qx "/$dir/" .git/info/exclude 2>/dev/null || echo "/$dir/" >>.git/info/exclude
pins=$("$py" - <<'PY'
from importlib.metadata import version
names = ["monai", "kornia", "kornia_rs", "nibabel", "torchio", "pydantic", "pydantic_core", "annotated-types",
         "typing-inspection", "pydicom", "deprecated", "importlib_resources"]
print(" ".join(f"{n}=={version(n)}" for n in names))
PY
)
sitk=$("$py" -c "from importlib.metadata import version; print(version('SimpleITK'))")
"$py" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp --abi cp312 \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform any \
  -d "$dir" $pins
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
"$py" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp --abi cp312 \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d "$tmp" "SimpleITK==$sitk"
(cd "$tmp" && mkdir unpacked && cd unpacked && "$py" -m zipfile -e ../simpleitk-*.whl . && tar cJf "$tmp/sitk.tar.xz" .)
mv "$tmp/sitk.tar.xz" "$dir/simpleitk-$sitk-py312.tar.xz"
du -sh "$dir"
