#pragma once
// The suite's built-in APIs in the reference adapter: `apply` of replicate
// and fully_shard with their kwargs, their FSDPModule/DDP methods as steps,
// and the observations of spec/replicate.md and spec/fully_shard.md.
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "ccts/composable/contract.h"
#include "ccts/nn/module.h"

namespace ccts::adapter {

using json = nlohmann::ordered_json;
using ModuleRef = std::function<std::shared_ptr<nn::Module>(const json&)>;

// The contract of a built-in API by name, or nullptr.
const composable::Contract* builtin_contract(const std::string& name);

// The class name of a built-in API's state (`_ReplicateState`, `FSDPState`).
std::string builtin_state_class(const std::string& api);

// `model.<path>.<name>`: a parameter, looked up as get_parameter does.
torch::Tensor parameter_of(const json& ref, const ModuleRef& module_ref);

// apply: {api: replicate | fully_shard, to, kwargs}.
void apply_builtin(const std::string& api, const json& to, const json& kwargs, const ModuleRef& module_ref);

// The steps of methods the APIs add: set_requires_gradient_sync (replicate and
// fully_shard), unshard and reshard (fully_shard).
void set_requires_gradient_sync(nn::Module& module, bool value, bool recurse = true);
// FSDPModule's setter steps (set_reshard_after_forward, ...) and distribute_module: runs `step` on
// body.model and returns true, or returns false for a step that is not one.
bool run_method_step(const std::string& step, const json& body, const ModuleRef& module_ref);
void unshard(nn::Module& module);
// register_comm_hook(None, hook) on a replicate module: `allreduce` or `sum`.
void register_comm_hook(nn::Module& module, const std::string& hook);
void reshard(nn::Module& module);
void reset_iter_state(nn::Module& module);
// distribute_value: the tensor as a DTensor replicated on `mesh_spec`'s mesh.
torch::Tensor distribute_value(const torch::Tensor& value, const json& mesh_spec);

// The observation of kind `kind` (one of spec/replicate.md's and
// spec/fully_shard.md's, or parameter_shapes, which reports a sharded
// parameter's global shape), or nothing for a kind that is not theirs.
std::optional<json> observe_builtin(const std::string& kind, const json& ref, const ModuleRef& module_ref);

// Observations as the protocol sends them (spec/ADAPTERS.md, "Observations").
// Named tensors: a sharded tensor is its local shard already.
json named_tensors_json(const nn::NamedTensors& items);
json strings_json(const std::vector<std::string>& items);
json json_value(json value);

}  // namespace ccts::adapter
