#pragma once
// Activation checkpointing as torch.utils.checkpoint(use_reentrant=False) is
// seen from outside: the module runs in forward as usual, and when the first
// gradient of its outputs arrives in backward its forward runs again (hooks
// fire, with a backward running) before the gradients flow into it.
//
// Departure (spec/mod_tracker.md, MODTRACKER-AC-001): PyTorch frees the
// region's activations and uses the recomputed ones; LibTorch's C++ API has no
// saved-tensor hooks to do that, so the reference keeps the forward's
// activations and the recomputation's results are discarded. Values and the
// order of every hook are PyTorch's; the memory saving is not.
#include "ccts/nn/module.h"

namespace ccts::nn {

Value checkpoint(Module& module, const Args& args, const Kwargs& kwargs = {});

}  // namespace ccts::nn
