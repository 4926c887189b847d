#include "ccts/fully_shard/fully_shard.h"

#include <algorithm>
#include <sstream>
#include <unordered_map>
#include <unordered_set>

#include <torch/torch.h>

#include "ccts/distributed/device_mesh.h"
#include "ccts/distributed/process_group.h"
#include "ccts/errors.h"
#include "ccts/mutants.h"
#include "ccts/nn/grad_hooks.h"
#include "ccts/nn/modules.h"
#include "ccts/python_repr.h"
#include "fsdp_param_group.h"
#include "sharded_registry.h"

namespace ccts::fully_shard {

// ---------------------------------------------------------------------------
// The sharded-tensor registry (sharded_registry.h).
namespace detail {
namespace {
struct Entry {
  c10::weak_intrusive_ptr<c10::TensorImpl> tensor;
  ShardedLayout layout;
  FullTensorFn full;
  ShardOfFn shard_of;
};
std::unordered_map<const c10::TensorImpl*, Entry>& registry() {
  static std::unordered_map<const c10::TensorImpl*, Entry> entries;
  return entries;
}
const Entry* find(const torch::Tensor& tensor) {
  if (!tensor.defined()) return nullptr;
  auto it = registry().find(tensor.unsafeGetTensorImpl());
  if (it == registry().end()) return nullptr;
  auto alive = it->second.tensor.lock();
  return alive.get() == tensor.unsafeGetTensorImpl() ? &it->second : nullptr;
}
}  // namespace

void mark_sharded(const torch::Tensor& tensor, ShardedLayout layout, FullTensorFn full, ShardOfFn shard_of) {
  auto& entries = registry();
  for (auto it = entries.begin(); it != entries.end();) {
    it = it->second.tensor.expired() ? entries.erase(it) : std::next(it);
  }
  entries.insert_or_assign(tensor.unsafeGetTensorImpl(),
                           Entry{c10::weak_intrusive_ptr<c10::TensorImpl>(tensor.getIntrusivePtr()),
                                 std::move(layout), std::move(full), std::move(shard_of)});
}

ShardOfFn shard_of_fn(const torch::Tensor& tensor) {
  const Entry* entry = find(tensor);
  return entry ? entry->shard_of : nullptr;
}

FullTensorFn full_tensor_fn(const torch::Tensor& tensor) {
  const Entry* entry = find(tensor);
  return entry ? entry->full : nullptr;
}
}  // namespace detail

std::optional<ShardedLayout> sharded_layout(const torch::Tensor& tensor) {
  const detail::Entry* entry = detail::find(tensor);
  if (!entry) return std::nullopt;
  return entry->layout;
}

torch::Tensor shard_of(const torch::Tensor& tensor, const torch::Tensor& full) {
  auto fn = detail::shard_of_fn(tensor);
  return fn ? fn(full) : full;
}

torch::Tensor full_tensor(const torch::Tensor& tensor) {
  auto full = detail::full_tensor_fn(tensor);
  return full ? full() : tensor;
}

// ---------------------------------------------------------------------------
// FSDPState: one per fully_shard call.

namespace {

constexpr const char* kDeepCopyError = "FSDP does not support deepcopy. Please use state dict for serialization.";

// What the states under one root share once it is lazily initialized. The
// states own it, so it holds them weakly.
struct StateContext {
  std::vector<std::weak_ptr<FSDPState>> all_states;
  // The state whose forward began this iteration (FSDP2's iter_forward_root):
  // when its forward ends, it completes the groups left partial.
  const FSDPState* iter_forward_root = nullptr;
  std::shared_ptr<nn::OncePerBackward> final_callback_once = std::make_shared<nn::OncePerBackward>();
};

bool registry_has(const nn::Module& module, const std::string& name) {
  auto registry = composable::get_registry(module);
  return registry && std::any_of(registry->begin(), registry->end(),
                                 [&](const auto& item) { return item.first == name; });
}

// Python's str() of a reshard_after_forward value in fully_shard's messages.
std::string python_str(const nn::Value& value) {
  switch (value.kind()) {
    case nn::Value::Kind::None: return "None";
    case nn::Value::Kind::Int: return std::to_string(value.to_int());
    case nn::Value::Kind::Bool: return value.to_bool() ? "True" : "False";
    case nn::Value::Kind::String: return value.to_string();
    case nn::Value::Kind::Double: {
      std::ostringstream out;
      out << value.to_double();
      return out.str();
    }
    default: return nn::Value::kind_name(value.kind());
  }
}

std::shared_ptr<composable::Contract> make_contract();

}  // namespace

class FSDPState : public composable::State {
 public:
  std::vector<nn::Module*> modules;  // the call's modules (a list call has several)
  std::shared_ptr<FSDPParamGroup> group;
  std::optional<bool> is_root;  // decided at the first forward through it
  bool auto_reshard_after_forward = true;
  MixedPrecisionPolicy mp_policy;
  std::shared_ptr<StateContext> context;
  // Modules of this call whose forward has not run yet in this pass: the
  // group reshards after the last of them.
  std::unordered_set<const nn::Module*> modules_to_run;
  std::vector<std::weak_ptr<FSDPState>> forward_prefetch, backward_prefetch;

