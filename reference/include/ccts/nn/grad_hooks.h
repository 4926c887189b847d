#pragma once
// Autograd-side hooks the trackers need: whether a backward is running on
// this thread (torch._C._current_graph_task_id() != -1), callbacks at the
// end of the running backward, and torch.autograd.graph.register_multi_grad_hook.
#include <functional>
#include <memory>
#include <mutex>
#include <set>
#include <vector>

#include <torch/types.h>

namespace ccts::nn {

// True while this thread runs a backward (graph task) — also inside hooks.
bool in_backward();
// An identity of the running backward, or nullptr outside one.
const void* current_backward();
// Runs `callback` when the running backward finishes (Engine::queue_callback).
void queue_backward_callback(std::function<void()> callback);

// True on the first call during each backward: remembers the running backward
// until it ends (its identity may be reused by the next one).
class OncePerBackward : public std::enable_shared_from_this<OncePerBackward> {
 public:
  bool first();

 private:
  std::mutex lock_;
  std::set<const void*> seen_;
};

// Tensor.register_post_accumulate_grad_hook, on LibTorch's AccumulateGrad
// node (as c10d's Reducer does): `fn` runs after a backward has accumulated
// into `leaf.grad()`. Autograd holds that node weakly; the returned pointer
// keeps it, and with it the hook, alive: keep it as long as the hook.
std::shared_ptr<void> register_post_accumulate_grad_hook(const torch::Tensor& leaf, std::function<void()> fn);
// Runs the post-accumulate-grad hooks registered on `leaf`, for code that
// assigns `leaf.grad()` itself rather than through autograd (FSDP2 does so
// for a sharded parameter once its reduced gradient is in place).
void run_post_accumulate_grad_hooks(const torch::Tensor& leaf);
// torch._C._will_engine_execute_node for a leaf's AccumulateGrad: whether the
// running backward will accumulate into `leaf.grad()`.
bool will_accumulate_grad(const torch::Tensor& leaf);

enum class MultiGradMode { All, Any };
// mode All: `fn` once per backward, when every tensor that backward will
// compute a gradient for has received it. mode Any: `fn` once per backward,
// at the first gradient of any of the tensors (tensors without grad are skipped).
// The hooks keep no graph alive: they hold the tensors' grad_fns weakly.
void register_multi_grad_hook(const std::vector<torch::Tensor>& tensors, std::function<void()> fn,
                              MultiGradMode mode = MultiGradMode::All);

}  // namespace ccts::nn
