#include "ccts/nn/grad_hooks.h"

#include "ccts/compat.h"

#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>

#include <torch/csrc/autograd/engine.h>
#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/graph_task.h>
#include <torch/csrc/autograd/variable.h>

namespace ccts::nn {

namespace {

// torch._C._will_engine_execute_node.
bool will_execute(torch::autograd::Node* node) {
  const auto* exec_info = torch::autograd::get_current_graph_task_exec_info();
  if (exec_info == nullptr) return false;
  if (exec_info->empty()) {
    const auto* nodes = torch::autograd::get_current_graph_task_nodes_in_graph();
    return nodes != nullptr && nodes->count(node) > 0;
  }
  auto it = exec_info->find(node);
  return it != exec_info->end() && it->second.should_execute();
}

// compat::NodePtr's weak twin (std::weak_ptr on 1.13, weak_intrusive_ptr on 2.x).
template <class P>
struct WeakOf;
template <class T>
struct WeakOf<std::shared_ptr<T>> {
  using type = std::weak_ptr<T>;
};
template <class T, class N>
struct WeakOf<c10::intrusive_ptr<T, N>> {
  using type = c10::weak_intrusive_ptr<T, N>;
};

// A tensor's node, as a multi-grad hook keeps it (_get_grad_fn_or_grad_acc).
// A grad_fn is held without ownership: the hook lives on that very node, so
// owning it would be a cycle that nothing frees (PyTorch's garbage collector
// does), and every graph would leak; a grad_fn that is gone cannot run. A
// leaf's AccumulateGrad is owned, as PyTorch's closure owns it, so that later
// backwards through the same leaf find the same node.
class HookedNode {
 public:
  explicit HookedNode(const torch::Tensor& t) {
    if (t.grad_fn()) {
      weak_.emplace(t.grad_fn());
    } else {
      leaf_ = torch::autograd::impl::grad_accumulator(t);
    }
  }
  bool will_execute() const {
    if (leaf_) return nn::will_execute(leaf_.get());
    auto node = weak_->lock();
    return node && nn::will_execute(node.get());
  }

 private:
  compat::NodePtr leaf_;
  std::optional<typename WeakOf<compat::NodePtr>::type> weak_;
};

class PostAccumulateHook : public torch::autograd::FunctionPostHook {
 public:
  explicit PostAccumulateHook(std::function<void()> fn) : fn_(std::move(fn)) {}
  torch::autograd::variable_list operator()(const torch::autograd::variable_list& outputs,
                                            const torch::autograd::variable_list&) override {
    fn_();
    return outputs;
  }

 private:
  std::function<void()> fn_;
};

}  // namespace

std::shared_ptr<void> register_post_accumulate_grad_hook(const torch::Tensor& leaf, std::function<void()> fn) {
  if (!leaf.requires_grad() || leaf.grad_fn()) {
    throw std::invalid_argument("post-accumulate-grad hooks need a leaf tensor that requires grad");
  }
  compat::NodePtr accumulator = torch::autograd::impl::grad_accumulator(leaf);
  accumulator->add_post_hook(std::make_unique<PostAccumulateHook>(std::move(fn)));
  // The handle keeps the accumulator (and so the hook) alive, whatever pointer type holds it.
  return std::shared_ptr<void>(accumulator.get(), [accumulator](void*) {});
}

void run_post_accumulate_grad_hooks(const torch::Tensor& leaf) {
  auto accumulator = torch::autograd::impl::try_get_grad_accumulator(leaf);
  if (!accumulator) return;  // no hook was ever registered
  for (const auto& hook : accumulator->post_hooks()) (*hook)({}, {});
}

bool will_accumulate_grad(const torch::Tensor& leaf) {
  auto accumulator = torch::autograd::impl::try_get_grad_accumulator(leaf);
  return accumulator && will_execute(accumulator.get());
}

bool in_backward() { return torch::autograd::get_current_graph_task_exec_info() != nullptr; }

const void* current_backward() { return torch::autograd::get_current_graph_task_exec_info(); }

void queue_backward_callback(std::function<void()> callback) {
  torch::autograd::Engine::get_default_engine().queue_callback(std::move(callback));
}

bool OncePerBackward::first() {
  const void* task = current_backward();
  if (task == nullptr) throw std::logic_error("expected this hook to be called inside a backward call");
  {
    std::lock_guard<std::mutex> guard(lock_);
    if (!seen_.insert(task).second) return false;
  }
  std::weak_ptr<OncePerBackward> weak = weak_from_this();
  queue_backward_callback([weak, task] {
    if (auto self = weak.lock()) {
      std::lock_guard<std::mutex> guard(self->lock_);
      self->seen_.erase(task);
    }
  });
  return true;
}

void register_multi_grad_hook(const std::vector<torch::Tensor>& tensors, std::function<void()> fn,
                              MultiGradMode mode) {
  struct Shared {
    std::mutex lock;
    std::map<const void*, int> count;  // per backward
    int expected = 0;
    std::vector<HookedNode> nodes;
    std::function<void()> fn;
  };
  if (tensors.size() == 1 && tensors.front().requires_grad()) {
    // One tensor: its hook runs at most once per backward (its node runs
    // once), so the count and the once-per-backward record are not needed;
    // mode All still fires only if that backward computes its gradient.
    torch::Tensor target = tensors.front();
    if (mode == MultiGradMode::Any) {
      target.register_hook([fn = std::move(fn)](const torch::Tensor&) { fn(); });
      return;
    }
    target.register_hook([fn = std::move(fn), node = HookedNode(target)](const torch::Tensor&) {
      if (current_backward() == nullptr) {
        throw std::logic_error("expected this hook to be called inside a backward call");
      }
      if (node.will_execute()) fn();
    });
    return;
  }
  auto shared = std::make_shared<Shared>();
  shared->fn = std::move(fn);
  if (mode == MultiGradMode::All) {
    for (const auto& t : tensors) shared->nodes.emplace_back(t);
    for (const auto& t : tensors) {
      torch::Tensor target = t;
      target.register_hook([shared](const torch::Tensor&) {
        const void* task = current_backward();
        if (task == nullptr) throw std::logic_error("expected this hook to be called inside a backward call");
        bool fire = false;
        {
          std::lock_guard<std::mutex> guard(shared->lock);
          int& seen = shared->count[task];
          if (seen == 0) {
            shared->expected = 0;
            for (const auto& node : shared->nodes) shared->expected += node.will_execute() ? 1 : 0;
          }
          ++seen;
          if (seen == shared->expected) {
            shared->count.erase(task);
            fire = true;
          }
        }
        if (fire) shared->fn();
      });
    }
    return;
  }
  auto once = std::make_shared<OncePerBackward>();
  for (const auto& t : tensors) {
    if (!t.requires_grad()) continue;
    torch::Tensor target = t;
    target.register_hook([shared, once](const torch::Tensor&) {
      if (once->first()) shared->fn();
    });
  }
}

}  // namespace ccts::nn
