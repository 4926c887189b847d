#include "ccts/nn/checkpoint.h"

#include <torch/torch.h>

#include "ccts/nn/grad_hooks.h"

namespace ccts::nn {

Value checkpoint(Module& module, const Args& args, const Kwargs& kwargs) {
  Value out = module(args, kwargs);
  if (!torch::GradMode::is_enabled()) return out;
  std::vector<torch::Tensor> outputs;
  for (const auto& t : out.tensors()) {
    if (t.requires_grad()) outputs.push_back(t);
  }
  if (outputs.empty()) return out;
  // The recomputation's inputs: the forward's values, cut from its graph.
  auto detach = [](const torch::Tensor& t) { return t.detach(); };
  Args saved_args;
  for (const auto& a : args) saved_args.push_back(a.map_tensors(detach));
  Kwargs saved_kwargs;
  for (const auto& [k, v] : kwargs) saved_kwargs.emplace_back(k, v.map_tensors(detach));
  std::weak_ptr<Module> weak = module.weak_from_this();
  // Registered after the module's own output hooks, so the recomputation runs
  // right after them, before the gradient enters the region (PyTorch's order).
  register_multi_grad_hook(
      outputs,
      [weak, saved_args, saved_kwargs] {
        if (auto m = weak.lock()) {
          torch::NoGradGuard no_grad;
          (*m)(saved_args, saved_kwargs);
        }
      },
      MultiGradMode::Any);
  return out;
}

}  // namespace ccts::nn
