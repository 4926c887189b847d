#include "ccts/nn/checkpoint.h"

#include <atomic>
#include <mutex>
#include <utility>

#include <torch/csrc/autograd/engine.h>
#include <torch/csrc/autograd/function_hook.h>
#include <torch/csrc/autograd/saved_variable_hooks.h>
#include <torch/torch.h>

#include "ccts/mutants.h"
#include "ccts/nn/grad_hooks.h"
#include "ccts/python_repr.h"

namespace ccts::nn {

namespace {

namespace autograd = torch::autograd;

std::atomic<std::int64_t> packed_count{0};

const char* const kDebugTip =
    "\nTip: To see a more detailed error message, either pass `debug=True` to\n"
    "`torch.utils.checkpoint.checkpoint(...)` or wrap the code block\n"
    "with `with torch.utils.checkpoint.set_checkpoint_debug_enabled(True):` to\n"
    "enable checkpoint\u2011debug mode globally.\n";

// One checkpointed call: what its forward saved (shapes and dtypes only, by
// index) and, while a backward needs them, the recomputed tensors.
class Region {
 public:
  Region(std::weak_ptr<Module> module, Args args, Kwargs kwargs)
      : module_(std::move(module)), args_(std::move(args)), kwargs_(std::move(kwargs)) {}

  std::size_t pack(const torch::Tensor& t) {
    saved_.push_back({t.sizes().vec(), t.scalar_type()});
    return saved_.size() - 1;
  }

  // The region's forward again, with gradients on, every saved tensor captured.
  void recompute();

  // Called while recomputing: the next saved tensor.
  void capture(const torch::Tensor& t) {
    if (captured_ >= saved_.size()) {
      throw std::runtime_error(
          std::string("torch.utils.checkpoint: trying to save more tensors during recomputation than during the "
                      "original forward pass.\n") + kDebugTip);
    }
    const Saved& s = saved_[captured_];
    if (t.sizes().vec() != s.shape || t.scalar_type() != s.dtype) {
      throw std::runtime_error(
          "torch.utils.checkpoint: Recomputed values for the following tensors have different metadata than during "
          "the forward pass.\ntensor at position " + std::to_string(captured_) + ":\nsaved metadata: {'shape': " +
          torch_size_repr(s.shape) + ", 'dtype': " + c10::toString(s.dtype) +
          "}\nrecomputed metadata: {'shape': " + torch_size_repr(t.sizes()) + ", 'dtype': " + c10::toString(t.scalar_type()) +
          "}\n." + kDebugTip);
    }
    recomputed_[captured_++] = t.detach();
  }

  // The tensor saved at `index`, recomputing first when this backward has not
  // yet (the hook-ordered recomputation normally has). Released once used.
  torch::Tensor take(std::size_t index) {
    if (index >= recomputed_.size() || !recomputed_[index].defined()) recompute();
    return std::exchange(recomputed_.at(index), torch::Tensor());
  }

 private:
  struct Saved {
    std::vector<std::int64_t> shape;
    c10::ScalarType dtype;
  };
  std::weak_ptr<Module> module_;
  Args args_;
  Kwargs kwargs_;
  std::vector<Saved> saved_;
  std::vector<torch::Tensor> recomputed_;
  std::size_t captured_ = 0;
};

// This thread's checkpointed forward (tensors saved now are packed into it)
// and the region being recomputed (tensors saved now are captured).
thread_local std::shared_ptr<Region> forward_region;
thread_local Region* recomputing_region = nullptr;

// Sets both for a scope; the previous ones come back at its end, thrown or not.
class RegionScope {
 public:
  RegionScope(std::shared_ptr<Region> forward, Region* recomputing)
      : forward_(std::exchange(forward_region, std::move(forward))),
        recomputing_(std::exchange(recomputing_region, recomputing)) {}
  ~RegionScope() {
    forward_region = std::move(forward_);
    recomputing_region = recomputing_;
  }
  RegionScope(const RegionScope&) = delete;
  RegionScope& operator=(const RegionScope&) = delete;

 private:
  std::shared_ptr<Region> forward_;
  Region* recomputing_;
};

void Region::recompute() {
  auto module = module_.lock();
  if (!module) throw std::runtime_error("checkpoint: the checkpointed module no longer exists");
  recomputed_.assign(saved_.size(), torch::Tensor());
  captured_ = 0;
  RegionScope scope(nullptr, this);
  torch::AutoGradMode grad(true);
  (*module)(args_, kwargs_);
  if (captured_ != saved_.size()) {
    throw std::runtime_error(
        "torch.utils.checkpoint: A different number of tensors was saved during the original forward and "
        "recomputation.\nNumber of tensors saved during forward: " + std::to_string(saved_.size()) +
        "\nNumber of tensors saved during recomputation: " + std::to_string(captured_) + ".\n" + kDebugTip);
  }
}

// A saved tensor of a checkpointed forward: its index in the region.
struct PackedHooks : autograd::SavedVariableHooks {
  explicit PackedHooks(std::shared_ptr<Region> region) : region(std::move(region)) {}
  ~PackedHooks() override {
    if (packed) --packed_count;
  }
  void call_pack_hook(const at::Tensor& tensor) override {
    index = region->pack(tensor);
    packed = true;
    ++packed_count;
  }
  at::Tensor call_unpack_hook() override { return region->take(index); }

