#include "ccts/replicate/replicate.h"

#include <algorithm>
#include <map>
#include <set>
#include <unordered_set>

#include <torch/torch.h>

#include "ccts/distributed/process_group.h"
#include "ccts/errors.h"
#include "ccts/mutants.h"
#include "ccts/replicate/reducer.h"

namespace ccts::replicate {

namespace {

constexpr const char* kDeepCopyError = "DDP does not support deepcopy. Please use state dict for serialization.";

// type(x) as Python prints it, for replicate's device_id message.
std::string python_type_repr(const nn::Value& value) {
  switch (value.kind()) {
    case nn::Value::Kind::None: return "<class 'NoneType'>";
    case nn::Value::Kind::Tensor: return "<class 'torch.Tensor'>";
    default: return std::string("<class '") + nn::Value::kind_name(value.kind()) + "'>";
  }
}

// repr(torch.device): device(type='cpu'), device(type='cuda', index=0).
std::string device_repr(const torch::Device& device) {
  std::string out = "device(type='" + c10::DeviceTypeName(device.type(), true) + "'";
  if (device.has_index()) out += ", index=" + std::to_string(device.index());
  return out + ")";
}

bool is_fully_sharded(const nn::Module& module) {
  auto registry = composable::get_registry(module);
  return registry && std::any_of(registry->begin(), registry->end(),
                                 [](const auto& item) { return item.first == "fully_shard"; });
}

std::shared_ptr<composable::Contract> make_contract() {
  return std::make_shared<composable::Contract>(
      "replicate", [](const composable::Modules&, bool) -> std::optional<composable::Contract::Returned> {
        throw std::logic_error("replicate is called through replicate::replicate()");
      },
      [] { return std::make_shared<ReplicateState>(); });
}

}  // namespace

// Lazy initialization (_ReplicateState.init) and the forward pre-hook.
class ReplicateImpl {
 public:
  static void record_init_args(ReplicateState& state, const ReplicateOptions& options) { state.options_ = options; }

  static void init(nn::Module& module, ReplicateState& state) {
    state.initialized_ = true;
    const ReplicateOptions& options = state.options_;
    std::unordered_set<const nn::Module*> ignored_modules;
    std::unordered_set<const void*> ignored_params;
    for (const auto& ignored : options.ignored_modules) {
      ignored_modules.insert(ignored.get());
      if (!mutant("replicate_syncs_ignored")) {
        for (const auto& p : ignored->parameters()) ignored_params.insert(p.unsafeGetTensorImpl());
      }
    }
    for (const auto& [path, sub] : module.named_modules()) {
      if (is_fully_sharded(*sub)) {
        for (const auto& p : sub->parameters()) ignored_params.insert(p.unsafeGetTensorImpl());
      }
    }
    if (mutant("replicate_syncs_ignored")) ignored_modules.clear();
    collect_params(module, "", ignored_modules, ignored_params, state);

    state.device_ids_ = device_ids_of(options.device_id);
    bool any_requires_grad = false;
    std::set<std::string> device_names;
    std::vector<torch::Device> devices;
    for (const auto& p : state.params_) {
      any_requires_grad = any_requires_grad || p.requires_grad();
      if (device_names.insert(p.device().str()).second) devices.push_back(p.device());
    }
    if (!any_requires_grad) {
      throw ApiError("runtime_error",
                     "DistributedDataParallel is not needed when a module doesn't have any parameter that "
                     "requires a gradient.");
    }
    const bool on_cpu = devices.size() == 1 && devices.front().is_cpu();
    if (state.device_ids_ && (on_cpu || devices.size() > 1)) {
      std::string ids = "[";
      for (std::size_t i = 0; i < state.device_ids_->size(); ++i) {
        ids += (i ? ", " : "") + std::to_string((*state.device_ids_)[i]);
      }
      std::string params = "{";
      for (std::size_t i = 0; i < devices.size(); ++i) params += (i ? ", " : "") + device_repr(devices[i]);
      throw std::invalid_argument(
          "DistributedDataParallel device_ids and output_device arguments only work with single-device/multiple-"
          "device GPU modules or CPU modules, but got device_ids " + ids + "], output_device None, and module "
          "parameters " + params + "}.");
    }
    if (on_cpu) state.device_ids_.reset();

    auto group = options.process_group && !mutant("replicate_group_ignored") ? options.process_group
                                                                             : distributed::default_process_group();
    if (!mutant("replicate_no_broadcast")) broadcast_from_rank0(state.params_, *group);

    Reducer::Options reducer_options;
    reducer_options.gradient_as_bucket_view = options.gradient_as_bucket_view;
    reducer_options.find_unused_parameters = options.find_unused_parameters;
    if (!state.comm_hooks_.empty() && !mutant("comm_hook_ignored")) reducer_options.comm_hook = state.comm_hooks_.front();
    if (options.bucket_cap_mb) {
      reducer_options.bucket_bytes_cap = static_cast<std::int64_t>(*options.bucket_cap_mb * 1024 * 1024);
      reducer_options.first_bucket_bytes = reducer_options.bucket_bytes_cap;
    }
    std::vector<torch::Tensor> trained;
    std::unordered_set<const void*> seen;
    for (const auto& p : state.params_) {
      if (p.requires_grad() && seen.insert(p.unsafeGetTensorImpl()).second) trained.push_back(p);
    }
    state.reducer_ = Reducer::create(trained, group, reducer_options);
    // _ReplicateState.register_comm_hook hands every kept hook to DDP, which takes one.
    const bool twice = state.comm_hooks_.size() > 1;
    state.comm_hooks_.clear();
    if (twice) throw std::runtime_error("register_comm_hook or register_builtin_comm_hook can only be called once.");
  }

