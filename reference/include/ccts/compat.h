#pragma once
// The differences between LibTorch 1.13 (Debian) and 2.x that the reference
// meets, in one place. So far both spell c10d's types the same way (2.x's
// ProcessGroupGloo is a c10d::Backend, with the same constructor and
// collectives); new differences go here, behind TORCH_VERSION_MAJOR.
#include <torch/version.h>

#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/Work.hpp>

namespace ccts::compat {

using NativeWork = c10d::Work;

}  // namespace ccts::compat