  std::shared_ptr<Region> region;
  std::size_t index = 0;
  bool packed = false;
};

// A saved tensor of the recomputation: captured by the region; the
// recomputation's own graph is dropped unused.
struct CapturedHooks : autograd::SavedVariableHooks {
  explicit CapturedHooks(Region* region) : region(region) {}
  void call_pack_hook(const at::Tensor& tensor) override { region->capture(tensor); }
  at::Tensor call_unpack_hook() override {
    throw std::runtime_error("checkpoint: the recomputation's graph is not differentiable");
  }
  Region* region;
};

// LibTorch's engine, but for saved tensors inside checkpointed regions.
class CheckpointEngine : public autograd::Engine {
 public:
  std::unique_ptr<autograd::SavedVariableHooks> get_default_saved_variable_hooks() override {
    if (mutant("checkpoint_keeps_activations")) return nullptr;
    if (recomputing_region != nullptr) return std::make_unique<CapturedHooks>(recomputing_region);
    if (forward_region) return std::make_unique<PackedHooks>(forward_region);
    return nullptr;
  }
};

autograd::Engine& checkpoint_engine() {
  // Never destroyed: autograd may run until the process exits.
  static auto* engine = new CheckpointEngine();
  return *engine;
}

void install_engine() {
  static std::once_flag once;
  std::call_once(once, [] { autograd::set_default_engine_stub(&checkpoint_engine); });
}

// Runs `recompute` when the node producing a region output is about to run,
// once per backward. A node's pre-hooks run after the tensor hooks on its
// outputs' gradients (ModTracker's and any module's), which is when PyTorch's
// non-reentrant checkpoint unpacks the region's first saved tensor.
struct RecomputePreHook : public autograd::FunctionPreHook {
  RecomputePreHook(std::shared_ptr<OncePerBackward> once, std::function<void()> recompute)
      : once(std::move(once)), recompute(std::move(recompute)) {}

  autograd::variable_list operator()(const autograd::variable_list& grads) override {
    if (once->first()) recompute();
    return grads;
  }
  std::shared_ptr<OncePerBackward> once;
  std::function<void()> recompute;
};

}  // namespace

Value checkpoint(Module& module, const Args& args, const Kwargs& kwargs) {
  // Inside a recomputation the enclosing region captures everything.
  if (!torch::GradMode::is_enabled() || recomputing_region != nullptr) return module(args, kwargs);
  install_engine();
  std::weak_ptr<Module> weak = module.weak_from_this();

  // An outermost region owns what its forward saves; a nested one only
  // replays its forward for the hooks, as PyTorch's recomputes it.
  std::shared_ptr<Region> region;
  Value out;
  if (!forward_region) {
    // The recomputation's inputs are the forward's, still in their graph:
    // whether an input requires grad decides what autograd saves.
    region = std::make_shared<Region>(weak, args, kwargs);
    RegionScope scope(region, nullptr);
    out = module(args, kwargs);
  } else {
    out = module(args, kwargs);
  }
  std::vector<torch::Tensor> outputs;
  for (const auto& t : out.tensors()) {
    if (t.requires_grad() && t.grad_fn()) outputs.push_back(t);
  }
  if (outputs.empty()) return out;
  std::function<void()> recompute;
  if (region) {
    std::weak_ptr<Region> weak_region = region;
    recompute = [weak_region] {
      if (auto r = weak_region.lock()) r->recompute();
    };
  } else {
    // The replay's inputs: the forward's values, cut from its graph.
    auto detach = [](const torch::Tensor& t) { return t.detach(); };
    Args saved_args;
    for (const auto& a : args) saved_args.push_back(a.map_tensors(detach));
    Kwargs saved_kwargs;
    for (const auto& [k, v] : kwargs) saved_kwargs.emplace_back(k, v.map_tensors(detach));
    recompute = [weak, saved_args, saved_kwargs] {
      if (auto m = weak.lock()) {
        torch::NoGradGuard no_grad;
        (*m)(saved_args, saved_kwargs);
      }
    };
  }
  auto once = std::make_shared<OncePerBackward>();
  for (const auto& t : outputs) t.grad_fn()->add_pre_hook(std::make_unique<RecomputePreHook>(once, recompute));
  return out;
}

std::int64_t checkpoint_packed_tensors() { return packed_count.load(); }

}  // namespace ccts::nn
