#pragma once
// Activation checkpointing as torch.utils.checkpoint(use_reentrant=False):
// the module runs in forward as usual but autograd keeps none of the
// tensors its operations save for backward; when the first gradient of its
// outputs arrives in backward its forward runs again (hooks fire, with a
// backward running), and the region's backward uses the recomputed tensors.
//
// How, without Python: every tensor autograd saves goes through
// Engine::get_default_engine().get_default_saved_variable_hooks() — the
// seam PyTorch's own saved-tensor hooks use (PythonEngine overrides it). The
// first checkpoint call installs an Engine that overrides only that method
// (set_default_engine_stub): inside a checkpointed forward each saved tensor
// is packed as its index, and inside the recomputation each is captured under
// that index. A nested checkpoint call saves into the outermost region.
#include "ccts/nn/module.h"

namespace ccts::nn {

Value checkpoint(Module& module, const Args& args, const Kwargs& kwargs = {});

// Tensors packed by checkpointed forwards whose graphs are still alive
// (each held as its index, not its value): what the benchmark reads.
std::int64_t checkpoint_packed_tensors();

}  // namespace ccts::nn