  void lazy_init() {
    if (is_root) return;
    is_root = true;
    if (modules.size() > 1) {
      std::string reprs;
      for (const nn::Module* m : modules) reprs += (reprs.empty() ? "" : ", ") + m->repr();
      throw std::runtime_error("FSDP requires a single root module but got (" + reprs + ")");
    }
    context = std::make_shared<StateContext>();
    nn::Module* module = modules.front();
    for (const auto& [fqn, sub] : module->named_modules()) {
      auto state = fully_shard_state(*sub);
      if (!state) continue;
      const bool seen = std::any_of(context->all_states.begin(), context->all_states.end(),
                                    [&](const auto& weak) { return weak.lock() == state; });
      if (seen) continue;  // a list call's state, met at its second module
      if (sub.get() != module && !mutant("fsdp_any_root")) {
        if (state->is_root) {
          throw ApiError("lazy_init", "FSDP state has already been lazily initialized for " + fqn +
                                          "\nFSDP requires running forward through the root module first");
        }
        state->is_root = false;
        state->context = context;
      }
      context->all_states.push_back(state);
    }
    for (const auto& weak : context->all_states) {
      if (auto state = weak.lock(); state && state->group) state->group->reshard_replaced_params();
    }
    check_no_duplicate_params();
    check_materialized();
    // The root keeps its parameters gathered from forward to backward
    // unless told otherwise.
    if (auto_reshard_after_forward && group) group->post_forward_mode = FSDPParamGroup::PostForward::Keep;
  }

  // FSDP-SHARED-002: a Parameter two groups manage (tied across groups).
  void check_no_duplicate_params() const {
    std::unordered_set<const c10::TensorImpl*> seen;
    std::unordered_set<std::string> seen_alike;  // the mutant's key: alike, not the same
    nn::Module& root = *modules.front();
    for (const auto& weak : context->all_states) {
      auto state = weak.lock();
      if (!state || !state->group) continue;
      for (const auto& p : state->group->params()) {
        if (mutant("fsdp_duplicates_by_shape")) {
          const std::string key = torch_size_repr(p->sharded().sizes()) + std::string(c10::toString(p->sharded().scalar_type()));
          if (seen_alike.insert(key).second) continue;
        } else if (seen.insert(p->original()).second) {
          continue;
        }
        std::string fqn;
        for (const auto& [name, t] : root.named_parameters()) {
          if (p->owns(t)) fqn = name;
        }
        throw std::invalid_argument("Parameter '" + fqn + "' is shared with a parameter already managed by another FSDP "
                                    "group. For shared/tied parameters, use fully_shard([module_a, module_b]) to place "
                                    "them in the same FSDP group.");
      }
    }
  }

  // FSDP-INIT-002: the first group, in the root's order, with parameters still on meta.
  void check_materialized() const {
    nn::Module& root = *modules.front();
    for (const auto& weak : context->all_states) {
      auto state = weak.lock();
      if (!state || !state->group) continue;
      std::string fqns;
      for (const auto& [fqn, p] : root.named_parameters()) {
        if (p.is_meta() && state->group->owns(p)) fqns += (fqns.empty() ? "'" : ", '") + fqn + "'";
      }
      if (fqns.empty()) continue;
      throw std::runtime_error(
          "FSDP parameters should be materialized from meta device before training, but the following were still on "
          "meta device: [" + fqns + "]\nFor example, call module.to_empty(device) to materialize to device and call "
          "module.reset_parameters() on each module to initialize values.");
    }
  }

  // Between this state's pre-backward and the end of backward: a forward
  // then is activation checkpointing's recomputation, which runs on the
  // group gathered for backward (gathered again if a post-backward already
  // resharded it) and must not reshard it.
  bool in_backward = false;

  void pre_forward() {
    if (in_backward && !mutant("fsdp_reshards_in_recompute")) {
      if (group) group->unshard();
      return;
    }
    if (modules_to_run.empty()) modules_to_run.insert(modules.begin(), modules.end());
    lazy_init();
    if (context && !context->iter_forward_root) context->iter_forward_root = this;
    if (group) group->unshard();
    for (const auto& weak : forward_prefetch) {
      if (auto target = weak.lock(); target && target->group) target->group->unshard();
    }
  }

