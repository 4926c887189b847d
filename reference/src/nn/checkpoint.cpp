#include "ccts/nn/checkpoint.h"

#include <mutex>
#include <set>

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
  struct Once {
    std::mutex lock;
    std::set<const void*> done;  // backwards that already recomputed
    std::function<void()> recompute;
  };
  explicit RecomputePreHook(std::shared_ptr<Once> once) : once(std::move(once)) {}

  torch::autograd::variable_list operator()(const torch::autograd::variable_list& grads) override {
    const void* task = current_backward();
    {
      std::lock_guard<std::mutex> guard(once->lock);
      if (!once->done.insert(task).second) return grads;
    }
    std::weak_ptr<Once> weak = once;
    queue_backward_callback([weak, task] {
      if (auto o = weak.lock()) {
        std::lock_guard<std::mutex> guard(o->lock);
        o->done.erase(task);
      }
    });
    once->recompute();
    return grads;
  }
  std::shared_ptr<Once> once;
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
  auto once = std::make_shared<RecomputePreHook::Once>();
  once->recompute = [weak, saved_args, saved_kwargs] {
    if (auto m = weak.lock()) {
      torch::NoGradGuard no_grad;
      (*m)(saved_args, saved_kwargs);
    }
  };
  for (const auto& t : outputs) {
    if (t.grad_fn()) t.grad_fn()->add_pre_hook(std::make_unique<RecomputePreHook>(once));
  }
  return out;
}

}  // namespace ccts::nn
