// Hooks against torch.nn.Module's semantics (orders checked against PyTorch).
#include "ccts_catch.h"
#include <torch/torch.h>

#include "ccts/nn/checkpoint.h"
#include "ccts/nn/grad_hooks.h"
#include "ccts/nn/modules.h"

using namespace ccts::nn;

namespace {

std::shared_ptr<Sequential> linear_relu() {
  return std::make_shared<Sequential>(
      std::vector<std::shared_ptr<Module>>{std::make_shared<Linear>(3, 2), std::make_shared<ReLU>()});
}

struct Log {
  std::vector<std::string> events;
  std::vector<HookHandle> handles;

  void watch(Module& module, const std::string& name) {
    handles.push_back(module.register_forward_pre_hook([this, name](Module&, const Args&, const Kwargs&) {
      events.push_back("pre_fw " + name);
      return std::optional<ForwardPreResult>();
    }));
    handles.push_back(module.register_forward_hook([this, name](Module&, const Args&, const Kwargs&, const Value&) {
      events.push_back("post_fw " + name);
      return std::optional<Value>();
    }));
    handles.push_back(module.register_full_backward_pre_hook([this, name](Module&, const TensorList&) {
      events.push_back("pre_bw " + name);
      return std::optional<TensorList>();
    }));
    handles.push_back(module.register_full_backward_hook(
        [this, name](Module&, const TensorList& grad_input, const TensorList&) {
          std::string none;
          for (const auto& g : grad_input) none += g.defined() ? "T" : "N";
          events.push_back("post_bw " + name + " " + none);
          return std::optional<TensorList>();
        }));
  }
};

}  // namespace

TEST_CASE("forward hooks run around forward outermost first and backward hooks in reverse") {
  auto seq = linear_relu();
  Log log;
  log.watch(*seq, "seq");
  log.watch(*(*seq)[0], "lin");
  log.watch(*(*seq)[1], "relu");
  auto x = torch::randn({4, 3}, torch::requires_grad());
  (*seq)(x).tensor().sum().backward();
  CHECK(log.events == std::vector<std::string>{
                          "pre_fw seq", "pre_fw lin", "post_fw lin", "pre_fw relu", "post_fw relu",
                          "post_fw seq", "pre_bw seq", "pre_bw relu", "post_bw relu T", "pre_bw lin",
                          "post_bw lin T", "post_bw seq T"});
}

TEST_CASE("full backward hooks of modules whose inputs need no grad fire with grad_input None") {
  auto seq = linear_relu();
  Log log;
  log.watch(*seq, "seq");
  log.watch(*(*seq)[0], "lin");
  log.watch(*(*seq)[1], "relu");
  (*seq)(torch::randn({4, 3})).tensor().sum().backward();
  // As PyTorch: the hook fires as soon as grad_output is known.
  CHECK(std::vector<std::string>(log.events.begin() + 6, log.events.end()) ==
        std::vector<std::string>{"pre_bw seq", "post_bw seq N", "pre_bw relu", "post_bw relu T",
                                 "pre_bw lin", "post_bw lin N"});
}

TEST_CASE("a module called twice fires its backward hooks once per call") {
  auto lin = std::make_shared<Linear>(2, 2);
  int pre = 0;
  int post = 0;
  auto h1 = lin->register_full_backward_pre_hook([&](Module&, const TensorList& go) {
    CHECK(go.size() == 1);
    ++pre;
    return std::optional<TensorList>();
  });
  auto h2 = lin->register_full_backward_hook([&](Module&, const TensorList&, const TensorList&) {
    ++post;
    return std::optional<TensorList>();
  });
  auto x = torch::randn({3, 2}, torch::requires_grad());
  (*lin)((*lin)(x).tensor()).tensor().sum().backward();
  CHECK(pre == 2);
  CHECK(post == 2);
}

