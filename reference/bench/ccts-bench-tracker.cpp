// ccts-bench-tracker: the reference's side of `./ccts bench mod_tracker`
// (runners/benchmarks/tracker.py starts it and reads what it prints).
//
// For each fixture named (--fixture, repeatable; default BenchTracker100,
// fixtures/bench_tracker.yaml), built with the portable generator: times
// forward + backward of the output's sum, without a tracker and inside a
// ModTracker scope whose four user hooks count their calls and record the
// module's FQN (as the adapters' recording hooks do). The two modes
// alternate, the order swapped every step, so that a drift in machine load
// hits both. Gradients are cleared between steps, outside the timed part.
// Prints one JSON line; runners/benchmarks/pytorch_tracker.py is its PyTorch
// twin and prints the same fields.
#include <time.h>

#include <array>
#include <chrono>
#include <iostream>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "ccts/fixtures/fixture.h"
#include "ccts/nn/module.h"
#include "ccts/tools/mod_tracker.h"
#include "common.h"

namespace {

using json = nlohmann::ordered_json;
using Clock = std::chrono::steady_clock;

constexpr const char* kUsage =
    "usage: ccts-bench-tracker [--fixtures DIR] [--fixture NAME]... [--warmup N] [--steps N] [--threads N]\n";

// This thread's CPU time in ms: the steps run on it (CPU backward runs on
// the calling thread), and it leaves out time other processes hold the CPU.
double thread_cpu_ms() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) * 1e3 + static_cast<double>(ts.tv_nsec) / 1e6;
}

struct Options : ccts::bench::CommonOptions {
  Options() { warmup = 5; steps = 30; }
  std::vector<std::string> fixture_names;  // empty: BenchTracker100
};

Options parse(int argc, char** argv) {
  auto o = ccts::bench::read_options<Options>(argc, argv, [](Options& o, const std::string& arg, auto value) {
    if (arg != "--fixture") return false;
    o.fixture_names.push_back(value());
    return true;
  });
  if (o.warmup < 1 || o.steps < 1 || o.threads < 1) {
    throw std::invalid_argument("--warmup, --steps and --threads must be >= 1");
  }
  if (o.fixture_names.empty()) o.fixture_names.push_back("BenchTracker100");
  return o;
}

// The user hooks' record, per kind in register_user_hooks' order.
constexpr std::array<const char*, 4> kHookKinds = {"pre_fw", "post_fw", "pre_bw", "post_bw"};

struct HookRecord {
  std::array<std::int64_t, 4> calls{};
  std::array<std::vector<std::string>, 4> fqns;  // of the latest tracked step

  void new_step() {
    for (auto& list : fqns) list.clear();
  }
  json to_json(bool with_fqns) const {
    json out = json::object();
    for (std::size_t k = 0; k < kHookKinds.size(); ++k) {
      out[kHookKinds[k]] = with_fqns ? json(fqns[k]) : json(calls[k]);
    }
    return out;
  }
};

class Stepper {
 public:
  Stepper(std::shared_ptr<ccts::nn::Module> model, torch::Tensor input)
      : model_(std::move(model)), input_(std::move(input)) {
    auto hook = [this](std::size_t kind) {
      return [this, kind](ccts::nn::Module* module) {
        ++record_.calls[kind];
        record_.fqns[kind].push_back(tracker_.get_known_fqn(module).value_or("?"));
      };
    };
    tracker_.register_user_hooks(hook(0), hook(1), hook(2), hook(3));
  }

  struct Timed {
    double ms;
    double cpu_ms;
    double loss;
  };

  // One forward + backward, inside the tracker's scope when `tracked`.
  Timed step(bool tracked) {
    model_->zero_grad(true);
    if (tracked) record_.new_step();
    const double cpu_start = thread_cpu_ms();
    const auto start = Clock::now();
    torch::Tensor loss;
    if (tracked) {
      ccts::tools::ModTracker::Scope scope(tracker_);
      loss = forward_backward();
    } else {
      loss = forward_backward();
    }
    const double ms = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
    const double cpu_ms = thread_cpu_ms() - cpu_start;
    return {ms, cpu_ms, loss.item<double>()};
  }

  HookRecord& record() { return record_; }

 private:
  torch::Tensor forward_backward() {
    torch::Tensor loss = (*model_)(input_).tensor().sum();
    loss.backward();
    return loss;
  }

  std::shared_ptr<ccts::nn::Module> model_;
  torch::Tensor input_;
  ccts::tools::ModTracker tracker_;
  HookRecord record_;
};

json bench_fixture(const Options& o, const ccts::fixtures::Fixture& fixture) {
  ccts::fixtures::BuildOptions build;
  build.seed = 0;
  std::shared_ptr<ccts::nn::Module> model = ccts::fixtures::build_module(fixture, build);
  ccts::fixtures::Input input = ccts::fixtures::make_input(fixture, 0);
  if (input.args.size() != 1 || !input.args.front().is_tensor() || !input.kwargs.empty()) {
    throw std::invalid_argument("fixture " + fixture.name + ": the benchmark needs one tensor input");
  }
  std::int64_t numel = 0;
  for (const auto& p : model->parameters()) numel += p.numel();

  Stepper stepper(model, input.args.front().tensor());
  for (int i = 0; i < o.warmup; ++i) {
    stepper.step(false);
    stepper.step(true);
  }
  stepper.record().calls = {};  // count the timed steps only
  std::vector<double> plain_ms, tracked_ms, plain_cpu_ms, tracked_cpu_ms;
  double plain_loss = 0.0, tracked_loss = 0.0;
  for (int i = 0; i < o.steps; ++i) {
    for (const bool tracked : {i % 2 == 1, i % 2 == 0}) {
      const Stepper::Timed t = stepper.step(tracked);
      (tracked ? tracked_ms : plain_ms).push_back(t.ms);
      (tracked ? tracked_cpu_ms : plain_cpu_ms).push_back(t.cpu_ms);
      (tracked ? tracked_loss : plain_loss) = t.loss;
    }
  }
  return {{"fixture", fixture.name},
          {"modules", model->named_modules().size()},
          {"numel", numel},
          {"input_shape", input.args.front().tensor().sizes().vec()},
          {"plain_ms", plain_ms},
          {"tracked_ms", tracked_ms},
          {"plain_cpu_ms", plain_cpu_ms},
          {"tracked_cpu_ms", tracked_cpu_ms},
          {"hook_calls", stepper.record().to_json(false)},
          {"hook_fqns", stepper.record().to_json(true)},
          {"plain_loss", plain_loss},
          {"tracked_loss", tracked_loss}};
}

int run(const Options& o) {
  at::set_num_threads(o.threads);
  ccts::fixtures::FixtureLibrary library = ccts::fixtures::FixtureLibrary::from_directory(o.fixtures);
  json results = json::array();
  for (const auto& name : o.fixture_names) results.push_back(bench_fixture(o, library.get(name)));
  json out = {{"side", "reference"},
              {"torch", ccts::bench::torch_version()},
              {"threads", at::get_num_threads()},
              {"warmup", o.warmup},
              {"steps", o.steps},
              {"fixtures", results}};
  std::cout << out.dump() << std::endl;
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return ccts::bench::bench_main("ccts-bench-tracker", kUsage, argc, argv, parse, run); }
