#include "test_api.h"

#include <torch/torch.h>

#include "ccts/errors.h"
#include "ccts/nn/modules.h"

namespace ccts::adapter {

namespace {

// A parent that only forwards to its child (test_contract.py's ModelWrapper).
class ModelWrapper : public nn::Cloneable<ModelWrapper> {
 public:
  explicit ModelWrapper(std::shared_ptr<nn::Module> module) : Cloneable("ModelWrapper") {
    register_module("module", std::move(module));
  }
  nn::Value forward(const nn::Args& args, const nn::Kwargs& kwargs) override {
    return (*child("module"))(args, kwargs);
  }
};

json registry_names(const nn::Module& module) {
  auto registry = composable::get_registry(module);
  if (!registry) return nullptr;
  json names = json::array();
  for (const auto& item : *registry) names.push_back(item.first);
  return names;
}

void add_identity_hooks(nn::Module& module, const json& kinds) {
  for (const auto& kind : kinds) {
    if (kind == "forward_pre") {
      module.register_forward_pre_hook([](nn::Module&, const nn::Args&, const nn::Kwargs&) {
        return std::optional<nn::ForwardPreResult>();
      }).detach();
    } else if (kind == "forward") {
      module.register_forward_hook([](nn::Module&, const nn::Args&, const nn::Kwargs&, const nn::Value& out) {
        return std::optional<nn::Value>(out);
      }).detach();
    } else if (kind == "backward_pre") {
      module.register_full_backward_pre_hook([](nn::Module&, const nn::TensorList& grad_output) {
        return std::optional<nn::TensorList>(grad_output);
      }).detach();
    } else if (kind == "backward") {
      module.register_full_backward_hook([](nn::Module&, const nn::TensorList& grad_input, const nn::TensorList&) {
        return std::optional<nn::TensorList>(grad_input);
      }).detach();
    } else {
      throw std::invalid_argument("define_api.add_hooks: unknown hook kind " + kind.dump());
    }
  }
}

}  // namespace

std::shared_ptr<composable::Contract> make_test_api(const json& definition,
                                   std::function<void(const std::string&, json)> record) {
  // The function's name is the API's name in registries and messages.
  const std::string name = definition.value("function_name", definition.at("name").get<std::string>());
  const std::string state_class = definition.value("state_class", "_State");
  const json actions = definition.value("do", json::array());
  for (const auto& action : actions) {
    if (!action.is_object() || action.size() != 1) {
      throw std::invalid_argument("define_api: an action is a mapping with exactly one key");
    }
  }
  const std::string returns = definition.value("returns", "input");
  // The API body; `self` lets actions reach the API's own state (api.state(module)).
  auto self = std::make_shared<std::weak_ptr<composable::Contract>>();
  auto body = [name, actions, returns, record, self](const composable::Modules& input,
                                                     bool is_list) -> std::optional<composable::Contract::Returned> {
    for (const auto& module : input) {
      for (const auto& action : actions) {
        const auto only = action.begin();
        const std::string verb = only.key();
        const json& arg = only.value();
        if (verb == "add_hooks") {
          add_identity_hooks(*module, arg);
        } else if (verb == "set_state") {
          auto api = self->lock();
          auto state = api ? api->state_as<DictState>(*module) : nullptr;
          if (!state) throw std::runtime_error("'NoneType' object has no attribute '" + arg.at("key").get<std::string>() + "'");
          state->values[arg.at("key").get<std::string>()] = arg.at("value");
        } else if (verb == "add_state_check_hook") {
          // A forward pre-hook that asserts the state holds `expect`, then sets `set`.
          std::weak_ptr<composable::Contract> api = *self;  // hooks must not keep the API alive
          const std::string key = arg.at("key").get<std::string>();
          const json expect = arg.at("expect");
          const json next = arg.at("set");
          module->register_forward_pre_hook([api, key, expect, next](nn::Module& m, const nn::Args&, const nn::Kwargs&) {
            auto contract = api.lock();
            auto state = contract ? contract->state_as<DictState>(m) : nullptr;
            if (!state || state->values[key] != expect) {
              throw AssertionError("state " + key + " is " + (state ? state->values[key].dump() : "None") +
                                   ", expected " + expect.dump());
            }
            state->values[key] = next;
            return std::optional<nn::ForwardPreResult>();
          }).detach();
        } else if (verb == "add_parameter") {
          module->register_parameter(arg.at("name").get<std::string>(), torch::zeros(arg.at("shape").get<std::vector<int64_t>>()));
        } else if (verb == "add_buffer") {
          module->register_buffer(arg.at("name").get<std::string>(), torch::zeros(arg.at("shape").get<std::vector<int64_t>>()));
        } else if (verb == "add_module") {
          module->register_module(arg.at("name").get<std::string>(), std::make_shared<nn::ReLU>());
        } else if (verb == "reregister_parameter") {
          // del module.<name>; module.<name> = same tensor: same FQNs, new order.
          const std::string param = arg.at("name").get<std::string>();
          torch::Tensor tensor = module->parameter(param);
          module->remove_parameter(param);
          module->register_parameter(param, tensor);
        } else if (verb == "record_registry") {
          record(arg.at("as").get<std::string>(), {{"kind", "json"}, {"value", registry_names(*module)}});
        } else {
          throw std::invalid_argument("define_api.do: unknown action '" + verb + "'");
        }
      }
    }
    if (returns == "none") return std::nullopt;
    if (returns == "input") return composable::Contract::Returned{input, is_list};
    if (returns == "first") return composable::Contract::Returned{{input.front()}, false};
    if (returns == "shorter") {
      if (!is_list) throw std::invalid_argument("define_api.returns: shorter takes a list of modules");
      return composable::Contract::Returned{composable::Modules(input.begin(), input.end() - 1), true};
    }
    if (returns == "wrapper") {
      if (is_list) throw std::invalid_argument("define_api.returns: wrapper takes a single module");
      return composable::Contract::Returned{{std::make_shared<ModelWrapper>(input.front())}, false};
    }
    throw std::invalid_argument("define_api.returns: expected input, none, first, wrapper or shorter, got '" + returns + "'");
  };
  auto contract = std::make_shared<composable::Contract>(
      name, body, [state_class] { return std::make_shared<DictState>(state_class); });
  *self = contract;
  return contract;
}

}  // namespace ccts::adapter
