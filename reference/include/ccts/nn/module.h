#pragma once
// The reference's module: torch.nn.Module's tree of children, parameters and
// buffers, with PyTorch's traversal order and FQN format, state_dict, hooks
// and deep copy. LibTorch's torch::nn::Module has no hooks, hence this type.
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include <torch/types.h>

#include "ccts/nn/hooks.h"
#include "ccts/nn/value.h"

namespace ccts::nn {

using NamedTensors = std::vector<std::pair<std::string, torch::Tensor>>;
using StateDict = NamedTensors;  // ordered like PyTorch's OrderedDict

struct IncompatibleKeys {
  std::vector<std::string> missing_keys;
  std::vector<std::string> unexpected_keys;
};

// Memo of a deep copy: shared tensors and modules stay shared in the copy.
struct DeepCopyMemo {
  std::unordered_map<const Module*, std::shared_ptr<Module>> modules;
  std::unordered_map<const void*, torch::Tensor> tensors;
};

// A plain (unregistered) attribute: a tensor (ToyModel.b) or a Python list of
// modules (FakeSequential._module_sequence). Neither shows in named_* or
// state_dict; deep copy copies them.
struct Attribute {
  torch::Tensor tensor;
  std::vector<std::shared_ptr<Module>> modules;
};

class Module : public std::enable_shared_from_this<Module> {
 public:
  explicit Module(std::string type_name);
  virtual ~Module();

  // type(module).__name__: how ModTracker and error messages name it.
  const std::string& type_name() const { return type_name_; }
  // `module.__class__ = new_cls`: replicate and fully_shard rename the class
  // they mix into (DDPNet, FSDPLinear); repr and messages follow.
  void set_type_name(std::string name) { type_name_ = std::move(name); }
  // A class whose __deepcopy__ raises AssertionError(message): deep_copy of
  // this module, or of any tree holding it, throws ccts::AssertionError.
  void forbid_deep_copy(std::string message) { deep_copy_error_ = std::move(message); }

  // __call__: global and module forward pre-hooks, backward-hook set-up,
  // forward, forward hooks (global first), in PyTorch's order.
  Value operator()(Args args = {}, Kwargs kwargs = {});
  Value operator()(const torch::Tensor& input) { return (*this)(Args{Value(input)}); }
  // The computation; PyTorch's message when a module defines none.
  virtual Value forward(const Args& args, const Kwargs& kwargs);

  // Methods other than forward (fixture classes define them): `module.<name>(...)`,
  // through the wrapper set for it, if any. An unknown name throws
  // std::invalid_argument with Python's AttributeError text.
  virtual bool has_method(const std::string& name) const { return false; }
  Value call_method(const std::string& name, const Args& args, const Kwargs& kwargs = {});
  using Method = std::function<Value(const Args&, const Kwargs&)>;
  // Replaces the method by wrapper(module, args, kwargs, original), as
  // setattr(module, name, wrapped) does (register_fsdp_forward_method).
  using MethodWrapper = std::function<Value(Module&, const Args&, const Kwargs&, const Method& original)>;
  void wrap_method(const std::string& name, MethodWrapper wrapper);

  // Registration (register_module / register_parameter / register_buffer).
  // Registering an existing name replaces the entry in place, like setattr.
  std::shared_ptr<Module> register_module(const std::string& name, std::shared_ptr<Module> module);
  // An undefined tensor registers None (Linear without bias): not listed.
  torch::Tensor& register_parameter(const std::string& name, torch::Tensor tensor,
                                    bool requires_grad = true);
  torch::Tensor& register_buffer(const std::string& name, torch::Tensor tensor,
                                 bool persistent = true);
  void set_attribute(const std::string& name, Attribute attribute);
  // `del module.<name>` for a parameter; false when there is none.
  bool remove_parameter(const std::string& name);

  // Direct members (KeyError-like std::out_of_range when absent).
  std::shared_ptr<Module> child(const std::string& name) const;
  torch::Tensor& parameter(const std::string& name);
  torch::Tensor& buffer(const std::string& name);
  Attribute& attribute(const std::string& name);
  bool has_child(const std::string& name) const;
  bool has_parameter(const std::string& name) const;
  bool has_buffer(const std::string& name) const;
  bool has_attribute(const std::string& name) const;
  // The slot itself (nullptr when absent): for APIs that swap a parameter.
  torch::Tensor* find_parameter(const std::string& name);

  const std::vector<std::pair<std::string, std::shared_ptr<Module>>>& named_children() const {
    return children_;
  }
  // Pre-order, each module once (PyTorch's memo), FQNs joined by '.'.
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> named_modules(
      const std::string& prefix = "", bool remove_duplicate = true);
  NamedTensors named_parameters(const std::string& prefix = "", bool recurse = true,
                                bool remove_duplicate = true);
  NamedTensors named_buffers(const std::string& prefix = "", bool recurse = true,
                             bool remove_duplicate = true);
  std::vector<torch::Tensor> parameters(bool recurse = true);
  // Own parameters then persistent buffers, then each child's; detached.
  StateDict state_dict(const std::string& prefix = "", bool keep_vars = false);
  // Copies values in place; PyTorch's error text on missing/unexpected keys
  // and size mismatches when strict.
  IncompatibleKeys load_state_dict(const StateDict& state_dict, bool strict = true);

