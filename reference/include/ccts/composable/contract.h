#pragma once
// contract (torch.distributed._composable.contract): turns a function on
// modules into a composable distributed API with per-module state, a
// per-module registry of applied APIs, one application per module, and the
// guarantee that FQNs of parameters, buffers and modules are preserved
// (spec/contract.md).
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "ccts/nn/module.h"

namespace ccts::composable {

// torch.distributed._composable_state._State: every API's state derives from it.
class State {
 public:
  virtual ~State() = default;
};

// One per API call, shared by every root module of the call.
struct RegistryItem {};

using Modules = std::vector<std::shared_ptr<nn::Module>>;
using Registry = std::vector<std::pair<std::string, std::shared_ptr<RegistryItem>>>;

// _get_registry(module): the APIs applied to the module in application order,
// or nothing for a module no API touched.
std::optional<Registry> get_registry(const nn::Module& module);

// torch.distributed.utils._get_root_modules: the modules of the list that are
// not inside another module of the list, in list order.
Modules get_root_modules(const Modules& modules);

class Contract {
 public:
  using StateFactory = std::function<std::shared_ptr<State>()>;
  // What the API returned: one module, or a list (Python's return value).
  struct Returned {
    Modules modules;
    bool is_list = false;
  };
  // The API itself. `input` is the call's module (is_list false) or list;
  // returning nothing means Python's `return None`, i.e. the input.
  using Body = std::function<std::optional<Returned>(const Modules& input, bool is_list)>;

  Contract(std::string name, Body body, StateFactory make_state = nullptr);

  // Applies the API to one module; returns what the API returned.
  Returned operator()(const std::shared_ptr<nn::Module>& module) const;
  // Applies the API to a list of modules (state on its root modules only).
  Returned operator()(const Modules& modules) const;
  // One call with its own arguments bound into `body` (Python's
  // func(module, **kwargs)): replicate and fully_shard pass their options so.
  Returned call(const Modules& input, bool is_list, const Body& body) const;

  // func.state(module): this API's state on the module, or nullptr.
  std::shared_ptr<State> state(const nn::Module& module) const;
  template <class T>
  std::shared_ptr<T> state_as(const nn::Module& module) const {
    return std::dynamic_pointer_cast<T>(state(module));
  }
  const std::string& name() const { return name_; }

 private:

  std::string name_;
  Body body_;
  StateFactory make_state_;
  std::shared_ptr<const char> identity_;  // `func` as a dict key: one per Contract
};

}  // namespace ccts::composable
