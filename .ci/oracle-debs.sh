#!/bin/bash
# Downloads (does not install) the Debian 12 packages .ci/oracle.sh unpacks on
# a machine that has PyTorch 2.x but cannot install them: jsonschema for the
# runner, and the headers .ci/libtorch2x.sh builds the reference with.
# Run on a Debian 12 machine; the files land in .deps/ (git-ignored).
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .deps
cd .deps
apt-get download python3-jsonschema python3-pyrsistent python3-attr \
  catch2 nlohmann-json3-dev libyaml-cpp-dev libyaml-cpp0.7 libgloo-dev
ls -l