  static std::optional<nn::ForwardPreResult> pre_forward(nn::Module& module, ReplicateState& state,
                                                         const nn::Args& args, const nn::Kwargs& kwargs) {
    if (!state.initialized_) init(module, state);
    // REPLICATE-INIT-004: an init that failed leaves no engine, and is not retried.
    if (!state.reducer_) throw std::invalid_argument("'_ReplicateState' object has no attribute '_ddp'");
    state.reducer_->set_require_grad_sync(!state.no_sync_);
    state.reducer_->prepare_for_forward();
    if (!state.device_ids_) return std::nullopt;
    // DDP's _to_kwargs: inputs move to the engine's device.
    const torch::Device device(torch::kCUDA, static_cast<c10::DeviceIndex>(state.device_ids_->front()));
    auto move = [&](const torch::Tensor& t) { return t.to(device); };
    nn::ForwardPreResult moved;
    for (const auto& a : args) moved.args.push_back(a.map_tensors(move));
    for (const auto& [key, v] : kwargs) moved.kwargs.emplace_back(key, v.map_tensors(move));
    return moved;
  }

 private:
  // _collect_params: pre-order, a module's own parameters then its children's;
  // ignored and fully_shard-managed subtrees are skipped.
  static void collect_params(nn::Module& module, const std::string& prefix,
                             const std::unordered_set<const nn::Module*>& ignored_modules,
                             const std::unordered_set<const void*>& ignored_params, ReplicateState& state) {
    if (is_fully_sharded(module) || ignored_modules.count(&module)) return;
    for (const auto& [name, p] : module.named_parameters("", false)) {
      if (ignored_params.count(p.unsafeGetTensorImpl())) continue;
      state.params_.push_back(p);
      state.param_names_.push_back(prefix.empty() ? name : prefix + "." + name);
    }
    for (const auto& [name, child] : module.named_children()) {
      collect_params(*child, prefix.empty() ? name : prefix + "." + name, ignored_modules, ignored_params, state);
    }
  }

  static std::optional<std::vector<int64_t>> device_ids_of(const std::optional<nn::Value>& device_id) {
    if (!device_id) return std::nullopt;
    if (device_id->kind() == nn::Value::Kind::String) {
      const torch::Device device(device_id->to_string());
      if (device.is_cpu()) return std::nullopt;
      return std::vector<int64_t>{device.has_index() ? device.index() : 0};
    }
    return std::vector<int64_t>{device_id->to_int()};
  }