  // copy.deepcopy: a new tree with copied tensors, attributes and hooks.
  std::shared_ptr<Module> deep_copy() const;
  std::shared_ptr<Module> deep_copy(DeepCopyMemo& memo) const;

  void train(bool mode = true);
  void eval() { train(false); }
  bool is_training() const { return training_; }
  void to(const torch::Device& device);
  // module.to(dtype): floating-point parameters and buffers converted in place.
  void to(torch::Dtype dtype);
  // module.to_empty(device=device): every tensor not on `device` gets new
  // storage there (zeros here; PyTorch leaves it uninitialised).
  void to_empty(const torch::Device& device);
  void zero_grad(bool set_to_none = true);

  // isinstance(module, (nn.ModuleList, nn.ModuleDict)): one of the two
  // containers or a subclass of one (a fixture class with a `base`).
  virtual bool is_container() const { return false; }
  // type(module).forward is not nn.Module.forward: the class defines one.
  virtual bool defines_forward() const { return true; }

  // PyTorch's repr(module): the type name, extra_repr() and the children.
  virtual std::string repr() const;
  virtual std::string extra_repr() const { return ""; }

  // Slots for APIs layered on a module (contract's per-API state and
  // registry), as PyTorch keeps them in module.__dict__. Not deep-copied.
  std::shared_ptr<void> annotation(const std::string& key) const;
  void set_annotation(const std::string& key, std::shared_ptr<void> value);

  [[nodiscard]] HookHandle register_forward_pre_hook(ForwardPreHook hook);
  [[nodiscard]] HookHandle register_forward_hook(ForwardHook hook, bool always_call = false);
  [[nodiscard]] HookHandle register_full_backward_pre_hook(BackwardPreHook hook);
  [[nodiscard]] HookHandle register_full_backward_hook(BackwardHook hook);
  // _register_state_dict_pre_hook / _register_load_state_dict_pre_hook: run
  // on each module of the tree, parents first, before state_dict() collects
  // or load_state_dict() copies (fully_shard reshards there).
  [[nodiscard]] HookHandle register_state_dict_pre_hook(StateDictPreHook hook);
  [[nodiscard]] HookHandle register_load_state_dict_pre_hook(StateDictPreHook hook);
  std::size_t hook_count() const;

 protected:
  // A copy of this object's own configuration (the concrete type's copy
  // constructor); deep_copy then replaces tensors, children and hooks.
  virtual std::shared_ptr<Module> clone_shallow() const = 0;

 private:
  struct BufferSlot {
    std::string name;
    torch::Tensor tensor;
    bool persistent;
  };
  std::vector<std::pair<std::string, Module*>> modules_in_order(const std::string& prefix,
                                                               bool recurse, bool remove_duplicate);
  void collect_state_dict(const std::string& prefix, bool keep_vars, StateDict& out) const;
  void load_from_state_dict(const std::string& prefix, const std::map<std::string, torch::Tensor>& sd,
                            std::vector<std::string>& missing,
                            std::vector<std::string>& error_messages);
  void state_dict_keys(const std::string& prefix, std::vector<std::string>& out) const;
  void run_state_dict_pre_hooks(bool load);

  std::string type_name_;
  bool training_ = true;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> children_;
  std::vector<std::pair<std::string, torch::Tensor>> parameters_;
  std::vector<BufferSlot> buffers_;
  std::vector<std::pair<std::string, Attribute>> attributes_;
  std::map<std::string, std::shared_ptr<void>> annotations_;
  std::shared_ptr<HookList<ForwardPreHook>> forward_pre_hooks_;
  std::shared_ptr<HookList<ForwardHook>> forward_hooks_;
  std::shared_ptr<HookList<BackwardPreHook>> backward_pre_hooks_;
  std::shared_ptr<HookList<BackwardHook>> backward_hooks_;
  std::shared_ptr<HookList<StateDictPreHook>> state_dict_pre_hooks_;
  std::shared_ptr<HookList<StateDictPreHook>> load_state_dict_pre_hooks_;
  std::string deep_copy_error_;
  std::map<std::string, MethodWrapper> method_wrappers_;

 protected:
  // The method itself (without wrappers); has_method(name) is true.
  virtual Value run_method(const std::string& name, const Args& args, const Kwargs& kwargs);
};

// Gives a module type its clone_shallow() from its copy constructor.
template <class Derived>
class Cloneable : public Module {
 public:
  using Module::Module;

 protected:
  std::shared_ptr<Module> clone_shallow() const override {
    return std::make_shared<Derived>(static_cast<const Derived&>(*this));
  }
};

}  // namespace ccts::nn
