#pragma once
// The suite's built-in APIs in the reference adapter: `apply` of replicate
// and fully_shard with their kwargs, their FSDPModule/DDP methods as steps,
// and the observations of spec/replicate.md and spec/fully_shard.md.
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "ccts/composable/contract.h"
#include "ccts/nn/module.h"

namespace ccts::adapter {

using json = nlohmann::ordered_json;
using ModuleRef = std::function<std::shared_ptr<nn::Module>(const json&)>;

// The contract of a built-in API by name, or nullptr.
const composable::Contract* builtin_contract(const std::string& name);

// apply: {api: replicate | fully_shard, to, kwargs}.
void apply_builtin(const std::string& api, const json& to, const json& kwargs, const ModuleRef& module_ref);

// set_requires_gradient_sync / unshard / reshard on a replicate or fully_shard module.
void set_requires_gradient_sync(nn::Module& module, bool value);

// The observation of kind `kind` (one of spec/replicate.md's and
// spec/fully_shard.md's), or nothing for a kind that is not theirs.
std::optional<json> observe_builtin(const std::string& kind, const json& ref, const ModuleRef& module_ref);

// A tensor as observed: a sharded one is its local shard already.
json named_tensors_json(const nn::NamedTensors& items);

}  // namespace ccts::adapter
