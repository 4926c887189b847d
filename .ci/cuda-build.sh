#!/bin/bash
# Builds the reference with NCCL compiled in, against the LibTorch inside a
# CUDA build of PyTorch installed from LOCAL wheels only, and checks that it
# links and that NCCL is in: the adapter references c10d::ProcessGroupNCCL and
# needs libtorch_cuda.so, the adapter still answers `hello` (gloo/cpu) on a
# machine without a GPU, and unit_distributed's NCCL test passes (it runs NCCL
# ranks where a GPU is visible and only warns where none is).
#
#   .ci/cuda-build.sh                 (JOBS=1 on shared machines; TESTS=1 also runs `ctest -L unit`)
#
# Nothing in CI depends on it. It skips (prints "cuda-build: skipped: ...",
# exits $SKIP_STATUS, default 0) where nvcc or the CUDA wheels are missing.
# Nothing is downloaded: every pip call is --no-index --find-links $WHEELS.
#
#   CUDA_VENV     the venv it creates once and reuses      (/tmp/ccts-cuda-venv)
#   TORCH_SPEC    the PyTorch it installs there             (torch==2.14.1, a CUDA 13 build)
#   WHEELS        local wheel folders                       (/opt/pypi-more/files /opt/pypi/files /opt/wheels)
#   CUDA_HOME     the CUDA toolkit with nvcc                (/usr/local/cuda)
#   BUILD_DIR     the build tree                            (build-cuda)
#   TORCH_CUDA_ARCH_LIST  passed to LibTorch's CMake, which otherwise probes the GPU (9.0)
#
# torch's own requirements are installed from the same folders except
# triton and cuda-bindings (Python-only: Triton's JIT and the CUDA Python
# bindings; the C++ build uses neither, and they need not be on disk).
#
# pip then warns that triton and cuda-bindings are not installed; expected.
#
# Measured on a 2-core machine without a GPU, shared with other work
# (nice -n 19, JOBS=1, ccache cold), PyTorch 2.14.1 + CUDA 13.0, GCC 12:
# venv from local wheels 108 s (4.5 GB installed), configure 6 s, build of
# every target 627 s (build-cuda/ 876 MB), checks 9 s, TESTS=1 58 s
# (53 unit tests, all pass on the CPU). A rerun with everything in place: 9 s.
set -euo pipefail
cd "$(dirname "$0")/.."

CUDA_VENV="${CUDA_VENV:-/tmp/ccts-cuda-venv}"
TORCH_SPEC="${TORCH_SPEC:-torch==2.14.1}"
WHEELS="${WHEELS:-/opt/pypi-more/files /opt/pypi/files /opt/wheels}"
CUDA_HOME="${CUDA_HOME:-/usr/local/cuda}"
BUILD_DIR="${BUILD_DIR:-build-cuda}"
JOBS="${JOBS:-$(nproc)}"
SKIP_STATUS="${SKIP_STATUS:-0}"
export TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-9.0}"
# LibTorch's FindCUDA takes the toolkit from the first nvcc on PATH.
export PATH="$CUDA_HOME/bin:$PATH"

t0=$SECONDS
say() { echo "cuda-build: $*" >&2; }
skip() { echo "cuda-build: skipped: $*"; exit "$SKIP_STATUS"; }
lap() { say "$1 took $((SECONDS - $2)) s"; }

