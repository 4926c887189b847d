#!/bin/bash
# Builds the reference against the LibTorch inside a PyTorch 2.x install and
# runs its unit tests and the suite on the 2.x-built adapter.
#   PYTHON=/path/to/venv/python .ci/libtorch2x.sh     (BUILD_ONLY=1: build and unit tests only)
# Debian packages the wheel does not bring (catch2, nlohmann-json3-dev,
# libyaml-cpp-dev, libgloo-dev for the gloo headers ProcessGroupGloo.hpp
# includes, python3-yaml for the runner) may be unpacked into $DEPS with
# `apt-get download` + `dpkg -x` on machines where they cannot be installed.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
DEPS="${DEPS:-/}"
# The torch package folder itself, so its lib/ wins over a system libtorch.so.
TORCH_CMAKE="$("$PYTHON" -c 'import os, torch; print(os.path.dirname(torch.__file__))')"
cmake -S . -B build2x -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_CXX_FLAGS="-isystem $DEPS/usr/include" -DCMAKE_PREFIX_PATH="$TORCH_CMAKE;$DEPS/usr" \
  -DCCTS_CONFORMANCE_TESTS=OFF -DPython3_EXECUTABLE="$PYTHON"
cmake --build build2x -j"$(nproc)"
(cd build2x && ctest -L unit --output-on-failure -j"$(nproc)")
[ "${BUILD_ONLY:-0}" = 1 ] && exit 0
PYTHONPATH=".:$DEPS/usr/lib/python3/dist-packages" "$PYTHON" -m runners run \
  --adapter build2x/reference/adapter/ccts-adapter --world-sizes 1,2,4 --out out2x -q
