#pragma once
// Module hooks with PyTorch's semantics (torch.nn.Module.register_*_hook) and
// RAII handles: a HookHandle removes its hook when destroyed, unless detach()ed
// — the C++ spelling of keeping PyTorch's RemovableHandle unused.
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <utility>
#include <vector>

#include <torch/types.h>

#include "ccts/nn/value.h"

namespace ccts::nn {

class Module;

// Gradients in PyTorch's hook tuples; an undefined tensor stands for None.
using TensorList = std::vector<torch::Tensor>;

struct ForwardPreResult {
  Args args;
  Kwargs kwargs;
};
// register_forward_pre_hook(with_kwargs=True): may replace args and kwargs.
using ForwardPreHook =
    std::function<std::optional<ForwardPreResult>(Module&, const Args&, const Kwargs&)>;
// register_forward_hook(with_kwargs=True): may replace the output.
using ForwardHook = std::function<std::optional<Value>(Module&, const Args&, const Kwargs&,
                                                       const Value& output)>;
// register_full_backward_pre_hook: sees grad_output, may replace it.
using BackwardPreHook =
    std::function<std::optional<TensorList>(Module&, const TensorList& grad_output)>;
// register_full_backward_hook: sees grad_input and grad_output, may replace grad_input.
using BackwardHook = std::function<std::optional<TensorList>(
    Module&, const TensorList& grad_input, const TensorList& grad_output)>;

// A state-dict pre-hook: sees the module whose state is about to be saved or loaded.
using StateDictPreHook = std::function<void(Module&)>;

class HookHandle {
 public:
  HookHandle() = default;
  explicit HookHandle(std::function<void()> remover) : remover_(std::move(remover)) {}
  HookHandle(HookHandle&& other) noexcept : remover_(std::exchange(other.remover_, nullptr)) {}
  HookHandle& operator=(HookHandle&& other) noexcept {
    if (this != &other) {
      remove();
      remover_ = std::exchange(other.remover_, nullptr);
    }
    return *this;
  }
  HookHandle(const HookHandle&) = delete;
  HookHandle& operator=(const HookHandle&) = delete;
  ~HookHandle() { remove(); }

  // Removes the hook now; later calls do nothing (PyTorch's handle.remove()).
  void remove() {
    if (remover_) std::exchange(remover_, nullptr)();
  }
  // Leaves the hook installed for the lifetime of its owner.
  void detach() { remover_ = nullptr; }
  bool active() const { return static_cast<bool>(remover_); }

 private:
  std::function<void()> remover_;
};

// Hooks of one kind in registration order. Ids are global so that several
// lists (global hooks, then the module's) interleave like PyTorch's dicts.
std::uint64_t next_hook_id();

template <class Fn>
class HookList : public std::enable_shared_from_this<HookList<Fn>> {
 public:
  struct Entry {
    std::uint64_t id;
    Fn fn;
    bool always_call;
  };

  [[nodiscard]] HookHandle add(Fn fn, bool always_call = false) {
    const std::uint64_t id = next_hook_id();
    entries_.push_back(Entry{id, std::move(fn), always_call});
    std::weak_ptr<HookList> self = this->shared_from_this();
    return HookHandle([self, id] {
      if (auto list = self.lock()) list->remove(id);
    });
  }
  void remove(std::uint64_t id) {
    for (auto it = entries_.begin(); it != entries_.end(); ++it) {
      if (it->id == id) {
        entries_.erase(it);
        return;
      }
    }
  }
  // A copy, so hooks may add or remove hooks while the list is being run.
  std::vector<Entry> snapshot() const { return entries_; }
  bool empty() const { return entries_.empty(); }
  std::size_t size() const { return entries_.size(); }

 private:
  std::vector<Entry> entries_;
};

// Global hooks over every module (torch.nn.modules.module.register_module_*):
// they run before the module's own hooks of the same kind.
[[nodiscard]] HookHandle register_module_forward_pre_hook(ForwardPreHook hook);
[[nodiscard]] HookHandle register_module_forward_hook(ForwardHook hook, bool always_call = false);
[[nodiscard]] HookHandle register_module_full_backward_pre_hook(BackwardPreHook hook);
[[nodiscard]] HookHandle register_module_full_backward_hook(BackwardHook hook);
// Number of global hooks installed (all kinds); the adapter checks it is 0
// between cases so that no case leaks hooks into the next.
std::size_t global_hook_count();

}  // namespace ccts::nn
