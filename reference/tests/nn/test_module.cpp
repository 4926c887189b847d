// The module core against PyTorch's torch.nn.Module behaviour: traversal
// order and FQNs, state_dict, load_state_dict errors, deep copy, modes.
#include "ccts_catch.h"
#include <torch/torch.h>

#include "ccts/nn/modules.h"

using namespace ccts::nn;

namespace {

std::vector<std::string> names(const NamedTensors& items) {
  std::vector<std::string> out;
  for (const auto& item : items) out.push_back(item.first);
  return out;
}

// A user-defined module in C++: members registered in constructor order.
class Block : public Cloneable<Block> {
 public:
  Block() : Cloneable("Block") {
    register_module("fc", std::make_shared<Linear>(3, 2));
    register_parameter("scale", torch::ones({2}));
    register_buffer("running", torch::zeros({2}));
    register_buffer("scratch", torch::zeros({1}), /*persistent=*/false);
  }
  Value forward(const Args& args, const Kwargs& kwargs) override {
    return (*child("fc"))(args.at(0).tensor()).tensor() * parameter("scale");
  }
};

std::shared_ptr<Module> make_tree() {
  return std::make_shared<Sequential>(std::vector<std::shared_ptr<Module>>{
      std::make_shared<Block>(), std::make_shared<ReLU>(),
      std::make_shared<ModuleDict>(std::vector<std::pair<std::string, std::shared_ptr<Module>>>{
          {"head", std::make_shared<Linear>(2, 1, false)}})});
}

}  // namespace

TEST_CASE("named_parameters, named_buffers and named_modules follow PyTorch's order") {
  auto tree = make_tree();
  // A module's own members come before its children's (pre-order).
  CHECK(names(tree->named_parameters()) ==
        std::vector<std::string>{"0.scale", "0.fc.weight", "0.fc.bias", "2.head.weight"});
  CHECK(names(tree->named_buffers()) == std::vector<std::string>{"0.running", "0.scratch"});
  std::vector<std::string> modules;
  for (auto& [name, module] : tree->named_modules()) modules.push_back(name);
  CHECK(modules == std::vector<std::string>{"", "0", "0.fc", "1", "2", "2.head"});
  CHECK(names(tree->named_parameters("model")).front() == "model.0.scale");
  CHECK(names(tree->named_parameters("", /*recurse=*/false)).empty());
}

TEST_CASE("state_dict holds parameters then persistent buffers per module, detached") {
  auto tree = make_tree();
  StateDict sd = tree->state_dict();
  CHECK(names(sd) == std::vector<std::string>{"0.scale", "0.running", "0.fc.weight", "0.fc.bias",
                                              "2.head.weight"});
  for (auto& [key, tensor] : sd) CHECK_FALSE(tensor.requires_grad());
}

TEST_CASE("shared parameters and modules are listed once, state_dict lists every path") {
  auto shared = std::make_shared<Linear>(2, 2);
  Sequential seq({shared, shared});
  CHECK(names(seq.named_parameters()) == std::vector<std::string>{"0.weight", "0.bias"});
  CHECK(names(seq.named_parameters("", true, /*remove_duplicate=*/false)).size() == 4);
  CHECK(seq.named_modules().size() == 2);
  CHECK(seq.state_dict().size() == 4);
}

TEST_CASE("load_state_dict copies values and reports PyTorch's errors") {
  auto source = make_tree();
  auto target = make_tree();
  target->load_state_dict(source->state_dict());
  CHECK(torch::equal(target->named_parameters()[0].second, source->named_parameters()[0].second));

  StateDict sd = source->state_dict();
  sd.erase(sd.begin());  // 0.scale
  sd.emplace_back("extra", torch::zeros({1}));
  try {
    target->load_state_dict(sd);
    FAIL("expected an error");
  } catch (const std::runtime_error& e) {
    CHECK(std::string(e.what()) ==
          "Error(s) in loading state_dict for Sequential:\n\tMissing key(s) in state_dict: "
          "\"0.scale\". \n\tUnexpected key(s) in state_dict: \"extra\". ");
  }
  IncompatibleKeys keys = target->load_state_dict(sd, /*strict=*/false);
  CHECK(keys.missing_keys == std::vector<std::string>{"0.scale"});
  CHECK(keys.unexpected_keys == std::vector<std::string>{"extra"});

  StateDict wrong = source->state_dict();
  wrong[2].second = torch::zeros({5});
  CHECK_THROWS_WITH(target->load_state_dict(wrong),
                    "Error(s) in loading state_dict for Sequential:\n\tsize mismatch for "
                    "0.fc.weight: copying a param with shape torch.Size([5]) from checkpoint, the "
                    "shape in current model is torch.Size([2, 3]).");
}

