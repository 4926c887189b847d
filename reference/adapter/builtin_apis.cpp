#include "builtin_apis.h"

#include <algorithm>
#include <map>
#include <stdexcept>

#include <torch/torch.h>

#include "ccts/distributed/device_mesh.h"
#include "ccts/distributed/process_group.h"
#include "ccts/errors.h"
#include "ccts/mutants.h"
#include "ccts/fully_shard/fully_shard.h"
#include "ccts/replicate/replicate.h"
#include "ccts/values/codec.h"

namespace ccts::adapter {

namespace {

// A kwarg as the Python value a PyTorch adapter would pass: integers, strings
// (devices), booleans, numbers, null and lists of those.
nn::Value python_value(const json& v) {
  if (v.is_null()) return nn::Value();
  if (v.is_boolean()) return nn::Value(v.get<bool>());
  if (v.is_number_integer()) return nn::Value(v.get<std::int64_t>());
  if (v.is_number()) return nn::Value(v.get<double>());
  if (v.is_string()) return nn::Value(v.get<std::string>());
  if (v.is_array()) {
    nn::Value::Items items;
    for (const auto& item : v) items.push_back(python_value(item));
    return nn::Value::list(std::move(items));
  }
  throw std::invalid_argument("apply.kwargs: cannot pass " + v.dump());
}

void check_kwargs(const json& kwargs, std::initializer_list<const char*> known, const std::string& api) {
  for (const auto& item : kwargs.items()) {
    bool found = false;
    for (const char* k : known) found = found || item.key() == k;
    if (!found) throw std::invalid_argument(api + "() got an unexpected keyword argument '" + item.key() + "'");
  }
}

// `mesh: {shape, names, instance, from_groups, dim}`: made once per session
// for each shape, names, instance and way of making, as a program makes its
// mesh once (`world_size` in shape is the world's size); `dim` takes its 1-D
// sub-mesh.
std::shared_ptr<distributed::DeviceMesh> device_mesh(const json& spec) {
  static std::map<std::string, std::shared_ptr<distributed::DeviceMesh>> meshes;
  std::vector<int64_t> shape;
  for (const auto& size : spec.at("shape")) {
    shape.push_back(size == "world_size" ? distributed::default_process_group()->size() : size.get<int64_t>());
  }
  const std::vector<std::string> names = spec.value("names", std::vector<std::string>{});
  const bool from_groups = spec.value("from_groups", false);
  const std::string key = json({shape, names, spec.value("instance", ""), from_groups}).dump();
  auto& mesh = meshes[key];
  if (!mesh && from_groups) {  // each dim's groups made first, then DeviceMesh.from_group
    std::vector<std::shared_ptr<distributed::ProcessGroup>> groups;
    for (std::size_t d = 0; d < shape.size(); ++d) {
      groups.push_back(distributed::default_process_group()->new_group_of(distributed::DeviceMesh::groups_along(shape, d)));
    }
    mesh = distributed::DeviceMesh::from_group(std::move(groups), shape, names);
  }
  if (!mesh) mesh = distributed::DeviceMesh::init(distributed::default_process_group(), shape, names);
  return spec.contains("dim") ? mesh->sub(spec["dim"].get<std::string>()) : mesh;
}

// `mp_policy: {param_dtype, reduce_dtype, output_dtype, cast_forward_inputs}`, dtypes by name.
fully_shard::MixedPrecisionPolicy mp_policy(const json& spec) {
  auto dtype = [&](const char* key) -> std::optional<torch::ScalarType> {
    if (!spec.contains(key)) return std::nullopt;
    return values::dtype_from_name(spec[key].get<std::string>());
  };
  fully_shard::MixedPrecisionPolicy policy;
  policy.param_dtype = dtype("param_dtype");
  policy.reduce_dtype = dtype("reduce_dtype");
  policy.output_dtype = dtype("output_dtype");
  policy.cast_forward_inputs = spec.value("cast_forward_inputs", true);
  return policy;
}

// `dp_mesh_dims: {shard, replicate}`: a name or a list of names each.
fully_shard::DataParallelMeshDims dp_mesh_dims(const json& spec) {
  auto names = [&](const char* key) {
    if (!spec.contains(key)) return std::vector<std::string>{};
    const json& v = spec[key];
    return v.is_string() ? std::vector<std::string>{v.get<std::string>()} : v.get<std::vector<std::string>>();
  };
  return fully_shard::DataParallelMeshDims::make(names("shard"), names("replicate"));
}

// `shard_placement_fn: {dim: d | largest, every}` (spec/fully_shard.md).
std::function<std::optional<int64_t>(const torch::Tensor&)> shard_placement_fn(const json& spec) {
  const json dim = spec.at("dim");
  if (dim == "largest") {
    return [](const torch::Tensor& p) -> std::optional<int64_t> {
      const auto sizes = p.sizes();
      return static_cast<int64_t>(std::max_element(sizes.begin(), sizes.end()) - sizes.begin());
    };
  }
  const int64_t d = dim.get<int64_t>();
  const bool every = spec.value("every", false);
  return [d, every](const torch::Tensor& p) -> std::optional<int64_t> {
    if (!every && (d < -p.dim() || d >= p.dim())) return std::nullopt;
    return d;
  };
}

json layout_json(const torch::Tensor& t) {
  if (auto layout = fully_shard::sharded_layout(t)) {
    return {{"sharded", true},
            {"shape", layout->global_shape},
            {"local_shape", t.sizes().vec()},
            {"placements", layout->placements}};
  }
  return {{"sharded", false}, {"shape", t.sizes().vec()}};
}

// Parameters with a gradient, grouped by the storage the gradients live in.
json grad_storage_groups(nn::Module& module) {
  std::vector<std::pair<const void*, std::vector<std::string>>> groups;
  for (const auto& [fqn, p] : module.named_parameters()) {
    if (!p.grad().defined()) continue;
    const void* storage = p.grad().storage().unsafeGetStorageImpl();
    auto it = std::find_if(groups.begin(), groups.end(), [&](const auto& g) { return g.first == storage; });
    if (it == groups.end()) {
      groups.push_back({storage, {fqn}});
    } else {
      it->second.push_back(fqn);
    }
  }
  json out = json::array();
  for (const auto& group : groups) out.push_back(group.second);
  return out;
}

}  // namespace

// `model.<path>.<name>`: a parameter of a module, looked up as PyTorch's
// get_parameter does, with its AttributeError texts (FIXTURES-REF-001).
torch::Tensor parameter_of(const json& ref, const ModuleRef& module_ref) {
  const std::string text = ref.get<std::string>();
  const std::size_t dot = text.rfind('.');
  if (dot == std::string::npos) throw std::invalid_argument("'" + text + "' is not a parameter reference (model.<path>.<name>)");
  auto module = module_ref(json(text.substr(0, dot)));
  const std::string name = text.substr(dot + 1);
  if (module->has_parameter(name)) return module->parameter(name);
  if (module->has_child(name) || module->has_buffer(name) || module->has_attribute(name)) {
    throw std::invalid_argument("`" + name + "` is not an nn.Parameter");
  }
  throw std::invalid_argument(module->type_name() + " has no attribute `" + name + "`");
}

json strings_json(const std::vector<std::string>& items) { return {{"kind", "strings"}, {"items", items}}; }
json json_value(json value) { return {{"kind", "json"}, {"value", std::move(value)}}; }

const composable::Contract* builtin_contract(const std::string& name) {
  if (name == "replicate") return &replicate::replicate_contract();
  if (name == "fully_shard") return &fully_shard::fully_shard_contract();
  return nullptr;
}

std::string builtin_state_class(const std::string& api) {
  if (api == "replicate") return "_ReplicateState";
  if (api == "fully_shard") return "FSDPState";
  throw std::invalid_argument("no API named '" + api + "'");
}

void apply_builtin(const std::string& api, const json& to, const json& kwargs, const ModuleRef& module_ref) {
  if (api == "replicate") {
    check_kwargs(kwargs, {"ignored_modules", "device_id", "bucket_cap_mb", "gradient_as_bucket_view",
                          "find_unused_parameters", "process_group"}, api);
    replicate::ReplicateOptions options;
    for (const auto& ref : kwargs.value("ignored_modules", json::array())) options.ignored_modules.push_back(module_ref(ref));
    if (kwargs.contains("device_id")) options.device_id = python_value(kwargs["device_id"]);
    if (kwargs.contains("bucket_cap_mb")) options.bucket_cap_mb = kwargs["bucket_cap_mb"].get<double>();
    options.gradient_as_bucket_view = kwargs.value("gradient_as_bucket_view", false);
    options.find_unused_parameters = kwargs.value("find_unused_parameters", false);
    if (kwargs.contains("process_group")) {  // {subgroups_of: n}: this rank's group of new_subgroups(n)
      options.process_group =
          distributed::default_process_group()->new_subgroup(kwargs["process_group"].at("subgroups_of").get<int>());
    }
    if (to.is_array()) {
      composable::Modules modules;
      for (const auto& ref : to) modules.push_back(module_ref(ref));
      replicate::replicate(modules, options);
    } else {
      replicate::replicate(module_ref(to), options);
    }
    return;
  }
  if (api == "fully_shard") {
    check_kwargs(kwargs, {"reshard_after_forward", "ignored_params", "mesh", "shard_placement_fn", "mp_policy",
                          "dp_mesh_dims"}, api);
    fully_shard::FullyShardOptions options;
    if (kwargs.contains("reshard_after_forward")) options.reshard_after_forward = python_value(kwargs["reshard_after_forward"]);
    for (const auto& ref : kwargs.value("ignored_params", json::array())) options.ignored_params.push_back(parameter_of(ref, module_ref));
    if (kwargs.contains("mesh")) options.mesh = device_mesh(kwargs["mesh"]);
    if (kwargs.contains("shard_placement_fn")) options.shard_dim = shard_placement_fn(kwargs["shard_placement_fn"]);
    if (kwargs.contains("mp_policy")) options.mp_policy = mp_policy(kwargs["mp_policy"]);
    if (kwargs.contains("dp_mesh_dims")) options.dp_mesh_dims = dp_mesh_dims(kwargs["dp_mesh_dims"]);
    if (to.is_array()) {
      composable::Modules modules;
      for (const auto& ref : to) modules.push_back(module_ref(ref));
      fully_shard::fully_shard(modules, options);
    } else {
      fully_shard::fully_shard(module_ref(to), options);
    }
    return;
  }
  throw std::invalid_argument("no API named '" + api + "'");
}

void set_requires_gradient_sync(nn::Module& module, bool value, bool recurse) {
  if (fully_shard::fully_shard_state(module)) {
    fully_shard::set_requires_gradient_sync(module, value, recurse);
  } else if (auto state = replicate::replicate_state(module)) {
    state->set_requires_gradient_sync(value);
  } else {
    throw std::invalid_argument("'" + module.type_name() + "' object has no attribute 'set_requires_gradient_sync'");
  }
}

namespace {

bool recurse_of(const json& body) { return body.value("recurse", true); }
std::vector<std::shared_ptr<nn::Module>> modules_of(const json& refs, const ModuleRef& module_ref) {
  std::vector<std::shared_ptr<nn::Module>> out;
  for (const auto& ref : refs) out.push_back(module_ref(ref));
  return out;
}

using MethodStep = void (*)(nn::Module& module, const json& body, const ModuleRef& module_ref);

// FSDPModule's setters (spec/fully_shard.md): the step is the method, `value` its
// argument; and distribute_module, which prepares a model for dp_mesh_dims,
// and broadcast.
const std::map<std::string, MethodStep>& method_steps() {
  static const std::map<std::string, MethodStep> table = {
      {"set_reshard_after_forward",
       [](nn::Module& m, const json& b, const ModuleRef&) {
         fully_shard::set_reshard_after_forward(m, python_value(b.at("value")), recurse_of(b));
       }},
      {"set_reshard_after_backward",
       [](nn::Module& m, const json& b, const ModuleRef&) {
         fully_shard::set_reshard_after_backward(m, b.at("value").get<bool>(), recurse_of(b));
       }},
      {"set_reduce_scatter_max_input_buffers",
       [](nn::Module& m, const json& b, const ModuleRef&) {
         fully_shard::set_reduce_scatter_max_input_buffers(m, python_value(b.at("value")), recurse_of(b));
       }},
      {"set_is_last_backward",
       [](nn::Module& m, const json& b, const ModuleRef&) { fully_shard::set_is_last_backward(m, b.at("value").get<bool>()); }},
      {"set_gradient_divide_factor",
       [](nn::Module& m, const json& b, const ModuleRef&) {
         fully_shard::set_gradient_divide_factor(m, b.at("value").get<double>());
       }},
      {"set_all_reduce_hook",
       [](nn::Module& m, const json& b, const ModuleRef&) {
         auto group = b.contains("mesh") ? device_mesh(b["mesh"])->group(0) : distributed::default_process_group();
         const auto op = b.at("op") == "avg" ? distributed::ReduceOp::Avg : distributed::ReduceOp::Sum;
         fully_shard::set_all_reduce_hook(m, [group, op](torch::Tensor& reduced) { group->all_reduce(reduced, op); });
       }},
      {"distribute_module",
       [](nn::Module& m, const json& b, const ModuleRef&) {
         fully_shard::distribute_module(m, device_mesh(b.at("mesh")),
                                        b.value("placements", std::map<std::string, std::vector<std::string>>{}));
       }},
      {"broadcast",
       [](nn::Module& m, const json& b, const ModuleRef&) {
         auto group = b.contains("mesh") ? device_mesh(b["mesh"])->group(0) : distributed::default_process_group();
         torch::NoGradGuard no_grad;
         if (mutant("broadcast_skipped")) return;
         for (auto& [fqn, p] : m.named_parameters()) group->broadcast(p, 0);  // a sharded one: its local shard
         for (auto& [fqn, t] : m.named_buffers()) group->broadcast(t, 0);
       }},
      {"set_force_sum_reduction_for_comms",
       [](nn::Module& m, const json& b, const ModuleRef&) {
         fully_shard::set_force_sum_reduction_for_comms(m, b.at("value").get<bool>());
       }},
      {"register_fsdp_forward_method",
       [](nn::Module& m, const json& b, const ModuleRef&) {
         fully_shard::register_fsdp_forward_method(m, b.at("method").get<std::string>());
       }},
      {"set_modules_to_forward_prefetch",
       [](nn::Module& m, const json& b, const ModuleRef& ref) {
         fully_shard::set_modules_to_forward_prefetch(m, modules_of(b.at("modules"), ref));
       }},
      {"set_modules_to_backward_prefetch",
       [](nn::Module& m, const json& b, const ModuleRef& ref) {
         fully_shard::set_modules_to_backward_prefetch(m, modules_of(b.at("modules"), ref));
       }},
  };
  return table;
}

}  // namespace

bool run_method_step(const std::string& step, const json& body, const ModuleRef& module_ref) {
  auto it = method_steps().find(step);
  if (it == method_steps().end()) return false;
  auto module = module_ref(body.at("model"));
  // register_fsdp_forward_method and distribute_module are functions (the first a
  // no-op on other modules); the rest are FSDPModule methods.
  const bool function = step == "register_fsdp_forward_method" || step == "distribute_module" || step == "broadcast";
  if (!function && !fully_shard::fully_shard_state(*module)) {
    throw std::invalid_argument("'" + module->type_name() + "' object has no attribute '" + step + "'");
  }
  it->second(*module, body, module_ref);
  return true;
}

torch::Tensor distribute_value(const torch::Tensor& value, const json& mesh_spec) {
  return fully_shard::from_local_replicated(value, device_mesh(mesh_spec));
}

void unshard(nn::Module& module) { fully_shard::unshard(module); }

void register_comm_hook(nn::Module& module, const std::string& hook) {
  auto state = replicate::replicate_state(module);
  if (!state) throw std::invalid_argument("'" + module.type_name() + "' object has no attribute 'register_comm_hook'");
  if (hook == "allreduce") {
    state->register_comm_hook(replicate::CommHook::Mean);
  } else if (hook == "sum") {
    state->register_comm_hook(replicate::CommHook::Sum);
  } else {
    throw std::invalid_argument("register_comm_hook: hook must be allreduce or sum, not '" + hook + "'");
  }
}

void reshard(nn::Module& module) { fully_shard::reshard(module); }
void reset_iter_state(nn::Module& module) { fully_shard::reset_iter_state(module); }

json named_tensors_json(const nn::NamedTensors& items) {
  json list = json::array();
  for (const auto& [fqn, t] : items) list.push_back(json::array({fqn, values::encode_tensor(t)}));
  return {{"kind", "named_tensors"}, {"items", list}};
}

namespace {

using Observer = json (*)(const json& ref, const ModuleRef& module_ref);

json observe_type_name(const json& ref, const ModuleRef& module_ref) { return json_value(module_ref(ref)->type_name()); }

json observe_replicate_device_ids(const json& ref, const ModuleRef& module_ref) {
  auto state = replicate::replicate_state(*module_ref(ref));
  if (!state || !state->has_initialized()) {
    throw std::invalid_argument("'_ReplicateState' object has no attribute '_ddp_weakref'");
  }
  return json_value(state->device_ids() ? json(*state->device_ids()) : json(nullptr));
}

json observe_grad_storage_groups(const json& ref, const ModuleRef& module_ref) {
  return json_value(grad_storage_groups(*module_ref(ref)));
}

json layouts(const nn::NamedTensors& items) {
  json out = json::object();
  for (const auto& [fqn, t] : items) out[fqn] = layout_json(t);
  return json_value(out);
}

json observe_parameter_layout(const json& ref, const ModuleRef& module_ref) {
  return layouts(module_ref(ref)->named_parameters());
}

json observe_grad_layout(const json& ref, const ModuleRef& module_ref) {
  nn::NamedTensors grads;
  for (const auto& [fqn, p] : module_ref(ref)->named_parameters()) {
    if (p.grad().defined()) grads.emplace_back(fqn, p.grad());
  }
  return layouts(grads);
}

// The reference's sharded tensor is its local shard: one contiguity for both.
json observe_contiguity(const json& ref, const ModuleRef& module_ref) {
  json out = json::object();
  for (const auto& [fqn, p] : module_ref(ref)->named_parameters()) {
    out[fqn] = {{"parameter", p.is_contiguous()}};
    if (p.grad().defined()) out[fqn]["grad"] = p.grad().is_contiguous();
  }
  return json_value(out);
}

json observe_state_dict_layout(const json& ref, const ModuleRef& module_ref) {
  return layouts(module_ref(ref)->state_dict("", true));
}

// A sharded parameter reports its global shape, as DTensor.shape does.
json observe_parameter_shapes(const json& ref, const ModuleRef& module_ref) {
  json shapes = json::object();
  for (const auto& [fqn, t] : module_ref(ref)->named_parameters()) {
    auto layout = fully_shard::sharded_layout(t);
    shapes[fqn] = layout ? layout->global_shape : t.sizes().vec();
  }
  return json_value(shapes);
}

json observe_full_parameters(const json& ref, const ModuleRef& module_ref) {
  nn::NamedTensors full;
  for (const auto& [fqn, t] : module_ref(ref)->named_parameters()) full.emplace_back(fqn, fully_shard::full_tensor(t));
  return named_tensors_json(full);
}

json observe_full_state_dict(const json& ref, const ModuleRef& module_ref) {
  nn::NamedTensors full;
  // keep_vars: the registered tensors themselves, which carry their sharded layout.
  for (const auto& [key, t] : module_ref(ref)->state_dict("", true)) full.emplace_back(key, fully_shard::full_tensor(t).detach());
  return named_tensors_json(full);
}

json observe_managed_parameters(const json& ref, const ModuleRef& module_ref) {
  const std::string api = ref.at("api").get<std::string>();
  auto module = module_ref(ref.at("module"));
  if (api == "replicate") {
    auto state = replicate::replicate_state(*module);
    if (!state) throw std::invalid_argument("replicate was not applied to '" + ref.at("module").get<std::string>() + "'");
    return strings_json(state->param_names());
  }
  if (api == "fully_shard") {
    auto fqns = fully_shard::managed_parameters(*module);
    return fqns ? strings_json(*fqns) : json_value(nullptr);
  }
  throw std::invalid_argument("managed_parameters.api: expected replicate or fully_shard, got '" + api + "'");
}

const std::map<std::string, Observer>& observers() {
  static const std::map<std::string, Observer> table = {
      {"type_name", &observe_type_name},
      {"replicate_device_ids", &observe_replicate_device_ids},
      {"grad_storage_groups", &observe_grad_storage_groups},
      {"parameter_layout", &observe_parameter_layout},
      {"state_dict_layout", &observe_state_dict_layout},
      {"grad_layout", &observe_grad_layout},
      {"contiguity", &observe_contiguity},
      {"parameter_shapes", &observe_parameter_shapes},
      {"full_parameters", &observe_full_parameters},
      {"full_state_dict", &observe_full_state_dict},
      {"managed_parameters", &observe_managed_parameters},
  };
  return table;
}

}  // namespace

std::optional<json> observe_builtin(const std::string& kind, const json& ref, const ModuleRef& module_ref) {
  auto it = observers().find(kind);
  if (it == observers().end()) return std::nullopt;
  return it->second(ref, module_ref);
}

}  // namespace ccts::adapter
