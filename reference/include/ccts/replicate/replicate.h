#pragma once
// replicate (torch.distributed._composable.replicate): DistributedDataParallel
// attached to a module in place, as a contract API (spec/replicate.md). The
// engine is built lazily at the module's first forward: parameters are
// broadcast from rank 0 then, and gradients are averaged by the Reducer
// (ccts/replicate/reducer.h) while backward runs.
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <torch/types.h>

#include "ccts/composable/contract.h"
#include "ccts/nn/module.h"
#include "ccts/nn/value.h"
#include "ccts/replicate/reducer.h"

namespace ccts::distributed {
class ProcessGroup;
}

namespace ccts::replicate {


// replicate's keyword arguments.
struct ReplicateOptions {
  // Subtrees whose parameters are neither broadcast nor synchronised.
  std::vector<std::shared_ptr<nn::Module>> ignored_modules;
  // PyTorch's `int | torch.device`, checked like Python does: an Int (or
  // Bool) is an index, a String is a device ("cpu", "cuda:1"); any other
  // kind raises "Expected device_id to be int or torch.device, ...".
  std::optional<nn::Value> device_id;
  std::optional<double> bucket_cap_mb;  // default 25 MiB, first bucket 1 MiB
  bool gradient_as_bucket_view = false;
  bool find_unused_parameters = false;
  // Defaults to distributed::default_process_group().
  std::shared_ptr<distributed::ProcessGroup> process_group;
};

// _ReplicateState: what replicate keeps on the module.
class ReplicateState : public composable::State {
 public:
  bool has_initialized() const { return initialized_; }
  // The engine's device_ids (DDP's `device_ids`): none for CPU training.
  std::optional<std::vector<int64_t>> device_ids() const { return device_ids_; }
  // FQNs (relative to the module) of the synchronised parameters; empty until
  // the first forward.
  const std::vector<std::string>& param_names() const { return param_names_; }
  // DDP.set_requires_gradient_sync.
  void set_requires_gradient_sync(bool sync) { no_sync_ = !sync; }
  // DDP.register_comm_hook: kept, and given to the engine when it is built at
  // the first forward; a hook registered later is kept but never used, and
  // two before the first forward fail it (REPLICATE-HOOK-001, -002).
  void register_comm_hook(CommHook hook) { comm_hooks_.push_back(hook); }
  std::shared_ptr<Reducer> reducer() const { return reducer_; }

 private:
  friend class ReplicateImpl;
  ReplicateOptions options_;
  bool initialized_ = false;
  bool no_sync_ = false;
  std::vector<CommHook> comm_hooks_;
  std::optional<std::vector<int64_t>> device_ids_;
  std::vector<std::string> param_names_;
  std::vector<torch::Tensor> params_;
  std::shared_ptr<Reducer> reducer_;
};

// The `replicate` contract (registry name "replicate"); one per process.
const composable::Contract& replicate_contract();

// replicate(module, **options): returns the module, now of class DDP<Name>.
std::shared_ptr<nn::Module> replicate(const std::shared_ptr<nn::Module>& module, ReplicateOptions options = {});
// replicate([modules...]): PyTorch's replicate takes one module; see REPLICATE-API-004.
void replicate(const composable::Modules& modules, ReplicateOptions options = {});

// replicate.state(module), or nullptr.
std::shared_ptr<ReplicateState> replicate_state(const nn::Module& module);

}  // namespace ccts::replicate