  // cast_forward_inputs: the floating-point inputs in param_dtype (FSDP-MP-001).
  std::optional<nn::ForwardPreResult> cast_inputs(const nn::Args& args, const nn::Kwargs& kwargs) const {
    if (!mp_policy.param_dtype || !mp_policy.cast_forward_inputs || mutant("mp_inputs_not_cast")) return std::nullopt;
    nn::ForwardPreResult cast{args, kwargs};
    for (auto& a : cast.args) a = cast_floating(a, *mp_policy.param_dtype);
    for (auto& [k, v] : cast.kwargs) v = cast_floating(v, *mp_policy.param_dtype);
    return cast;
  }

  std::optional<nn::Value> cast_output(const nn::Value& output) const {
    if (!mp_policy.output_dtype) return std::nullopt;
    return cast_floating(output, *mp_policy.output_dtype);
  }

  static nn::Value cast_floating(const nn::Value& v, torch::ScalarType dtype) {
    return v.map_tensors([dtype](const torch::Tensor& t) {
      return t.is_floating_point() && t.scalar_type() != dtype ? t.to(dtype) : t;
    });
  }

  // `self` is this state: the pre-backward hook holds it weakly. Returns
  // the output forward's caller sees: cast to the output_dtype of each
  // partial group it completed, then to this state's (FSDP-MP-003).
  nn::Value post_forward(const nn::Module& module, const nn::Value& output, const std::shared_ptr<FSDPState>& self) {
    const bool recomputing = in_backward && !mutant("fsdp_reshards_in_recompute");
    const nn::Value out = recomputing ? output : end_forward(module, output, self);
    return cast_output(out).value_or(out);
  }

  // This module's forward is done: the group completes after the call's last
  // module, and the iteration's first state completes the partial ones.
  nn::Value end_forward(const nn::Module& module, const nn::Value& output, const std::shared_ptr<FSDPState>& self) {
    modules_to_run.erase(&module);
    if (modules_to_run.empty()) complete_forward(output, self);  // a list call reshards after its last module
    if (!context || context->iter_forward_root != this) return output;
    context->iter_forward_root = nullptr;
    return mutant("fsdp_partial_groups_left_open") ? output : complete_partial_forwards(output);
  }

  // FSDP2's _force_complete_incomplete_states: a list call whose forward ran
  // only some of its modules (FSDP-LIST-003) is completed on this output, as
  // if its last module had run, the last registered first.
  nn::Value complete_partial_forwards(nn::Value output) {
    for (auto it = context->all_states.rbegin(); it != context->all_states.rend(); ++it) {
      auto state = it->lock();
      if (!state || state.get() == this || state->modules_to_run.empty()) continue;
      state->complete_forward(output, state);
      state->modules_to_run.clear();
      output = state->cast_output(output).value_or(output);
    }
    return output;
  }

  // The group's post-forward and the pre-backward hook on `output`.
  void complete_forward(const nn::Value& output, const std::shared_ptr<FSDPState>& self) {
    if (group) group->post_forward();
    std::vector<torch::Tensor> needs_grad;
    for (const auto& t : output.tensors()) {
      if (t.requires_grad()) needs_grad.push_back(t);
    }
    if (needs_grad.empty()) return;
    std::weak_ptr<FSDPState> weak = self;
    nn::register_multi_grad_hook(needs_grad, [weak] {
      if (auto self = weak.lock()) self->pre_backward();
    }, nn::MultiGradMode::Any);
  }