TEST_CASE("hooks replace args, outputs, grad_output and grad_input") {
  auto lin = std::make_shared<Linear>(2, 2);
  auto x = torch::randn({3, 2}, torch::requires_grad());
  const torch::Tensor plain = (*lin)(x * 2).tensor().detach();
  {
    auto h = lin->register_forward_pre_hook([](Module&, const Args& args, const Kwargs& kwargs) {
      return std::optional<ForwardPreResult>(ForwardPreResult{{Value(args[0].tensor() * 2)}, kwargs});
    });
    CHECK(torch::equal((*lin)(x).tensor(), plain));
  }
  {
    auto h = lin->register_forward_hook([](Module&, const Args&, const Kwargs&, const Value& out) {
      return std::optional<Value>(Value(out.tensor() + 1));
    });
    CHECK(torch::allclose((*lin)(x * 2).tensor(), plain + 1));
  }
  {
    // grad_output replaced by zeros: no gradient reaches the parameters.
    auto h = lin->register_full_backward_pre_hook([](Module&, const TensorList& go) {
      return std::optional<TensorList>(TensorList{torch::zeros_like(go[0])});
    });
    (*lin)(x).tensor().sum().backward();
    CHECK(lin->parameter("weight").grad().abs().sum().item<float>() == 0.0f);
    CHECK(x.grad().abs().sum().item<float>() == 0.0f);
  }
  lin->zero_grad();
  x.mutable_grad() = torch::Tensor();
  {
    // grad_input replaced: x receives 3s, the parameters their true gradient.
    auto h = lin->register_full_backward_hook([](Module&, const TensorList& gi, const TensorList&) {
      return std::optional<TensorList>(TensorList{torch::full_like(gi[0], 3.0)});
    });
    (*lin)(x).tensor().sum().backward();
    CHECK(torch::equal(x.grad(), torch::full({3, 2}, 3.0f)));
    CHECK(lin->parameter("weight").grad().abs().sum().item<float>() > 0.0f);
  }
}

TEST_CASE("grad_input and grad_output carry PyTorch's values") {
  auto lin = std::make_shared<Linear>(2, 2);
  TensorList seen_in;
  TensorList seen_out;
  auto h = lin->register_full_backward_hook([&](Module&, const TensorList& gi, const TensorList& go) {
    seen_in = gi;
    seen_out = go;
    return std::optional<TensorList>();
  });
  auto x = torch::randn({3, 2}, torch::requires_grad());
  (*lin)(x).tensor().sum().backward();
  REQUIRE(seen_out.size() == 1);
  CHECK(torch::equal(seen_out[0], torch::ones({3, 2})));
  CHECK(torch::allclose(seen_in[0], torch::ones({3, 2}).mm(lin->parameter("weight"))));
}

TEST_CASE("a wrong number of replaced gradients is PyTorch's error") {
  auto lin = std::make_shared<Linear>(2, 2);
  auto h = lin->register_full_backward_pre_hook([](Module&, const TensorList& go) {
    return std::optional<TensorList>(TensorList{go[0], go[0]});
  });
  auto x = torch::randn({3, 2}, torch::requires_grad());
  CHECK_THROWS_WITH((*lin)(x).tensor().sum().backward(),
                    ccts_catch::Contains("Backward pre hook returned an invalid number of grad_output, got 2, but expected 1"));
}

TEST_CASE("handles remove hooks: remove(), destruction, or never when detached") {
  auto lin = std::make_shared<Linear>(2, 2);
  int calls = 0;
  auto count = [&](Module&, const Args&, const Kwargs&) {
    ++calls;
    return std::optional<ForwardPreResult>();
  };
  auto x = torch::randn({1, 2});
  {
    HookHandle handle = lin->register_forward_pre_hook(count);
    (*lin)(x);
    handle.remove();
    handle.remove();  // idempotent
    (*lin)(x);
  }
  CHECK(calls == 1);
  { auto scoped = lin->register_forward_pre_hook(count); }
  (*lin)(x);
  CHECK(calls == 1);
  lin->register_forward_pre_hook(count).detach();
  (*lin)(x);
  CHECK(calls == 2);
  CHECK(lin->hook_count() == 1);
}