  // DDP's _sync_module_states: every parameter takes rank 0's values, one
  // coalesced broadcast per dtype. Buffers are not synchronised: the engine
  // is built on the parameters alone.
  static void broadcast_from_rank0(const std::vector<torch::Tensor>& params, distributed::ProcessGroup& group) {
    torch::NoGradGuard no_grad;
    std::map<std::string, std::vector<torch::Tensor>> by_type;
    for (const auto& p : params) by_type[p.toString()].push_back(p);
    for (auto& [type, tensors] : by_type) {
      std::vector<torch::Tensor> flat;
      for (const auto& t : tensors) flat.push_back(t.detach().reshape({-1}));
      torch::Tensor coalesced = torch::cat(flat);
      group.broadcast(coalesced, 0);
      int64_t offset = 0;
      for (auto& t : tensors) {
        t.detach().copy_(coalesced.narrow(0, offset, t.numel()).view(t.sizes()));
        offset += t.numel();
      }
    }
  }
};

const composable::Contract& replicate_contract() {
  static const std::shared_ptr<composable::Contract> contract = make_contract();
  return *contract;
}

std::shared_ptr<ReplicateState> replicate_state(const nn::Module& module) {
  return replicate_contract().state_as<ReplicateState>(module);
}

namespace {

// DistributedDataParallel's way, for the self-test's `replicate_wraps`
// mutant: a parent that prefixes every FQN with `module.`.
class DataParallelWrapper : public nn::Cloneable<DataParallelWrapper> {
 public:
  explicit DataParallelWrapper(std::shared_ptr<nn::Module> module) : Cloneable("DistributedDataParallel") {
    register_module("module", std::move(module));
  }
  nn::Value forward(const nn::Args& args, const nn::Kwargs& kwargs) override { return (*child("module"))(args, kwargs); }
};

composable::Contract::Body replicate_body(ReplicateOptions options) {
  return [options](const composable::Modules& input, bool is_list) -> std::optional<composable::Contract::Returned> {
    if (options.device_id) {
      const auto kind = options.device_id->kind();
      const bool is_int = kind == nn::Value::Kind::Int || kind == nn::Value::Kind::Bool;
      if (!is_int && kind != nn::Value::Kind::String) {
        throw ApiError("runtime_error", "Expected device_id to be int or torch.device, but got " +
                                            python_type_repr(*options.device_id));
      }
    }
    // replicate's body treats its argument as a module; a list has no __dict__.
    if (is_list) throw std::invalid_argument("'list' object has no attribute '__dict__'");
    const std::shared_ptr<nn::Module>& module = input.front();
    if (is_fully_sharded(*module)) {
      throw ApiError("runtime_error", "Cannot apply `replicate()` on a Module already managed by `fully_shard`");
    }
    auto state = replicate_state(*module);
    ReplicateImpl::record_init_args(*state, options);
    module->register_forward_pre_hook([state](nn::Module& m, const nn::Args& args, const nn::Kwargs& kwargs) {
      return ReplicateImpl::pre_forward(m, *state, args, kwargs);
    }).detach();
    module->set_type_name("DDP" + module->type_name());
    module->forbid_deep_copy(kDeepCopyError);
    if (mutant("replicate_wraps")) {
      return composable::Contract::Returned{{std::make_shared<DataParallelWrapper>(module)}, false};
    }
    return std::nullopt;
  };
}

}  // namespace

std::shared_ptr<nn::Module> replicate(const std::shared_ptr<nn::Module>& module, ReplicateOptions options) {
  return replicate_contract().call({module}, false, replicate_body(std::move(options))).modules.front();
}

void replicate(const composable::Modules& modules, ReplicateOptions options) {
  replicate_contract().call(modules, true, replicate_body(std::move(options)));
}

}  // namespace ccts::replicate