  void pre_backward() {
    // Whichever state's backward comes first queues the root's final callback.
    if (context && context->final_callback_once->first()) {
      std::weak_ptr<StateContext> weak = context;
      nn::queue_backward_callback([weak] {
        if (auto ctx = weak.lock()) {
          ctx->iter_forward_root = nullptr;
          for (auto& weak_state : ctx->all_states) {
            auto state = weak_state.lock();
            if (!state) continue;
            state->in_backward = false;
            state->modules_to_run.clear();  // standalone calls of a partial group's modules
            if (state->group && state->group->owes_post_backward()) state->group->post_backward();
          }
        }
      });
    }
    in_backward = true;
    if (group) group->pre_backward();
    for (const auto& weak : backward_prefetch) {
      if (auto target = weak.lock(); target && target->group) target->group->unshard();
    }
  }
};

namespace {

std::shared_ptr<composable::Contract> make_contract() {
  return std::make_shared<composable::Contract>(
      "fully_shard", [](const composable::Modules&, bool) -> std::optional<composable::Contract::Returned> {
        throw std::logic_error("fully_shard is called through fully_shard::fully_shard()");
      },
      [] { return std::make_shared<FSDPState>(); });
}

// _get_managed_modules: depth first from the root, children before their
// parent; subtrees under another fully_shard call or under replicate are not ours.
void managed_modules(nn::Module& module, bool is_root, std::unordered_set<const nn::Module*>& visited,
                     std::vector<nn::Module*>& out) {
  if (registry_has(module, "replicate")) return;
  if (!is_root && fully_shard_state(module)) return;
  visited.insert(&module);
  for (const auto& [name, child] : module.named_children()) {
    if (!visited.count(child.get()) || mutant("fsdp_no_dedupe")) managed_modules(*child, false, visited, out);
  }
  out.push_back(&module);
}

void set_post_forward(FSDPParamGroup& group, const std::optional<nn::Value>& value, int world) {
  using Mode = FSDPParamGroup::PostForward;
  if (!value || value->kind() == nn::Value::Kind::Bool) {
    group.post_forward_mode = !value || value->to_bool() ? Mode::Reshard : Mode::Keep;
    return;
  }
  const int64_t k = value->to_int();
  if (k == 1) {
    group.post_forward_mode = Mode::Keep;
  } else if (k == world) {
    group.post_forward_mode = Mode::Reshard;
  } else {
    group.post_forward_mode = Mode::ReshardToGroup;
    group.post_forward_group_size = static_cast<int>(k);
  }
}

void check_reshard_after_forward(const std::optional<nn::Value>& value, int world) {
  if (!value) return;
  const auto kind = value->kind();
  if (kind != nn::Value::Kind::Bool && kind != nn::Value::Kind::Int) {
    throw std::invalid_argument(
        "reshard_after_forward should be a bool or an int representing the group size to reshard to, not " +
        python_str(*value));
  }
  if (kind == nn::Value::Kind::Int) {
    const int64_t k = value->to_int();
    if (k < 1 || k > world || world % k != 0) {
      throw std::invalid_argument("If passing reshard_after_forward as an int, it should be a factor of " +
                                  std::to_string(world) + ", not " + std::to_string(k));
    }
  }
}

// The mesh's shard and replicate groups (FSDP-MESH-001..003).
std::pair<std::shared_ptr<distributed::ProcessGroup>, std::shared_ptr<distributed::ProcessGroup>> mesh_groups(
    const FullyShardOptions& options) {
  if (!options.mesh) {
    return {options.process_group ? options.process_group : distributed::default_process_group(), nullptr};
  }
  const distributed::DeviceMesh& mesh = *options.mesh;
  const bool check = !mutant("mesh_unchecked");
  if (check && mesh.ndim() != 1 && mesh.ndim() != 2) {
    throw std::invalid_argument("fully_shard expects a 1D or 2D DeviceMesh but got " + mesh.repr());
  }
  if (mesh.ndim() == 1) return {mesh.group(0), nullptr};
  if (check && mesh.names().empty()) throw AssertionError("Please init the 2D mesh for HSDP with mesh_dim_names specified");
  return {mesh.group(1), mutant("hsdp_replicas_ignored") ? nullptr : mesh.group(0)};
}

// _validate_mesh with dp_mesh_dims, then the integer reshard_after_forward
// check (FSDP-MESH-004), before any parameter is looked at.
void check_spmd_mesh(const FullyShardOptions& options) {
  if (mutant("dp_mesh_dims_unchecked")) return;
  const DataParallelMeshDims& dims = *options.dp_mesh_dims;
  if (dims.shard.empty() && dims.replicate.empty()) {
    throw std::invalid_argument("At least one of shard or replicate must be set in dp_mesh_dims");
  }
  // Without a mesh, fully_shard's default mesh has no dim names.
  const std::vector<std::string> names = options.mesh ? options.mesh->names() : std::vector<std::string>{};
  if (names.empty()) throw std::invalid_argument("mesh must have mesh_dim_names when dp_mesh_dims is provided");
  std::vector<std::string> quoted;
  for (const auto& name : names) quoted.push_back("'" + name + "'");
  std::vector<std::string> dp_names = dims.shard;
  dp_names.insert(dp_names.end(), dims.replicate.begin(), dims.replicate.end());
  for (const auto& name : dp_names) {
    if (std::find(names.begin(), names.end(), name) == names.end()) {
      throw std::invalid_argument("Mesh dim name '" + name + "' not found in mesh.mesh_dim_names " + python_tuple(quoted));
    }
  }
  if (!dims.shard.empty() && options.reshard_after_forward && options.reshard_after_forward->kind() == nn::Value::Kind::Int) {
    throw ApiError("not_implemented", "reshard_after_forward as int is not yet supported with SPMD mesh (dp_mesh_dims)");
  }
}

// A placement as Python's str() prints it in these messages: S(0), R.
std::string placement_str(const std::string& placement) {
  if (placement == "Replicate()") return "R";
  if (placement.rfind("Shard(", 0) == 0) return "S(" + placement.substr(6);
  return placement;
}

// FSDPParam's checks of a parameter on an SPMD mesh (FSDP-MESH-004): a
// DTensor on the mesh passed to fully_shard, replicated on every DP dim.
void check_spmd_param(const FullyShardOptions& options, const torch::Tensor& p, const std::string& name) {
  if (mutant("dp_mesh_dims_unchecked")) return;
  const auto layout = sharded_layout(p);
  if (!layout || !layout->mesh) {
    throw std::invalid_argument(
        "When dp_mesh_dims is provided, all parameters must be DTensors on the full SPMD mesh (e.g. via "
        "distribute_module). Got plain tensor for parameter '" + name + "'.");
  }
  if (layout->mesh.get() != options.mesh.get()) {
    throw std::invalid_argument(
        "Expected param's DTensor mesh to be the same mesh passed to fully_shard, but got different mesh objects");
  }
  const std::vector<std::string>& names = options.mesh->names();
  auto check = [&](const std::vector<std::string>& dp_names, const char* kind) {
    for (const auto& dp_name : dp_names) {
      const auto index = static_cast<std::size_t>(std::find(names.begin(), names.end(), dp_name) - names.begin());
      if (layout->placements.at(index) != "Replicate()") {
        throw std::invalid_argument(std::string("Expected Replicate() on DP ") + kind + " dim '" + dp_name + "' (index " +
                                    std::to_string(index) + ") but got " + placement_str(layout->placements[index]));
      }
    }
  };
  check(options.dp_mesh_dims->shard, "shard");
  check(options.dp_mesh_dims->replicate, "replicate");
}

// The SPMD meshes the reference shards: (shard) and (replicate, shard), one
// name each, which train as the plain mesh of that shape.
void check_spmd_mesh_supported(const FullyShardOptions& options) {
  const DataParallelMeshDims& dims = *options.dp_mesh_dims;
  const std::vector<std::string>& names = options.mesh->names();
  const bool one_dim = names.size() == 1 && dims.shard == names && dims.replicate.empty();
  const bool hsdp = names.size() == 2 && dims.replicate == std::vector<std::string>{names[0]} &&
                    dims.shard == std::vector<std::string>{names[1]};
  if (!one_dim && !hsdp) {
    throw Unsupported("fully_shard: the reference takes dp_mesh_dims only for a mesh of dims (shard) or (replicate, shard)");
  }
}

// shard_placement_fn's dim for a parameter, made non-negative and checked (FSDP-PLACE-001/002).
int64_t shard_dim_of(const FullyShardOptions& options, const torch::Tensor& p, int world) {
  std::optional<int64_t> chosen = options.shard_dim ? options.shard_dim(p) : std::nullopt;
  if (!chosen || mutant("shard_placement_ignored")) return 0;
  int64_t dim = *chosen;
  if (dim < -p.dim() || dim >= p.dim()) {
    throw AssertionError("Shard dim " + std::to_string(dim) + " is invalid for " + std::to_string(p.dim()) +
                         "D tensor: " + torch_size_repr(p.sizes()));
  }
  if (dim < 0) dim += p.dim();
  if (dim != 0 && p.size(dim) % world != 0) {
    throw ApiError("not_implemented", "FSDP does not support uneven sharding on dim " + std::to_string(dim) + ": " +
                                          torch_size_repr(p.sizes()) + " (world size: " + std::to_string(world) + ")");
  }
  return dim;
}

composable::Contract::Body fully_shard_body(FullyShardOptions options) {
  return [options](const composable::Modules& input, bool) -> std::optional<composable::Contract::Returned> {
    for (const auto& module : input) {
      // _validate_module: a container subclass that defines forward is accepted.
      if (module->is_container() && (!module->defines_forward() || mutant("container_subclass_rejected"))) {
        throw std::invalid_argument("fully_shard does not support containers that do not implement forward: " +
                                    module->repr());
      }
    }
    if (options.dp_mesh_dims) {
      check_spmd_mesh(options);
      check_spmd_mesh_supported(options);
    }
    auto [group, replicate_group] = mesh_groups(options);
    check_reshard_after_forward(options.reshard_after_forward, group->size());
    // An empty list (the case schema forbids it; PyTorch: fully_shard.state(modules[0])).
    if (input.empty()) throw std::invalid_argument("tuple index out of range");
    auto state = fully_shard_state(*input.front());
    for (const auto& module : input) state->modules.push_back(module.get());
    state->auto_reshard_after_forward = !options.reshard_after_forward.has_value();
    state->mp_policy = options.mp_policy;

    std::unordered_set<const void*> ignored;
    for (const auto& p : options.ignored_params) ignored.insert(p.unsafeGetTensorImpl());
    std::unordered_set<const nn::Module*> visited;
    std::vector<nn::Module*> modules;
    for (const auto& module : input) {
      if (!visited.count(module.get())) managed_modules(*module, true, visited, modules);
    }
    // _get_managed_states: each managed module's own parameters, once each.
    std::vector<std::pair<nn::Module*, std::string>> owned;
    std::unordered_set<const void*> seen;
    // A Parameter registered in several managed modules (tied): one FSDPParam,
    // registered in each place.
    std::vector<std::pair<const void*, std::pair<nn::Module*, std::string>>> aliases;
    for (nn::Module* m : modules) {
      const auto own = m->named_parameters("", false);
      // The mutant filters by module: one ignored parameter ignores its neighbours.
      const bool any_ignored = mutant("fsdp_ignores_whole_module") &&
          std::any_of(own.begin(), own.end(), [&](const auto& np) { return ignored.count(np.second.unsafeGetTensorImpl()) > 0; });
      for (const auto& [name, p] : own) {
        if (ignored.count(p.unsafeGetTensorImpl()) || any_ignored) continue;
        if (!seen.insert(p.unsafeGetTensorImpl()).second && !mutant("fsdp_no_dedupe")) {
          aliases.push_back({p.unsafeGetTensorImpl(), {m, name}});
          continue;
        }
        if (p.dim() == 0) {
          throw std::invalid_argument("fully_shard doesn't support scalar parameters. Change " + name +
                                      " to a 1D tensor with numel equal to 1.");
        }
        if (!p.is_contiguous()) {
          throw ApiError("not_implemented", "FSDP does not support non-contiguous parameters yet: param.shape=" +
                                                torch_size_repr(p.sizes()) + " param.stride()=" + python_tuple(p.strides()));
        }
        if (options.dp_mesh_dims) {
          check_spmd_param(options, p, name);
        } else if (auto layout = sharded_layout(p); layout && layout->mesh) {
          throw Unsupported("fully_shard: the reference does not compose with DTensor parameters (tensor parallelism); "
                            "give dp_mesh_dims for parameters of distribute_module");
        }
        owned.emplace_back(m, name);
      }
    }
    if (options.dp_mesh_dims && mutant("spmd_params_left_replicated")) owned.clear();
    if (!owned.empty()) {
      std::vector<int64_t> dims;
      for (const auto& [m, name] : owned) dims.push_back(shard_dim_of(options, m->parameter(name), group->size()));
      std::vector<std::unique_ptr<FSDPParam>> params;
      for (std::size_t i = 0; i < owned.size(); ++i) {
        const auto& [m, name] = owned[i];
        params.push_back(std::make_unique<FSDPParam>(m, name, m->parameter(name), group, dims[i], replicate_group != nullptr,
                                                     options.mp_policy.param_dtype));
      }
      for (const auto& [impl, where] : aliases) {
        for (auto& param : params) {
          if (param->original() == impl) param->add_alias(where.first, where.second);
        }
      }
      state->group = std::make_shared<FSDPParamGroup>(std::move(params), group, replicate_group);
      state->group->reduce_dtype = options.mp_policy.reduce_dtype ? options.mp_policy.reduce_dtype : options.mp_policy.param_dtype;
      state->group->install_grad_hooks();
      set_post_forward(*state->group, options.reshard_after_forward, group->size());
      // state_dict() and load_state_dict() see the shards (FSDP2's state-dict pre-hooks).
      std::unordered_set<nn::Module*> owners;
      for (const auto& [m, name] : owned) owners.insert(m);
      std::weak_ptr<FSDPParamGroup> weak_group = state->group;
      auto to_sharded = [weak_group](nn::Module&) {
        if (auto g = weak_group.lock(); g && g->is_unsharded()) g->reshard();
      };
      for (nn::Module* m : owners) {
        m->register_state_dict_pre_hook(to_sharded).detach();
        m->register_load_state_dict_pre_hook(to_sharded).detach();
      }
    }
    for (const auto& module : input) {
      module->register_forward_pre_hook([state](nn::Module& m, const nn::Args& args, const nn::Kwargs& kwargs) {
        state->pre_forward();
        if (mutant("mp_list_casts_first_only") && &m != state->modules.front()) return std::optional<nn::ForwardPreResult>();
        return state->cast_inputs(args, kwargs);
      }).detach();
      module->register_forward_hook([state](nn::Module& m, const nn::Args&, const nn::Kwargs&, const nn::Value& out) {
        return std::optional<nn::Value>(state->post_forward(m, out, state));
      }).detach();
      module->set_type_name("FSDP" + module->type_name());
      module->forbid_deep_copy(kDeepCopyError);
    }
    return std::nullopt;
  };
}

}  // namespace

const composable::Contract& fully_shard_contract() {
  static const std::shared_ptr<composable::Contract> contract = make_contract();
  return *contract;
}

std::shared_ptr<FSDPState> fully_shard_state(const nn::Module& module) {
  return fully_shard_contract().state_as<FSDPState>(module);
}

std::shared_ptr<nn::Module> fully_shard(const std::shared_ptr<nn::Module>& module, FullyShardOptions options) {
  return fully_shard_contract().call({module}, false, fully_shard_body(std::move(options))).modules.front();
}

composable::Modules fully_shard(const composable::Modules& modules, FullyShardOptions options) {
  return fully_shard_contract().call(modules, true, fully_shard_body(std::move(options))).modules;
}

namespace {
FSDPState& state_of(const nn::Module& module) {
  auto state = fully_shard_state(module);
  if (!state) throw std::invalid_argument("'" + module.type_name() + "' object has no attribute 'unshard'");
  return *state;
}

// Python's type(value).__name__ for the values a case can pass.
std::string python_type(const nn::Value& value) {
  switch (value.kind()) {
    case nn::Value::Kind::None: return "NoneType";
    case nn::Value::Kind::Int: return "int";
    case nn::Value::Kind::Bool: return "bool";
    case nn::Value::Kind::Double: return "float";
    case nn::Value::Kind::String: return "str";
    default: return "list";
  }
}
}  // namespace

void unshard(nn::Module& module) {
  FSDPState& state = state_of(module);
  if (state.group) state.group->unshard();
}

void reshard(nn::Module& module) {
  FSDPState& state = state_of(module);
  if (state.group) state.group->reshard();
}

void reset_iter_state(nn::Module& module) {
  FSDPState& state = state_of(module);
  if (state.is_root == false) throw std::runtime_error("reset_iter_state must be called on the root FSDP module");
  if (!state.context || mutant("fsdp_reset_iter_state_noop")) return;
  state.context->iter_forward_root = nullptr;
  for (const auto& weak : state.context->all_states) {
    auto s = weak.lock();
    if (!s) continue;
    s->modules_to_run.clear();
    s->in_backward = false;
    if (s->group) s->group->reset_iter_state();
  }
}

namespace {

// The module's state, if any, and with `recurse` those of every fully_shard
// module inside it, once each.
std::vector<std::shared_ptr<FSDPState>> states_of(nn::Module& module, bool recurse) {
  std::vector<std::shared_ptr<FSDPState>> states;
  auto add = [&](const nn::Module& m) {
    auto state = fully_shard_state(m);
    if (state && std::find(states.begin(), states.end(), state) == states.end()) states.push_back(state);
  };
  add(module);
  if (recurse) {
    for (const auto& [fqn, sub] : module.named_modules()) add(*sub);
  }
  return states;
}

}  // namespace

void set_requires_gradient_sync(nn::Module& module, bool requires_gradient_sync, bool recurse) {
  state_of(module);
  for (const auto& state : states_of(module, recurse)) {
    if (state->group) state->group->reduce_grads = requires_gradient_sync;
  }
}

void set_reshard_after_forward(nn::Module& module, const nn::Value& value, bool recurse) {
  state_of(module);
  if (value.kind() != nn::Value::Kind::Bool) {
    throw std::invalid_argument("reshard_after_forward should be a bool, got <class '" + python_type(value) + "'>");
  }
  for (const auto& state : states_of(module, recurse)) {
    state->auto_reshard_after_forward = false;
    if (state->group) set_post_forward(*state->group, value, 0);
  }
}

void set_reshard_after_backward(nn::Module& module, bool reshard_after_backward, bool recurse) {
  state_of(module);
  for (const auto& state : states_of(module, recurse)) {
    if (state->group) state->group->reshard_after_backward = reshard_after_backward;
  }
}

void set_reduce_scatter_max_input_buffers(nn::Module& module, const nn::Value& value, bool /*recurse*/) {
  state_of(module);
  if (value.kind() != nn::Value::Kind::Int) {
    throw std::invalid_argument("max_input_buffers must be an int, got " + python_type(value));
  }
  const int64_t buffers = value.to_int();
  if (buffers < 1) throw std::invalid_argument("max_input_buffers must be a positive int, got " + std::to_string(buffers));
  // Each group's reduce-scatter finishes inside its backward and frees its one
  // input buffer there, so no group (this one or, with recurse, those below)
  // has a buffer in flight to cap.
}

void set_is_last_backward(nn::Module& module, bool) {
  // FSDP2 waits for pending reductions on the last backward; here every
  // reduction finishes inside its backward, so there is nothing to wait for.
  state_of(module);
}

void set_gradient_divide_factor(nn::Module& module, double factor) {
  FSDPState& state = state_of(module);
  if (state.group && !mutant("divide_factor_ignored")) state.group->gradient_divide_factor = factor;
}

void set_all_reduce_hook(nn::Module& module, std::function<void(torch::Tensor&)> hook) {
  FSDPState& state = state_of(module);
  if (state.group && !mutant("all_reduce_hook_ignored")) state.group->all_reduce_hook = std::move(hook);
}

void set_force_sum_reduction_for_comms(nn::Module& module, bool enable) {
  FSDPState& state = state_of(module);
  if (state.group) state.group->force_sum_reduction = enable;
}

namespace {
std::vector<std::weak_ptr<FSDPState>> prefetch_states(const std::vector<std::shared_ptr<nn::Module>>& modules) {
  std::vector<std::weak_ptr<FSDPState>> out;
  for (const auto& m : modules) {
    auto state = fully_shard_state(*m);
    if (!state) throw std::invalid_argument("Expects FSDPModule but got " + m->type_name());
    out.push_back(state);
  }
  return out;
}
}  // namespace

void set_modules_to_forward_prefetch(nn::Module& module, const std::vector<std::shared_ptr<nn::Module>>& modules) {
  state_of(module).forward_prefetch = prefetch_states(modules);
}

void set_modules_to_backward_prefetch(nn::Module& module, const std::vector<std::shared_ptr<nn::Module>>& modules) {
  state_of(module).backward_prefetch = prefetch_states(modules);
}

torch::Tensor clip_grad_norm_(const std::vector<torch::Tensor>& parameters, double max_norm) {
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> norms;
  std::vector<torch::Tensor> grads;
  for (const auto& p : parameters) {
    if (!p.grad().defined()) continue;
    grads.push_back(p.grad());
    norms.push_back(torch::linalg_vector_norm(full_tensor(p.grad()), 2));
  }
  if (grads.empty()) return torch::zeros({});
  torch::Tensor total = torch::linalg_vector_norm(torch::stack(norms), 2);
  torch::Tensor scaled_by = total;
  if (mutant("clip_local_norm")) {  // each rank's own shards' norm: what clipping without the collective gives
    std::vector<torch::Tensor> local;
    for (auto& g : grads) local.push_back(torch::linalg_vector_norm(g, 2));
    scaled_by = torch::linalg_vector_norm(torch::stack(local), 2);
  }
  torch::Tensor coef = torch::clamp(max_norm / (scaled_by + 1e-6), c10::nullopt, 1.0);
  for (auto& g : grads) g.mul_(coef.to(g.dtype()));
  return total;
}

void register_fsdp_forward_method(nn::Module& module, const std::string& method) {
  auto state = fully_shard_state(module);
  if (!state) return;  // a no-op on other modules, as in PyTorch
  std::weak_ptr<FSDPState> weak = state;
  module.wrap_method(method, [weak](nn::Module& m, const nn::Args& args, const nn::Kwargs& kwargs,
                                    const nn::Module::Method& original) {
    auto state = weak.lock();
    if (!state || mutant("forward_method_unwrapped")) return original(args, kwargs);
    state->pre_forward();
    auto cast = state->cast_inputs(args, kwargs);
    return state->post_forward(m, cast ? original(cast->args, cast->kwargs) : original(args, kwargs), state);
  });
}

void to_empty(nn::Module& module, const torch::Device& device) {
  for (const auto& state : states_of(module, true)) {
    if (state->group) state->group->convert(device, std::nullopt, true);
  }
  module.to_empty(device);
}

void to_dtype(nn::Module& module, torch::ScalarType dtype) {
  for (const auto& state : states_of(module, true)) {
    if (state->group) state->group->convert(std::nullopt, dtype, false);
  }
  module.to(dtype);
}

std::optional<std::vector<std::string>> managed_parameters(const nn::Module& module) {
  FSDPState& state = state_of(module);
  if (!state.group) return std::nullopt;
  std::vector<std::string> fqns;
  // named_parameters() is not const; reading it changes nothing.
  for (const auto& [fqn, p] : const_cast<nn::Module&>(module).named_parameters()) {
    if (state.group->owns(p)) fqns.push_back(fqn);
  }
  return fqns;
}

DataParallelMeshDims DataParallelMeshDims::make(std::vector<std::string> shard, std::vector<std::string> replicate) {
  if (shard.empty() && replicate.empty() && !mutant("dp_mesh_dims_unchecked")) {
    throw std::invalid_argument("At least one of shard or replicate must be set in DataParallelMeshDims");
  }
  return DataParallelMeshDims{std::move(shard), std::move(replicate)};
}

}  // namespace ccts::fully_shard
