#pragma once
// Composable APIs defined by a case (`define_api`, spec/contract.md): what the
// API does to each module it is applied to is data, so every adapter builds
// the same test API on its own contract implementation.
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "ccts/composable/contract.h"

namespace ccts::adapter {

using json = nlohmann::ordered_json;

// The state of a test API: named JSON values (Python's attributes on _State),
// of the class define_api's `state_class` names (contract(state_cls=...)).
struct DictState : composable::State {
  explicit DictState(std::string name = "_State") : class_name(std::move(name)) {}
  std::string class_name;
  std::map<std::string, json> values;
};

// Builds the contract-wrapped API of a `define_api` step. `record` receives
// observations the API body makes (record_registry).
std::shared_ptr<composable::Contract> make_test_api(const json& definition,
                                   std::function<void(const std::string&, json)> record);

}  // namespace ccts::adapter
