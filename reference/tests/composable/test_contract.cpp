// contract against torch.distributed._composable.contract (test_contract.py).
#include "ccts_catch.h"
#include <torch/torch.h>

#include "ccts/composable/contract.h"
#include "ccts/errors.h"
#include "ccts/nn/modules.h"

using namespace ccts;
using composable::Contract;
using composable::Modules;

namespace {

std::shared_ptr<nn::Sequential> five_linears() {
  std::vector<std::shared_ptr<nn::Module>> items;
  for (int i = 0; i < 5; ++i) items.push_back(std::make_shared<nn::Linear>(3, 3));
  return std::make_shared<nn::Sequential>(items);
}

Modules children(const nn::Sequential& seq, std::initializer_list<std::size_t> indices) {
  Modules out;
  for (auto i : indices) out.push_back(seq[i]);
  return out;
}

struct Dummy : composable::State {
  int value = 0;
};

Contract identity_api(const std::string& name) {
  return Contract(name, [](const Modules&, bool) { return std::nullopt; },
                  [] { return std::make_shared<Dummy>(); });
}

}  // namespace

TEST_CASE("registry lists applied APIs in order and untouched modules have none") {
  auto model = five_linears();
  auto api1 = identity_api("api1");
  auto api2 = identity_api("api2");
  api1(model);
  api2(model);
  auto registry = composable::get_registry(*model);
  REQUIRE(registry);
  REQUIRE(registry->size() == 2);
  CHECK(registry->at(0).first == "api1");
  CHECK(registry->at(1).first == "api2");
  CHECK_FALSE(composable::get_registry(*(*model)[0]));
  CHECK_THROWS_WITH(api1(model), ccts_catch::Contains("api1 has already been applied"));
  try {
    api1(model);
  } catch (const ApiError& e) {
    CHECK(e.kind() == "already_applied");
  }
}

TEST_CASE("state is one object per call, shared by the call's root modules") {
  auto model = five_linears();
  auto api = identity_api("multi_module_api");
  api(children(*model, {0, 1}));
  api(children(*model, {2, 3}));
  api(children(*model, {4}));
  auto s = [&](std::size_t i) { return api.state(*(*model)[i]).get(); };
  CHECK(s(0) == s(1));
  CHECK(s(2) == s(3));
  CHECK(s(0) != s(2));
  CHECK(s(0) != s(4));
  CHECK(composable::get_registry(*(*model)[0])->at(0).second ==
        composable::get_registry(*(*model)[1])->at(0).second);
  CHECK(composable::get_registry(*(*model)[0])->at(0).second !=
        composable::get_registry(*(*model)[2])->at(0).second);
  CHECK(api.state(*model) == nullptr);

  auto fresh = five_linears();
  api(children(*fresh, {0, 1}));
  CHECK_THROWS_WITH(api(children(*fresh, {0, 2})),
                    "Each distinct composable distributed API can only be applied to a module once. "
                    "multi_module_api has already been applied to the following module:\n"
                    "Linear(in_features=3, out_features=3, bias=True)");
}

TEST_CASE("a list call puts state on root modules only") {
  auto model = five_linears();
  auto api = identity_api("api");
  api(Modules{model, (*model)[0]});
  CHECK(api.state(*model) != nullptr);
  CHECK(api.state(*(*model)[0]) == nullptr);
}

TEST_CASE("state is written before the API body runs") {
  auto model = five_linears();
  bool seen = false;
  Contract api("api", [&](const Modules& input, bool) {
    seen = composable::get_registry(*input[0]).has_value();
    return std::nullopt;
  });
  api(model);
  CHECK(seen);
}

TEST_CASE("changing FQNs is rejected with PyTorch's messages") {
  auto model = five_linears();
  Contract wrap("wrap_module", [](const Modules& input, bool) {
    auto wrapper = std::make_shared<nn::Sequential>(input);
    return Contract::Returned{{wrapper}, false};
  });
  CHECK_THROWS_WITH(wrap(model), ccts_catch::StartsWith("Checking parameters: Composable distributed API "
                                                   "implementations cannot modify FQNs.\nFQNs only in original: {'0.bias'"));
  Contract add_buffer("add_buffer", [](const Modules& input, bool) {
    input[0]->register_buffer("extra", torch::zeros({1}));
    return std::nullopt;
  });
  CHECK_THROWS_WITH(add_buffer((*model)[1]),
                    "Checking buffers: Composable distributed API implementations cannot modify FQNs.\n"
                    "FQNs only in original: set()\nFQNs only in new: {'extra'}");
  Contract reorder("reorder", [](const Modules& input, bool) {
    // a new module with the same parameter names in the same order
    auto fresh = std::make_shared<nn::Linear>(3, 3);
    fresh->register_parameter("bias", input[0]->parameter("bias"));
    return Contract::Returned{{fresh}, false};
  });
  CHECK_NOTHROW(reorder((*model)[2]));  // same names, same order
  Contract count("count", [](const Modules& input, bool) {
    return Contract::Returned{{input[0]}, false};
  });
  CHECK_THROWS_WITH(count(children(*model, {3, 4})),
                    "count should return the same number of modules as input modulesInputs: 2 "
                    "modules\nOutputs: 1 modules");
}