TEST_CASE("deep_copy copies tensors, keeps sharing and is independent") {
  auto shared = std::make_shared<Linear>(2, 2);
  auto seq = std::make_shared<Sequential>(std::vector<std::shared_ptr<Module>>{shared, shared});
  auto copy = seq->deep_copy();
  auto original = seq->named_parameters("", true, false);
  auto copied = copy->named_parameters("", true, false);
  REQUIRE(copied.size() == 4);
  CHECK(copied[0].second.unsafeGetTensorImpl() == copied[2].second.unsafeGetTensorImpl());
  CHECK(copied[0].second.unsafeGetTensorImpl() != original[0].second.unsafeGetTensorImpl());
  CHECK(torch::equal(copied[0].second, original[0].second));
  CHECK(copied[0].second.requires_grad());
  {
    torch::NoGradGuard no_grad;
    copied[0].second.add_(1.0);
  }
  CHECK_FALSE(torch::equal(copied[0].second, original[0].second));
  CHECK(copy->type_name() == "Sequential");
}

TEST_CASE("train, eval, zero_grad and plain attributes") {
  auto tree = make_tree();
  tree->eval();
  for (auto& [name, module] : tree->named_modules()) CHECK_FALSE(module->is_training());
  tree->train();
  CHECK(tree->child("2")->child("head")->is_training());

  auto out = (*tree->child("0"))(torch::ones({4, 3}));
  out.tensor().sum().backward();
  CHECK(tree->parameters()[1].grad().defined());
  tree->zero_grad();
  CHECK_FALSE(tree->parameters()[1].grad().defined());

  Attribute plain;
  plain.tensor = torch::zeros({1});
  tree->set_attribute("b", plain);
  CHECK(tree->named_buffers().size() == 2);
  CHECK_THROWS_WITH(tree->register_parameter("a.b", torch::zeros({1})),
                    "parameter name can't contain \".\", got: a.b");
  CHECK_THROWS_WITH(tree->register_buffer("b", torch::zeros({1})), "attribute 'b' already exists");
}

TEST_CASE("Linear matches torch.nn.Linear and containers have no forward") {
  Linear linear(3, 2);
  auto x = torch::randn({4, 3});
  auto y = linear(x).tensor();
  CHECK(torch::allclose(y, torch::matmul(x, linear.parameter("weight").t()) + linear.parameter("bias")));
  CHECK(linear.parameter("weight").sizes() == torch::IntArrayRef({2, 3}));
  Linear no_bias(3, 2, false);
  CHECK(no_bias.named_parameters().size() == 1);
  CHECK(no_bias.state_dict().size() == 1);
  ModuleList list;
  CHECK_THROWS_WITH(list(x), "Module [ModuleList] is missing the required \"forward\" function");
}

TEST_CASE("Value holds tensors, tuples, lists, dicts and scalars") {
  auto t = torch::ones({2});
  Value v = Value::dict({{"a", Value::tuple({t, Value(), 3})}, {"b", Value::list({t})}});
  CHECK(v.tensors().size() == 2);
  CHECK(v.at("a").at(2).to_int() == 3);
  CHECK(v.at("a").at(-3).is_tensor());
  CHECK_THROWS_WITH(v.at("zz"), "KeyError: 'zz'");
  CHECK_THROWS_WITH(v.at("a").at(1).tensor(), "expected a tensor, got None");
  Value doubled = v.map_tensors([](const torch::Tensor& x) { return x * 2; });
  CHECK(doubled.at("b").at(0).tensor().sum().item<float>() == 4.0f);
  CHECK(doubled.at("a").kind() == Value::Kind::Tuple);
}

TEST_CASE("repr follows torch.nn.Module.__repr__") {
  Sequential seq({std::make_shared<Linear>(3, 2), std::make_shared<ReLU>(),
                  std::make_shared<Sequential>(std::vector<std::shared_ptr<Module>>{
                      std::make_shared<Linear>(2, 1, false)})});
  CHECK(seq.repr() ==
        "Sequential(\n"
        "  (0): Linear(in_features=3, out_features=2, bias=True)\n"
        "  (1): ReLU()\n"
        "  (2): Sequential(\n"
        "    (0): Linear(in_features=2, out_features=1, bias=False)\n"
        "  )\n"
        ")");
  CHECK(ReLU(true).repr() == "ReLU(inplace=True)");
  CHECK(ModuleList().repr() == "ModuleList()");
}

TEST_CASE("ModuleList repr groups runs of equal children like PyTorch 2.x") {
  ModuleList list({std::make_shared<Linear>(8, 8), std::make_shared<Linear>(8, 8), std::make_shared<ReLU>(),
                   std::make_shared<Linear>(8, 8)});
  CHECK(list.repr() ==
        "ModuleList(\n"
        "  (0-1): 2 x Linear(in_features=8, out_features=8, bias=True)\n"
        "  (2): ReLU()\n"
        "  (3): Linear(in_features=8, out_features=8, bias=True)\n"
        ")");
  Sequential outer({std::make_shared<ModuleList>(std::vector<std::shared_ptr<Module>>{
      std::make_shared<ReLU>(), std::make_shared<ReLU>()})});
  CHECK(outer.repr() == "Sequential(\n  (0): ModuleList(\n    (0-1): 2 x ReLU()\n  )\n)");
}