# --- prerequisites -----------------------------------------------------------
[ -x "$CUDA_HOME/bin/nvcc" ] || skip "no nvcc at $CUDA_HOME/bin/nvcc (set CUDA_HOME)"
find_links=()
for dir in $WHEELS; do [ -d "$dir" ] && find_links+=(--find-links "$dir"); done
[ ${#find_links[@]} -gt 0 ] || skip "none of the wheel folders exists: $WHEELS"
pip_local=(--no-index "${find_links[@]}" --disable-pip-version-check)

# --- the venv ------------------------------------------------------------------
t=$SECONDS
PY="$CUDA_VENV/bin/python"
if [ ! -x "$PY" ]; then
  "${PYTHON:-python3}" -m venv "$CUDA_VENV"
fi
want_version="${TORCH_SPEC#*==}"
have_version="$("$PY" -c 'import importlib.metadata as m; print(m.version("torch"))' 2>/dev/null || true)"
if [ "$have_version" != "$want_version" ]; then
  # Resolve first, without installing: is the wheel on disk for this Python?
  if ! "$PY" -m pip install --dry-run --no-deps "${pip_local[@]}" "$TORCH_SPEC" >/dev/null 2>&1; then
    skip "no local wheel for $TORCH_SPEC ($("$PY" -c 'import sys; print("cp%d%d" % sys.version_info[:2])')) in $WHEELS"
  fi
  say "installing $TORCH_SPEC into $CUDA_VENV from local wheels"
  "$PY" -m pip install -q --no-deps "${pip_local[@]}" "$TORCH_SPEC"
fi
TORCH_DIR="$("$PY" -c 'import importlib.util, os; print(os.path.dirname(importlib.util.find_spec("torch").origin))')"
[ -e "$TORCH_DIR/lib/libtorch_cuda.so" ] || skip "$TORCH_SPEC in $CUDA_VENV is not a CUDA build (no lib/libtorch_cuda.so)"
# torch's requirements (markers evaluated for this Python), less the Python-only two.
mapfile -t reqs < <("$PY" - <<'EOF'
import importlib.metadata as m
from pip._vendor.packaging.requirements import Requirement
for text in m.requires("torch") or []:
    req = Requirement(text)
    if req.marker is not None and not req.marker.evaluate({"extra": ""}):
        continue
    if req.name in ("triton", "cuda-bindings"):
        continue
    print(str(req).split(";")[0].strip())
EOF
)
if ! "$PY" -m pip install -q --dry-run "${pip_local[@]}" "${reqs[@]}" >/dev/null 2>&1; then
  skip "not every library $TORCH_SPEC needs has a local wheel in $WHEELS: ${reqs[*]}"
fi
"$PY" -m pip install -q "${pip_local[@]}" "${reqs[@]}"
lap "venv ($(du -sh "$CUDA_VENV" | cut -f1))" "$t"

# --- configure ---------------------------------------------------------------
t=$SECONDS
SITE="$(dirname "$TORCH_DIR")"
# NCCL's header and CUDA's (cuBLAS, cuSPARSE, ... which ATen/cuda includes)
# come with the nvidia-* wheels; /usr/local/cuda may hold only nvcc and cudart.
extra_includes=""
for inc in "$SITE"/nvidia/*/include "$SITE"/nvidia/cu*/include; do
  [ -d "$inc" ] && extra_includes="$extra_includes -isystem $inc"
done
# LibTorch links nvrtc by path (CUDA_nvrtc_LIBRARY); the wheels' has only the .so.N name.
nvrtc="$(ls "$CUDA_HOME"/lib64/libnvrtc.so "$SITE"/nvidia/cu*/lib/libnvrtc.so.[0-9]* 2>/dev/null | head -1 || true)"
[ -n "$nvrtc" ] || skip "no libnvrtc in $CUDA_HOME/lib64 or the nvidia wheels"
launcher=()
if command -v ccache >/dev/null; then
  launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_CUDA_COMPILER_LAUNCHER=ccache)
  # The precompiled <torch/torch.h> is cacheable only with these.
  export CCACHE_SLOPPINESS="${CCACHE_SLOPPINESS:-pch_defines,time_macros,include_file_mtime,include_file_ctime}"
fi
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_PREFIX_PATH="$TORCH_DIR" \
  -DCUDA_TOOLKIT_ROOT_DIR="$CUDA_HOME" -DCUDAToolkit_ROOT="$CUDA_HOME" \
  -DCMAKE_CUDA_COMPILER="$CUDA_HOME/bin/nvcc" -DCUDA_nvrtc_LIBRARY="$nvrtc" \
  -DCMAKE_CXX_FLAGS="$extra_includes" \
  -DCCTS_CONFORMANCE_TESTS=OFF -DPython3_EXECUTABLE="$(command -v python3)" \
  "${launcher[@]}"
lap configure "$t"

# --- build -------------------------------------------------------------------
t=$SECONDS
cmake --build "$BUILD_DIR" -j"$JOBS"
lap "build (every target)" "$t"

# --- checks ------------------------------------------------------------------
adapter="$BUILD_DIR/reference/adapter/ccts-adapter"
fail() { echo "cuda-build: FAILED: $*"; exit 1; }
# (Output captured first: `nm | grep -q` would fail under pipefail when grep
# stops reading early and nm dies of SIGPIPE.)
needed="$(readelf -d "$adapter")"
undefined="$(nm -C -u "$adapter")"
grep -q 'NEEDED.*libtorch_cuda\.so' <<<"$needed" || fail "ccts-adapter does not need libtorch_cuda.so"
grep -q 'c10d::ProcessGroupNCCL::ProcessGroupNCCL' <<<"$undefined" ||
  fail "ccts-adapter does not reference c10d::ProcessGroupNCCL (USE_C10D_NCCL not defined?)"
say "ccts-adapter links libtorch_cuda.so and references c10d::ProcessGroupNCCL"

# The adapter on gloo/cpu: loads LibTorch's CUDA libraries without a GPU.
port=$(( 20000 + RANDOM % 20000 ))
reply="$(printf '%s\n' '{"type": "hello", "protocol": 1, "suite_version": "0.3.0", "backend": "gloo", "device": "cpu"}' \
  '{"type": "bye"}' | RANK=0 LOCAL_RANK=0 WORLD_SIZE=1 MASTER_ADDR=127.0.0.1 MASTER_PORT=$port timeout 120 "$adapter")" ||
  fail "ccts-adapter exited $?: $reply"
echo "$reply"
grep -q '"type":"hello"' <<<"$reply" || fail "ccts-adapter did not answer hello"
grep -q "\"libtorch\":\"$want_version" <<<"$reply" || fail "ccts-adapter is not built on LibTorch $want_version"

"$BUILD_DIR/reference/tests/distributed/unit_distributed" "backend nccl exists only in builds with NCCL" ||
  fail "unit_distributed's NCCL test"
if [ "${TESTS:-0}" = 1 ]; then
  (cd "$BUILD_DIR" && ctest -L unit --output-on-failure -j"$JOBS")
fi
say "ok: built with NCCL against LibTorch $want_version (CUDA $("$CUDA_HOME/bin/nvcc" --version | sed -n 's/.*release \([0-9.]*\).*/\1/p')) in $((SECONDS - t0)) s"