TEST_CASE("global hooks run for every module, before the module's own hooks") {
  auto seq = linear_relu();
  std::vector<std::string> events;
  auto own = (*seq)[0]->register_forward_pre_hook([&](Module& m, const Args&, const Kwargs&) {
    events.push_back("own " + m.type_name());
    return std::optional<ForwardPreResult>();
  });
  {
    auto global = register_module_forward_pre_hook([&](Module& m, const Args&, const Kwargs&) {
      events.push_back("global " + m.type_name());
      return std::optional<ForwardPreResult>();
    });
    auto global_bw = register_module_full_backward_hook([&](Module& m, const TensorList&, const TensorList&) {
      events.push_back("global_bw " + m.type_name());
      return std::optional<TensorList>();
    });
    CHECK(global_hook_count() == 2);
    (*seq)(torch::randn({1, 3}, torch::requires_grad())).tensor().sum().backward();
  }
  CHECK(global_hook_count() == 0);
  CHECK(events == std::vector<std::string>{"global Sequential", "global Linear", "own Linear",
                                           "global ReLU", "global_bw ReLU", "global_bw Linear",
                                           "global_bw Sequential"});
}

TEST_CASE("always_call forward hooks run when forward raises") {
  ModuleList list;  // has no forward
  int always = 0;
  int normal = 0;
  auto a = list.register_forward_hook([&](Module&, const Args&, const Kwargs&, const Value& out) {
    CHECK(out.is_none());
    ++always;
    return std::optional<Value>();
  }, /*always_call=*/true);
  auto b = list.register_forward_hook([&](Module&, const Args&, const Kwargs&, const Value&) {
    ++normal;
    return std::optional<Value>();
  });
  CHECK_THROWS(list(torch::ones({1})));
  CHECK(always == 1);
  CHECK(normal == 0);
}

TEST_CASE("checkpoint reruns the forward once in backward and keeps gradients") {
  auto plain = std::make_shared<Linear>(3, 3);
  auto checked = std::static_pointer_cast<Linear>(plain->deep_copy());
  std::vector<bool> forward_in_backward;
  auto h = checked->register_forward_pre_hook([&](Module&, const Args&, const Kwargs&) {
    forward_in_backward.push_back(in_backward());
    return std::optional<ForwardPreResult>();
  });
  auto x = torch::randn({2, 3});
  torch::relu((*plain)(x).tensor()).sum().backward();
  torch::relu(checkpoint(*checked, {Value(x)}).tensor()).sum().backward();
  CHECK(forward_in_backward == std::vector<bool>{false, true});
  CHECK(torch::equal(plain->parameter("weight").grad(), checked->parameter("weight").grad()));
  CHECK_FALSE(in_backward());
}

TEST_CASE("multi-grad hooks fire once per backward, for one tensor or several, in both modes") {
  auto x = torch::randn({2, 3}, torch::requires_grad());
  auto a = x * 2;
  auto b = x * 3;
  int all_one = 0, all_two = 0, any_one = 0, any_two = 0;
  register_multi_grad_hook({a}, [&] { ++all_one; }, MultiGradMode::All);
  register_multi_grad_hook({a, b}, [&] { ++all_two; }, MultiGradMode::All);
  register_multi_grad_hook({a}, [&] { ++any_one; }, MultiGradMode::Any);
  register_multi_grad_hook({a, b}, [&] { ++any_two; }, MultiGradMode::Any);
  (a.sum() + b.sum()).backward({}, /*retain_graph=*/true);
  CHECK(std::vector<int>{all_one, all_two, any_one, any_two} == std::vector<int>{1, 1, 1, 1});
  // A backward through b alone: mode All waits only for the gradients it computes.
  b.sum().backward({}, /*retain_graph=*/true);
  CHECK(std::vector<int>{all_one, all_two, any_one, any_two} == std::vector<int>{1, 2, 1, 2});
}

TEST_CASE("a multi-grad hook does not keep the graph it watches alive") {
  // The hook sits on the node of the tensor it watches; holding that node
  // from the hook would be a cycle that nothing frees, leaking every graph.
  auto token = std::make_shared<int>(0);
  for (const auto mode : {MultiGradMode::All, MultiGradMode::Any}) {
    for (const int tensors : {1, 2}) {
      auto x = torch::randn({2, 3}, torch::requires_grad());
      {
        std::vector<torch::Tensor> watched{x * 2, x * 3};
        watched.resize(tensors);
        register_multi_grad_hook(watched, [token] {}, mode);
        CHECK(token.use_count() > 1);
        watched.front().sum().backward();
      }
      CHECK(token.use_count() == 1);
    }
  }
}
