#include "ccts/nn/checkpoint.h"

#include <torch/csrc/autograd/function_hook.h>
#include <torch/torch.h>

#include "ccts/nn/grad_hooks.h"

namespace ccts::nn {

namespace {

// Runs `recompute` when the node producing a region output is about to run,
// once per backward. A node's pre-hooks run after the tensor hooks on its
// outputs' gradients (ModTracker's and any module's), which is when PyTorch's
// non-reentrant checkpoint unpacks the region's first saved tensor.
struct RecomputePreHook : public torch::autograd::FunctionPreHook {
  RecomputePreHook(std::shared_ptr<OncePerBackward> once, std::function<void()> recompute)
      : once(std::move(once)), recompute(std::move(recompute)) {}

  torch::autograd::variable_list operator()(const torch::autograd::variable_list& grads) override {
    if (once->first()) recompute();
    return grads;
  }
  std::shared_ptr<OncePerBackward> once;
  std::function<void()> recompute;
};

}  // namespace

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
  auto once = std::make_shared<OncePerBackward>();
  std::function<void()> recompute = [weak, saved_args, saved_kwargs] {
    if (auto m = weak.lock()) {
      torch::NoGradGuard no_grad;
      (*m)(saved_args, saved_kwargs);
    }
  };
  for (const auto& t : outputs) {
    if (t.grad_fn()) t.grad_fn()->add_pre_hook(std::make_unique<RecomputePreHook>(once, recompute));
  }
  return out;
}

}  // namespace ccts::nn
