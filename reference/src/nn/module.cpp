#include "ccts/nn/module.h"

#include <iostream>
#include <sstream>
#include <stdexcept>
#include <unordered_set>

#include "backward_hook.h"
#include "ccts/errors.h"
#include "ccts/mutants.h"
#include "ccts/python_repr.h"

namespace ccts::nn {

namespace {

std::string join_fqn(const std::string& prefix, const std::string& name) {
  return prefix.empty() ? name : prefix + "." + name;
}

void check_member_name(const char* what, const std::string& name) {
  if (name.empty()) {
    throw std::invalid_argument(std::string(what) + " name can't be empty string \"\"");
  }
  if (name.find('.') != std::string::npos) {
    throw std::invalid_argument(std::string(what) + " name can't contain \".\", got: " + name);
  }
}

template <class Slots, class Key>
auto find_slot(Slots& slots, const Key& name) {
  for (auto it = slots.begin(); it != slots.end(); ++it) {
    if (it->first == name) return it;
  }
  return slots.end();
}

struct GlobalHooks {
  std::shared_ptr<HookList<ForwardPreHook>> forward_pre = std::make_shared<HookList<ForwardPreHook>>();
  std::shared_ptr<HookList<ForwardHook>> forward = std::make_shared<HookList<ForwardHook>>();
  std::shared_ptr<HookList<BackwardPreHook>> backward_pre = std::make_shared<HookList<BackwardPreHook>>();
  std::shared_ptr<HookList<BackwardHook>> backward = std::make_shared<HookList<BackwardHook>>();
};

GlobalHooks& global_hooks() {
  static GlobalHooks hooks;
  return hooks;
}

torch::Tensor copy_tensor(const torch::Tensor& t, DeepCopyMemo& memo) {
  if (!t.defined()) return t;
  const void* key = t.unsafeGetTensorImpl();
  auto found = memo.tensors.find(key);
  if (found != memo.tensors.end()) return found->second;
  torch::Tensor copy = t.detach().clone();
  if (t.requires_grad()) copy.requires_grad_(true);
  memo.tensors.emplace(key, copy);
  return copy;
}

}  // namespace

std::uint64_t next_hook_id() {
  static std::atomic<std::uint64_t> counter{0};
  return ++counter;
}

HookHandle register_module_forward_pre_hook(ForwardPreHook hook) {
  return global_hooks().forward_pre->add(std::move(hook));
}
HookHandle register_module_forward_hook(ForwardHook hook, bool always_call) {
  return global_hooks().forward->add(std::move(hook), always_call);
}
HookHandle register_module_full_backward_pre_hook(BackwardPreHook hook) {
  return global_hooks().backward_pre->add(std::move(hook));
}
HookHandle register_module_full_backward_hook(BackwardHook hook) {
  return global_hooks().backward->add(std::move(hook));
}
std::size_t global_hook_count() {
  const GlobalHooks& g = global_hooks();
  return g.forward_pre->size() + g.forward->size() + g.backward_pre->size() + g.backward->size();
}

Module::Module(std::string type_name)
    : type_name_(std::move(type_name)),
      forward_pre_hooks_(std::make_shared<HookList<ForwardPreHook>>()),
      forward_hooks_(std::make_shared<HookList<ForwardHook>>()),
      backward_pre_hooks_(std::make_shared<HookList<BackwardPreHook>>()),
      backward_hooks_(std::make_shared<HookList<BackwardHook>>()),
      state_dict_pre_hooks_(std::make_shared<HookList<StateDictPreHook>>()),
      load_state_dict_pre_hooks_(std::make_shared<HookList<StateDictPreHook>>()) {}

Module::~Module() = default;

Value Module::forward(const Args&, const Kwargs&) {
  throw std::logic_error("Module [" + type_name_ + "] is missing the required \"forward\" function");
}

Value Module::operator()(Args args, Kwargs kwargs) {
  GlobalHooks& global = global_hooks();
  for (const auto* list : {global.forward_pre.get(), forward_pre_hooks_.get()}) {
    for (const auto& entry : list->snapshot()) {
      if (auto replaced = entry.fn(*this, args, kwargs)) {
        args = std::move(replaced->args);
        kwargs = std::move(replaced->kwargs);
      }
    }
  }

  std::shared_ptr<BackwardHookState> backward_hook;
  if (!global.backward->empty() || !global.backward_pre->empty() || !backward_hooks_->empty() ||
      !backward_pre_hooks_->empty()) {
    std::vector<BackwardHook> full;
    std::vector<BackwardPreHook> pre;
    for (const auto& e : global.backward->snapshot()) full.push_back(e.fn);
    for (const auto& e : backward_hooks_->snapshot()) full.push_back(e.fn);
    for (const auto& e : global.backward_pre->snapshot()) pre.push_back(e.fn);
    for (const auto& e : backward_pre_hooks_->snapshot()) pre.push_back(e.fn);
    backward_hook = std::make_shared<BackwardHookState>(*this, std::move(full), std::move(pre));
    args = backward_hook->setup_input_hook(std::move(args));
  }

  const auto forward_hooks = global.forward->snapshot();
  const auto own_forward_hooks = forward_hooks_->snapshot();
  Value result;
  try {
    result = forward(args, kwargs);
  } catch (...) {
    // always_call forward hooks still run (with no output); their own errors
    // are reported and the forward's error propagates.
    for (const auto* hooks : {&forward_hooks, &own_forward_hooks}) {
      for (const auto& entry : *hooks) {
        if (!entry.always_call) continue;
        try {
          entry.fn(*this, args, kwargs, Value());
        } catch (const std::exception& e) {
          std::cerr << "warning: forward hook with always_call=True raised an exception that was "
                       "ignored: " << e.what() << '\n';
        }
      }
    }
    throw;
  }
  for (const auto* hooks : {&forward_hooks, &own_forward_hooks}) {
    for (const auto& entry : *hooks) {
      if (auto replaced = entry.fn(*this, args, kwargs, result)) result = std::move(*replaced);
    }
  }
  if (backward_hook) result = backward_hook->setup_output_hook(std::move(result));
  return result;
}

std::shared_ptr<Module> Module::register_module(const std::string& name,
                                                std::shared_ptr<Module> module) {
  check_member_name("module", name);
  if (!module) throw std::invalid_argument("module '" + name + "' is null");
  if (has_parameter(name) || has_buffer(name) || has_attribute(name)) {
    throw std::invalid_argument("attribute '" + name + "' already exists");
  }
  auto slot = find_slot(children_, name);
  if (slot != children_.end()) {
    slot->second = module;
  } else {
    children_.emplace_back(name, module);
  }
  return module;
}

torch::Tensor& Module::register_parameter(const std::string& name, torch::Tensor tensor,
                                          bool requires_grad) {
  check_member_name("parameter", name);
  if (has_child(name) || has_buffer(name) || has_attribute(name)) {
    throw std::invalid_argument("attribute '" + name + "' already exists");
  }
  if (tensor.defined()) tensor = tensor.detach().requires_grad_(requires_grad);
  auto slot = find_slot(parameters_, name);
  if (slot != parameters_.end()) {
    slot->second = std::move(tensor);
    return slot->second;
  }
  parameters_.emplace_back(name, std::move(tensor));
  return parameters_.back().second;
}

torch::Tensor& Module::register_buffer(const std::string& name, torch::Tensor tensor,
                                       bool persistent) {
  check_member_name("buffer", name);
  if (has_child(name) || has_parameter(name) || has_attribute(name)) {
    throw std::invalid_argument("attribute '" + name + "' already exists");
  }
  for (auto& slot : buffers_) {
    if (slot.name == name) {
      slot.tensor = std::move(tensor);
      slot.persistent = persistent;
      return slot.tensor;
    }
  }
  buffers_.push_back(BufferSlot{name, std::move(tensor), persistent});
  return buffers_.back().tensor;
}

void Module::set_attribute(const std::string& name, Attribute attribute) {
  if (has_child(name) || has_parameter(name) || has_buffer(name)) {
    throw std::invalid_argument("attribute '" + name + "' already exists");
  }
  auto slot = find_slot(attributes_, name);
  if (slot != attributes_.end()) {
    slot->second = std::move(attribute);
  } else {
    attributes_.emplace_back(name, std::move(attribute));
  }
}

bool Module::remove_parameter(const std::string& name) {
  auto slot = find_slot(parameters_, name);
  if (slot == parameters_.end()) return false;
  parameters_.erase(slot);
  return true;
}

std::shared_ptr<Module> Module::child(const std::string& name) const {
  auto slot = find_slot(children_, name);
  if (slot == children_.end()) {
    throw std::out_of_range("'" + type_name_ + "' object has no submodule '" + name + "'");
  }
  return slot->second;
}

torch::Tensor& Module::parameter(const std::string& name) {
  if (torch::Tensor* slot = find_parameter(name)) return *slot;
  throw std::out_of_range("'" + type_name_ + "' object has no parameter '" + name + "'");
}

torch::Tensor* Module::find_parameter(const std::string& name) {
  auto slot = find_slot(parameters_, name);
  return slot == parameters_.end() ? nullptr : &slot->second;
}

torch::Tensor& Module::buffer(const std::string& name) {
  for (auto& slot : buffers_) {
    if (slot.name == name) return slot.tensor;
  }
  throw std::out_of_range("'" + type_name_ + "' object has no buffer '" + name + "'");
}

Attribute& Module::attribute(const std::string& name) {
  auto slot = find_slot(attributes_, name);
  if (slot == attributes_.end()) {
    throw std::out_of_range("'" + type_name_ + "' object has no attribute '" + name + "'");
  }
  return slot->second;
}

bool Module::has_child(const std::string& name) const {
  return find_slot(children_, name) != children_.end();
}
bool Module::has_parameter(const std::string& name) const {
  return find_slot(parameters_, name) != parameters_.end();
}
bool Module::has_buffer(const std::string& name) const {
  for (const auto& slot : buffers_) {
    if (slot.name == name) return true;
  }
  return false;
}
bool Module::has_attribute(const std::string& name) const {
  return find_slot(attributes_, name) != attributes_.end();
}

std::vector<std::pair<std::string, Module*>> Module::modules_in_order(const std::string& prefix,
                                                                     bool recurse,
                                                                     bool remove_duplicate) {
  std::vector<std::pair<std::string, Module*>> out;
  if (!recurse) {
    out.emplace_back(prefix, this);
    return out;
  }
  std::unordered_set<const Module*> memo;
  std::function<void(Module&, const std::string&)> visit = [&](Module& module,
                                                               const std::string& path) {
    if (remove_duplicate && !memo.insert(&module).second) return;
    out.emplace_back(path, &module);
    for (const auto& [name, child] : module.children_) visit(*child, join_fqn(path, name));
  };
  visit(*this, prefix);
  return out;
}

std::vector<std::pair<std::string, std::shared_ptr<Module>>> Module::named_modules(
    const std::string& prefix, bool remove_duplicate) {
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> out;
  for (auto& [path, module] : modules_in_order(prefix, true, remove_duplicate)) {
    // A root not owned by a shared_ptr is listed with an owner-less alias.
    auto owner = module->weak_from_this().lock();
    out.emplace_back(path, owner ? owner : std::shared_ptr<Module>(std::shared_ptr<Module>(), module));
  }
  return out;
}

NamedTensors Module::named_parameters(const std::string& prefix, bool recurse,
                                      bool remove_duplicate) {
  NamedTensors out;
  std::unordered_set<const void*> seen;
  for (auto& [path, module] : modules_in_order(prefix, recurse, remove_duplicate)) {
    for (const auto& [name, tensor] : module->parameters_) {
      if (!tensor.defined()) continue;
      if (remove_duplicate && !seen.insert(tensor.unsafeGetTensorImpl()).second) continue;
      out.emplace_back(join_fqn(path, name), tensor);
    }
  }
  return out;
}

NamedTensors Module::named_buffers(const std::string& prefix, bool recurse,
                                   bool remove_duplicate) {
  NamedTensors out;
  std::unordered_set<const void*> seen;
  for (auto& [path, module] : modules_in_order(prefix, recurse, remove_duplicate)) {
    for (const auto& slot : module->buffers_) {
      if (!slot.tensor.defined()) continue;
      if (remove_duplicate && !seen.insert(slot.tensor.unsafeGetTensorImpl()).second) continue;
      out.emplace_back(join_fqn(path, slot.name), slot.tensor);
    }
  }
  return out;
}

std::vector<torch::Tensor> Module::parameters(bool recurse) {
  std::vector<torch::Tensor> out;
  for (auto& named : named_parameters("", recurse)) out.push_back(named.second);
  return out;
}

void Module::collect_state_dict(const std::string& prefix, bool keep_vars, StateDict& out) const {
  for (const auto& [name, tensor] : parameters_) {
    if (tensor.defined()) out.emplace_back(prefix + name, keep_vars ? tensor : tensor.detach());
  }
  for (const auto& slot : buffers_) {
    if (slot.tensor.defined() && slot.persistent) {
      out.emplace_back(prefix + slot.name, keep_vars ? slot.tensor : slot.tensor.detach());
    }
  }
  for (const auto& [name, child] : children_) {
    child->collect_state_dict(prefix + name + ".", keep_vars, out);
  }
}

StateDict Module::state_dict(const std::string& prefix, bool keep_vars) {
  run_state_dict_pre_hooks(false);
  StateDict out;
  collect_state_dict(prefix.empty() ? prefix : prefix + ".", keep_vars, out);
  if (mutant("state_dict_copies")) {  // the values, not the module's tensors
    for (auto& entry : out) entry.second = entry.second.clone();
  }
  return out;
}

void Module::state_dict_keys(const std::string& prefix, std::vector<std::string>& out) const {
  StateDict sd;
  collect_state_dict(prefix, true, sd);
  for (auto& entry : sd) out.push_back(entry.first);
}

void Module::load_from_state_dict(const std::string& prefix,
                                  const std::map<std::string, torch::Tensor>& sd,
                                  std::vector<std::string>& missing,
                                  std::vector<std::string>& error_messages) {
  auto load_one = [&](const std::string& name, torch::Tensor& target) {
    const std::string key = prefix + name;
    auto found = sd.find(key);
    if (found == sd.end()) {
      missing.push_back(key);
      return;
    }
    const torch::Tensor& input = found->second;
    if (input.sizes() != target.sizes()) {
      error_messages.push_back("size mismatch for " + key + ": copying a param with shape " +
                               torch_size_repr(input.sizes()) + " from checkpoint, the shape in current model is " +
                               torch_size_repr(target.sizes()) + ".");
      return;
    }
    torch::NoGradGuard no_grad;
    target.copy_(input);
  };
  for (auto& [name, tensor] : parameters_) {
    if (tensor.defined()) load_one(name, tensor);
  }
  for (auto& slot : buffers_) {
    if (slot.tensor.defined() && slot.persistent) load_one(slot.name, slot.tensor);
  }
  for (auto& [name, child] : children_) {
    child->load_from_state_dict(prefix + name + ".", sd, missing, error_messages);
  }
}

IncompatibleKeys Module::load_state_dict(const StateDict& state_dict, bool strict) {
  run_state_dict_pre_hooks(true);
  std::map<std::string, torch::Tensor> sd(state_dict.begin(), state_dict.end());
  IncompatibleKeys result;
  std::vector<std::string> errors;
  load_from_state_dict("", sd, result.missing_keys, errors);
  std::vector<std::string> expected;
  state_dict_keys("", expected);
  std::unordered_set<std::string> expected_set(expected.begin(), expected.end());
  for (const auto& [key, tensor] : state_dict) {
    if (!expected_set.count(key)) result.unexpected_keys.push_back(key);
  }
  auto quoted = [](const std::vector<std::string>& keys) {
    std::string out;
    for (const auto& key : keys) out += (out.empty() ? "\"" : ", \"") + key + "\"";
    return out;
  };
  if (strict) {
    if (!result.unexpected_keys.empty()) {
      errors.insert(errors.begin(),
                    "Unexpected key(s) in state_dict: " + quoted(result.unexpected_keys) + ". ");
    }
    if (!result.missing_keys.empty()) {
      errors.insert(errors.begin(),
                    "Missing key(s) in state_dict: " + quoted(result.missing_keys) + ". ");
    }
  }
  if (!errors.empty()) {
    std::string message = "Error(s) in loading state_dict for " + type_name_ + ":";
    for (const auto& e : errors) message += "\n\t" + e;
    throw std::runtime_error(message);
  }
  return result;
}

std::shared_ptr<Module> Module::deep_copy() const {
  DeepCopyMemo memo;
  return deep_copy(memo);
}

std::shared_ptr<Module> Module::deep_copy(DeepCopyMemo& memo) const {
  auto found = memo.modules.find(this);
  if (found != memo.modules.end()) return found->second;
  if (!deep_copy_error_.empty()) throw AssertionError(deep_copy_error_);
  std::shared_ptr<Module> copy = clone_shallow();
  memo.modules.emplace(this, copy);
  copy->annotations_.clear();
  for (auto& [name, tensor] : copy->parameters_) tensor = copy_tensor(tensor, memo);
  for (auto& slot : copy->buffers_) slot.tensor = copy_tensor(slot.tensor, memo);
  for (auto& [name, child] : copy->children_) child = child->deep_copy(memo);
  for (auto& [name, attribute] : copy->attributes_) {
    attribute.tensor = copy_tensor(attribute.tensor, memo);
    for (auto& module : attribute.modules) module = module->deep_copy(memo);
  }
  copy->forward_pre_hooks_ = std::make_shared<HookList<ForwardPreHook>>(*forward_pre_hooks_);
  copy->forward_hooks_ = std::make_shared<HookList<ForwardHook>>(*forward_hooks_);
  copy->backward_pre_hooks_ = std::make_shared<HookList<BackwardPreHook>>(*backward_pre_hooks_);
  copy->backward_hooks_ = std::make_shared<HookList<BackwardHook>>(*backward_hooks_);
  copy->state_dict_pre_hooks_ = std::make_shared<HookList<StateDictPreHook>>(*state_dict_pre_hooks_);
  copy->load_state_dict_pre_hooks_ = std::make_shared<HookList<StateDictPreHook>>(*load_state_dict_pre_hooks_);
  return copy;
}

void Module::train(bool mode) {
  for (auto& [path, module] : modules_in_order("", true, true)) module->training_ = mode;
}

namespace {
// Parameter.data = data: in place where autograd allows it; a meta tensor
// cannot take other storage in place, so the parameter is replaced.
void replace_data(torch::Tensor& param, const torch::Tensor& data) {
  if (param.is_meta() == data.is_meta()) {
    param.set_data(data);
  } else {
    param = data.detach().requires_grad_(param.requires_grad());
  }
}
}  // namespace

void Module::to(const torch::Device& device) {
  torch::NoGradGuard no_grad;
  for (auto& [path, module] : modules_in_order("", true, true)) {
    for (auto& [name, tensor] : module->parameters_) {
      if (tensor.defined()) replace_data(tensor, tensor.data().to(device));
    }
    for (auto& slot : module->buffers_) {
      if (slot.tensor.defined()) slot.tensor = slot.tensor.to(device);
    }
  }
}

void Module::to(torch::Dtype dtype) {
  torch::NoGradGuard no_grad;
  for (auto& [path, module] : modules_in_order("", true, true)) {
    for (auto& [name, tensor] : module->parameters_) {
      if (tensor.defined() && tensor.is_floating_point()) tensor.set_data(tensor.data().to(dtype));
    }
    for (auto& slot : module->buffers_) {
      if (slot.tensor.defined() && slot.tensor.is_floating_point()) slot.tensor = slot.tensor.to(dtype);
    }
  }
}

void Module::to_empty(const torch::Device& device) {
  torch::NoGradGuard no_grad;
  for (auto& [path, module] : modules_in_order("", true, true)) {
    for (auto& [name, tensor] : module->parameters_) {
      if (tensor.defined() && tensor.device() != device) {
        replace_data(tensor, torch::zeros(tensor.sizes(), tensor.options().device(device).requires_grad(false)));
      }
    }
    for (auto& slot : module->buffers_) {
      if (slot.tensor.defined() && slot.tensor.device() != device) slot.tensor = torch::zeros_like(slot.tensor, slot.tensor.options().device(device));
    }
  }
}

Value Module::call_method(const std::string& name, const Args& args, const Kwargs& kwargs) {
  if (!has_method(name)) throw std::invalid_argument("'" + type_name() + "' object has no attribute '" + name + "'");
  Method original = [this, name](const Args& a, const Kwargs& k) { return run_method(name, a, k); };
  auto it = method_wrappers_.find(name);
  return it == method_wrappers_.end() ? original(args, kwargs) : it->second(*this, args, kwargs, original);
}

void Module::wrap_method(const std::string& name, MethodWrapper wrapper) {
  if (!has_method(name)) throw std::invalid_argument("'" + type_name() + "' object has no attribute '" + name + "'");
  method_wrappers_[name] = std::move(wrapper);
}

Value Module::run_method(const std::string& name, const Args&, const Kwargs&) {
  throw std::invalid_argument("'" + type_name() + "' object has no attribute '" + name + "'");
}

void Module::zero_grad(bool set_to_none) {
  for (auto& parameter : parameters()) {
    if (!parameter.grad().defined()) continue;
    if (set_to_none) {
      parameter.mutable_grad() = torch::Tensor();
    } else {
      parameter.mutable_grad().detach_().zero_();
    }
  }
}

std::string Module::repr() const {
  // torch.nn.Module.__repr__, with _addindent(child, 2).
  std::vector<std::string> lines;
  const std::string extra = extra_repr();
  std::size_t extra_lines = 0;
  for (std::size_t start = 0; !extra.empty() && start <= extra.size();) {
    const std::size_t end = extra.find('\n', start);
    lines.push_back(extra.substr(start, end == std::string::npos ? std::string::npos : end - start));
    ++extra_lines;
    if (end == std::string::npos) break;
    start = end + 1;
  }
  for (const auto& [name, child] : children_) {
    std::string text = child->repr();
    std::string indented;
    for (char c : text) {
      indented.push_back(c);
      if (c == '\n') indented += "  ";
    }
    lines.push_back("(" + name + "): " + indented);
  }
  std::string out = type_name_ + "(";
  if (extra_lines == 1 && children_.empty()) {
    out += lines.front();
  } else if (!lines.empty()) {
    out += "\n  ";
    for (std::size_t i = 0; i < lines.size(); ++i) out += (i ? "\n  " : "") + lines[i];
    out += "\n";
  }
  return out + ")";
}

std::shared_ptr<void> Module::annotation(const std::string& key) const {
  auto it = annotations_.find(key);
  return it == annotations_.end() ? nullptr : it->second;
}

void Module::set_annotation(const std::string& key, std::shared_ptr<void> value) {
  annotations_[key] = std::move(value);
}

HookHandle Module::register_forward_pre_hook(ForwardPreHook hook) {
  return forward_pre_hooks_->add(std::move(hook));
}
HookHandle Module::register_forward_hook(ForwardHook hook, bool always_call) {
  return forward_hooks_->add(std::move(hook), always_call);
}
HookHandle Module::register_full_backward_pre_hook(BackwardPreHook hook) {
  return backward_pre_hooks_->add(std::move(hook));
}
HookHandle Module::register_full_backward_hook(BackwardHook hook) {
  return backward_hooks_->add(std::move(hook));
}
HookHandle Module::register_state_dict_pre_hook(StateDictPreHook hook) {
  return state_dict_pre_hooks_->add(std::move(hook));
}
HookHandle Module::register_load_state_dict_pre_hook(StateDictPreHook hook) {
  return load_state_dict_pre_hooks_->add(std::move(hook));
}

void Module::run_state_dict_pre_hooks(bool load) {
  for (auto& [path, module] : modules_in_order("", true, true)) {
    const auto& hooks = load ? module->load_state_dict_pre_hooks_ : module->state_dict_pre_hooks_;
    for (const auto& entry : hooks->snapshot()) entry.fn(*module);
  }
}
std::size_t Module::hook_count() const {
  return forward_pre_hooks_->size() + forward_hooks_->size() + backward_pre_hooks_->size() +
         backward_hooks_->size();
}

}  // namespace ccts::nn
