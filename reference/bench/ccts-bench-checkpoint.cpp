// ccts-bench-checkpoint: one side of `./ccts bench checkpoint` (runners/benchmarks/checkpoint.py
// runs it once per fixture; runners/benchmarks/pytorch_checkpoint.py is its PyTorch twin and
// prints the same fields).
//
// Builds a fixture (BenchDeep, or BenchDeepCheckpointed whose forward runs
// each block under the `checkpoint` op: ccts::nn::checkpoint) and runs
// forward + MSE loss + backward, no optimizer, so every step sees the same
// values. After the warm-up, one step is measured from the resting state
// (gradients cleared, free heap given back): the RSS kept at the end of
// forward (what backward will need) and the peak of forward + backward.
// Then timed steps. Prints one JSON line on stdout.
#include <malloc.h>

#include <chrono>
#include <iostream>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "ccts/fixtures/fixture.h"
#include "ccts/nn/checkpoint.h"
#include "ccts/nn/module.h"
#include "ccts/values/generator.h"
#include "common.h"

namespace {

using json = nlohmann::ordered_json;
using Clock = std::chrono::steady_clock;

constexpr const char* kUsage =
    "usage: ccts-bench-checkpoint [--fixtures DIR] [--fixture NAME] [--warmup N] [--steps N] [--threads N]\n";

struct Options : ccts::bench::CommonOptions {
  std::string fixture = "BenchDeepCheckpointed";
};

Options parse(int argc, char** argv) {
  auto o = ccts::bench::read_options<Options>(argc, argv, [](Options& o, const std::string& arg, auto value) {
    if (arg != "--fixture") return false;
    o.fixture = value();
    return true;
  });
  if (o.warmup < 1 || o.steps < 1 || o.threads < 1) {
    throw std::invalid_argument("--warmup, --steps and --threads must be >= 1");
  }
  return o;
}

double ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

int run(const Options& o) {
  namespace bench = ccts::bench;
  bench::rss_follows_allocations();
  at::set_num_threads(o.threads);
  ccts::fixtures::FixtureLibrary library = ccts::fixtures::FixtureLibrary::from_directory(o.fixtures);
  const ccts::fixtures::Fixture& fixture = library.get(o.fixture);
  ccts::fixtures::BuildOptions build;
  build.seed = 0;
  build.checkpoint = [](ccts::nn::Module& m, const ccts::nn::Args& args) { return ccts::nn::checkpoint(m, args); };
  std::shared_ptr<ccts::nn::Module> model = ccts::fixtures::build_module(fixture, build);
  ccts::fixtures::Input input = ccts::fixtures::make_input(fixture, 0);
  if (input.args.size() != 1 || !input.args.front().is_tensor() || !input.kwargs.empty()) {
    throw std::invalid_argument("fixture " + o.fixture + ": the benchmark needs one tensor input");
  }
  const torch::Tensor x = input.args.front().tensor();
  std::int64_t param_bytes = 0;
  for (const auto& p : model->parameters()) param_bytes += p.numel() * static_cast<std::int64_t>(p.element_size());

  torch::Tensor target;
  auto forward = [&] {
    torch::Tensor out = (*model)(x).tensor();
    if (!target.defined()) {
      target = ccts::values::normal(out.sizes(), 0, ccts::values::fnv1a64("bench:target"));
    }
    return torch::mse_loss(out, target);
  };

  std::vector<double> losses;
  for (int i = 0; i < o.warmup; ++i) {
    model->zero_grad(true);
    torch::Tensor loss = forward();
    loss.backward();
    losses.push_back(loss.item<double>());
  }

  // The measured step, from the resting state.
  model->zero_grad(true);
  malloc_trim(0);
  const std::int64_t before = bench::status_bytes("VmRSS");
  const bool reset = bench::reset_peak_rss();
  torch::Tensor loss = forward();
  const std::int64_t kept_forward = bench::status_bytes("VmRSS") - before;
  const std::int64_t peak_forward = bench::status_bytes("VmHWM") - before;
  const std::int64_t packed = ccts::nn::checkpoint_packed_tensors();
  loss.backward();
  const std::int64_t peak_step = bench::status_bytes("VmHWM") - before;
  losses.push_back(loss.item<double>());
  loss = torch::Tensor();

  std::vector<double> step_ms, forward_ms, backward_ms;
  for (int i = 0; i < o.steps; ++i) {
    const auto t0 = Clock::now();
    model->zero_grad(true);
    torch::Tensor l = forward();
    const auto t1 = Clock::now();
    l.backward();
    const auto t2 = Clock::now();
    step_ms.push_back(ms(t2 - t0));
    forward_ms.push_back(ms(t1 - t0));
    backward_ms.push_back(ms(t2 - t1));
    losses.push_back(l.item<double>());
  }
  double grad_sum = 0.0;
  for (const auto& p : model->parameters()) {
    if (p.grad().defined()) grad_sum += p.grad().to(torch::kDouble).sum().item<double>();
  }

  json out = {{"side", "reference"},
              {"torch", ccts::bench::torch_version()},
              {"fixture", o.fixture},
              {"threads", at::get_num_threads()},
              {"input_shape", x.sizes().vec()},
              {"param_bytes", param_bytes},
              {"rss_before_bytes", before},
              {"kept_forward_bytes", kept_forward},
              {"peak_forward_bytes", peak_forward},
              {"peak_step_bytes", peak_step},
              {"hwm_reset", reset},
              {"saved_tensors_packed", packed},
              {"step_ms", step_ms},
              {"forward_ms", forward_ms},
              {"backward_ms", backward_ms},
              {"losses", losses},
              {"grad_sum", grad_sum}};
  std::cout << out.dump() << std::endl;
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return ccts::bench::bench_main("ccts-bench-checkpoint", kUsage, argc, argv, parse, run); }
