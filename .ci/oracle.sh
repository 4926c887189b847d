#!/bin/bash
# The oracle run: the whole suite against real PyTorch 2.x through its adapter,
# on a machine with an NVIDIA GPU, in one go:
#   0. the PyTorch adapter's unit tests (their 2.x paths skip elsewhere);
#   1. golden values regenerated from PyTorch (./ccts golden);
#   2. snapshot pytorch-<version>-gloo: Gloo on the CPU at 1, 2 and 4 ranks;
#   3. snapshot pytorch-<version>-nccl: NCCL on CUDA at 1 rank per GPU count;
#   4. optionally (REFERENCE2X=1) the reference built against that LibTorch
#      (.ci/libtorch2x.sh) and snapshotted as reference-libtorch<version>-gloo.
# What changed (reports/snapshot/, golden files) is packed into $OUT/oracle.tgz
# and the logs into $OUT/*.log, to be unpacked and committed where the suite lives.
#
#   PYTHON=/opt/torch/.venv/bin/python OUT=/tmp/out .ci/oracle.sh
#
# The runner needs PyYAML and Jinja2 (PyTorch's installs have both) and
# jsonschema; where jsonschema cannot be installed, `.ci/oracle-debs.sh` run on
# a Debian 12 machine puts Debian's packages in .deps/, and this script unpacks
# them (dpkg -x, nothing installed) into $DEPS.
set -uo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
OUT="${OUT:-out/oracle}"
DEPS="${DEPS:-/tmp/ccts-deps}"
mkdir -p "$OUT" "$DEPS"

if compgen -G ".deps/*.deb" >/dev/null; then
  for deb in .deps/*.deb; do dpkg -x "$deb" "$DEPS"; done
fi
# Debian's pure-Python packages after the interpreter's own (its PyYAML and Jinja2 win).
SITE="$("$PYTHON" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
export PYTHONPATH="$PWD:$SITE:$DEPS/usr/lib/python3/dist-packages"
export PYTHONUNBUFFERED=1
ADAPTER="$PYTHON -m runners.adapters.pytorch"
VERSION="$("$PYTHON" -c 'import torch; print(torch.__version__.split("+")[0])')"
runner() { "$PYTHON" -m runners "$@"; }

status=0
step() {  # step NAME command...: runs it, logs it, remembers a failure, goes on
  local name="$1"; shift
  echo "== $name: $*"
  "$@" >"$OUT/$name.log" 2>&1
  local rc=$?
  tail -n 4 "$OUT/$name.log"
  [ $rc -eq 0 ] || { echo "== $name exited $rc"; status=1; }
}

"$PYTHON" - <<'EOF' | tee "$OUT/environment.log"
import platform, torch, torch.distributed as dist
print("python", platform.python_version(), "torch", torch.__version__, "cuda", torch.version.cuda,
      "gpus", torch.cuda.device_count(), "nccl", dist.is_nccl_available() and torch.cuda.nccl.version())
EOF
# The adapter's own tests: here its PyTorch 2.x paths run instead of skipping.
step adapter-tests "$PYTHON" -m unittest -v runners.tests.test_pytorch_adapter
step golden runner golden --adapter "$ADAPTER"
step gloo runner snapshot "pytorch-$VERSION-gloo" --adapter "$ADAPTER" --world-sizes 1,2,4 --timeout 180
GPUS="$("$PYTHON" -c 'import torch; print(torch.cuda.device_count())')"
if [ "$GPUS" -gt 0 ]; then
  SIZES=1; [ "$GPUS" -ge 2 ] && SIZES=1,2; [ "$GPUS" -ge 4 ] && SIZES=1,2,4
  step nccl runner snapshot "pytorch-$VERSION-nccl" --adapter "$ADAPTER" --backend nccl --world-sizes "$SIZES" \
    --timeout 180
fi
if [ "${REFERENCE2X:-0}" = 1 ]; then
  step build2x env PYTHON="$PYTHON" DEPS="$DEPS" BUILD_ONLY=1 .ci/libtorch2x.sh
  step reference2x runner snapshot "reference-libtorch$VERSION-gloo" --adapter build2x/reference/adapter/ccts-adapter \
    --world-sizes 1,2,4
fi
# The tree there may have no .git: pack the whole snapshot and every golden
# folder; `git status` where they are unpacked shows what changed.
tar czf "$OUT/oracle.tgz" reports/snapshot conformance/*/golden
echo "packed $(tar tzf "$OUT/oracle.tgz" | wc -l) files into $OUT/oracle.tgz"
exit $status
