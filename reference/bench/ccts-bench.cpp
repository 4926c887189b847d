// ccts-bench: one rank of `./ccts bench replicate | fully_shard`
// (runners/benchmarks/apis.py starts one per rank and reads what it prints).
//
// Started with torchrun's environment (RANK, WORLD_SIZE, MASTER_ADDR,
// MASTER_PORT). Builds a fixture (default BenchMLP, fixtures/bench.yaml) with
// the portable generator, applies replicate or fully_shard (each Linear, then
// the root; --api none: neither, the compute alone), and trains: zero_grad(set_to_none), forward, MSE loss against a
// generated target, backward, SGD step. Warm-up steps, timed steps, then
// optionally one step whose peak RSS is measured (--memory: large blocks are
// mmapped for the whole run, which slows every step a little), steps without
// gradient synchronisation (--nosync-steps: compute only) and bare
// all-reduces (--allreduce-probe). --bucket-cap-mb is replicate's
// bucket_cap_mb. Prints one JSON line on stdout;
// runners/benchmarks/pytorch_baseline.py is its PyTorch twin and prints the same fields.
#include <malloc.h>
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <iostream>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "ccts/distributed/process_group.h"
#include "ccts/fixtures/fixture.h"
#include "ccts/fully_shard/fully_shard.h"
#include "ccts/nn/module.h"
#include "ccts/replicate/reducer.h"
#include "ccts/replicate/replicate.h"
#include "ccts/values/generator.h"
#include "common.h"

namespace {

using json = nlohmann::ordered_json;
using Clock = std::chrono::steady_clock;

constexpr const char* kUsage =
    "usage: ccts-bench --api replicate|fully_shard|none [--fixtures DIR] [--fixture NAME]\n"
    "                  [--warmup N] [--steps N] [--nosync-steps N] [--allreduce-probe N] [--threads N]\n"
    "                  [--lr X] [--bucket-cap-mb X] [--memory]\n";

struct Options : ccts::bench::CommonOptions {
  Options() { warmup = 3; steps = 10; }
  std::string api = "replicate";
  std::string fixture = "BenchMLP";
  int nosync_steps = 0;
  int allreduce_probe = 0;
  double lr = 0.01;
  std::optional<double> bucket_cap_mb;  // unset: replicate's default (25 MiB, first bucket 1 MiB)
  bool memory = false;
};

Options parse(int argc, char** argv) {
  auto o = ccts::bench::read_options<Options>(argc, argv, [](Options& o, const std::string& arg, auto value) {
    if (arg == "--api") {
      o.api = value();
    } else if (arg == "--fixture") {
      o.fixture = value();
    } else if (arg == "--nosync-steps") {
      o.nosync_steps = std::stoi(value());
    } else if (arg == "--allreduce-probe") {
      o.allreduce_probe = std::stoi(value());
    } else if (arg == "--lr") {
      o.lr = std::stod(value());
    } else if (arg == "--bucket-cap-mb") {
      o.bucket_cap_mb = std::stod(value());
      if (!(*o.bucket_cap_mb > 0)) throw std::invalid_argument("--bucket-cap-mb must be positive");
    } else if (arg == "--memory") {
      o.memory = true;
    } else {
      return false;
    }
    return true;
  });
  if (o.api != "replicate" && o.api != "fully_shard" && o.api != "none") {
    throw std::invalid_argument("--api must be replicate, fully_shard or none, not '" + o.api + "'");
  }
  if (o.warmup < 1 || o.steps < 1 || o.nosync_steps < 0 || o.allreduce_probe < 0 || o.threads < 1) {
    throw std::invalid_argument(
        "--warmup, --steps and --threads must be >= 1, --nosync-steps and --allreduce-probe >= 0");
  }
  return o;
}

double ms_since(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

// Bytes of the distinct storages behind `tensors` (a sharded parameter is a
// view of its padded per-rank buffer: the whole buffer counts).
std::int64_t storage_bytes(const std::vector<torch::Tensor>& tensors) {
  std::set<const void*> seen;
  std::int64_t total = 0;
  for (const auto& t : tensors) {
    const c10::StorageImpl* storage = t.storage().unsafeGetStorageImpl();
    if (seen.insert(storage).second) total += static_cast<std::int64_t>(storage->nbytes());
  }
  return total;
}

struct Phases {
  std::vector<double> step, zero_grad, forward, backward, optimizer;
  json to_json() const {
    return {{"zero_grad", zero_grad}, {"forward", forward}, {"backward", backward}, {"optimizer", optimizer}};
  }
};

class Trainer {
 public:
  Trainer(std::shared_ptr<ccts::nn::Module> model, torch::Tensor input, int rank, double lr)
      : model_(std::move(model)),
        input_(std::move(input)),
        rank_(rank),
        optimizer_(model_->parameters(), torch::optim::SGDOptions(lr)) {}

  // One training step; its phases go to `phases` when given, the peak RSS
  // after forward and after backward to `peaks` when given. Without
  // `zero_grad`, the step starts at forward (the caller cleared the grads).
  // Returns the loss.
  double step(Phases* phases, std::vector<std::int64_t>* peaks = nullptr, bool zero_grad = true) {
    const auto t0 = Clock::now();
    if (zero_grad) model_->zero_grad(true);
    const auto t1 = Clock::now();
    torch::Tensor out = (*model_)(input_).tensor();
    if (!target_.defined()) {
      // The target: the portable generator's normal values, stream "bench:target", seed = rank.
      target_ = ccts::values::normal(out.sizes(), static_cast<std::uint64_t>(rank_),
                                     ccts::values::fnv1a64("bench:target"));
    }
    torch::Tensor loss = torch::mse_loss(out, target_);
    const auto t2 = Clock::now();
    if (peaks != nullptr) peaks->push_back(ccts::bench::status_bytes("VmHWM"));
    loss.backward();
    const auto t3 = Clock::now();
    if (peaks != nullptr) peaks->push_back(ccts::bench::status_bytes("VmHWM"));
    optimizer_.step();
    const auto t4 = Clock::now();
    if (phases != nullptr) {
      using ms = std::chrono::duration<double, std::milli>;
      phases->step.push_back(ms(t4 - t0).count());
      phases->zero_grad.push_back(ms(t1 - t0).count());
      phases->forward.push_back(ms(t2 - t1).count());
      phases->backward.push_back(ms(t3 - t2).count());
      phases->optimizer.push_back(ms(t4 - t3).count());
    }
    return loss.item<double>();
  }

 private:
  std::shared_ptr<ccts::nn::Module> model_;
  torch::Tensor input_;
  torch::Tensor target_;
  int rank_;
  torch::optim::SGD optimizer_;
};

void set_gradient_sync(const std::string& api, ccts::nn::Module& model, bool sync) {
  if (api == "replicate") {
    ccts::replicate::replicate_state(model)->set_requires_gradient_sync(sync);
  } else if (api == "fully_shard") {
    ccts::fully_shard::set_requires_gradient_sync(model, sync);
  }
}

int run(const Options& o) {
  namespace dist = ccts::distributed;
  // From the start: switching later would leave blocks the heap keeps after
  // a free inside the peak.
  if (o.memory) ccts::bench::rss_follows_allocations();
  at::set_num_threads(o.threads);
  auto group = dist::ProcessGroup::from_env("gloo");
  dist::set_default_process_group(group);
  const int rank = group->rank();
  const int world = group->size();

  ccts::fixtures::FixtureLibrary library = ccts::fixtures::FixtureLibrary::from_directory(o.fixtures);
  const ccts::fixtures::Fixture& fixture = library.get(o.fixture);
  const auto build_start = Clock::now();
  ccts::fixtures::BuildOptions build;
  build.seed = 0;
  std::shared_ptr<ccts::nn::Module> model = ccts::fixtures::build_module(fixture, build);
  ccts::fixtures::Input input = ccts::fixtures::make_input(fixture, static_cast<std::uint64_t>(rank));
  const double build_ms = ms_since(build_start);
  if (input.args.size() != 1 || !input.args.front().is_tensor() || !input.kwargs.empty()) {
    throw std::invalid_argument("fixture " + o.fixture + ": the benchmark needs one tensor input");
  }

  // The full model, before any API touches it.
  std::int64_t numel = 0;
  std::int64_t full_bytes = 0;
  std::int64_t rule_bytes = 0;  // ceil(rows / world) * cols per parameter: fully_shard's padded shard
  double param_sum = 0.0;
  for (const auto& p : model->parameters()) {
    numel += p.numel();
    full_bytes += p.numel() * static_cast<std::int64_t>(p.element_size());
    const std::int64_t rows = p.dim() == 0 ? 1 : p.size(0);
    const std::int64_t cols = rows == 0 ? 0 : p.numel() / rows;
    rule_bytes += (rows + world - 1) / world * cols * static_cast<std::int64_t>(p.element_size());
    param_sum += p.detach().to(torch::kDouble).sum().item<double>();
  }

  if (o.api == "replicate") {
    ccts::replicate::ReplicateOptions options;
    options.bucket_cap_mb = o.bucket_cap_mb;
    ccts::replicate::replicate(model, options);
  } else if (o.api == "fully_shard") {
    // FSDP2's way: each Linear, then the root.
    for (const auto& [fqn, sub] : model->named_modules()) {
      if (sub.get() != model.get() && sub->type_name() == "Linear") ccts::fully_shard::fully_shard(sub);
    }
    ccts::fully_shard::fully_shard(model);
  }
  const std::int64_t param_bytes = storage_bytes(model->parameters());
  // The registered tensors alone (a shard without its padding): what
  // DTensor.to_local() holds on PyTorch's side.
  std::int64_t local_bytes = 0;
  for (const auto& p : model->parameters()) local_bytes += p.numel() * static_cast<std::int64_t>(p.element_size());

  Trainer trainer(model, input.args.front().tensor(), rank, o.lr);
  std::vector<double> losses;
  for (int i = 0; i < o.warmup; ++i) losses.push_back(trainer.step(nullptr));
  group->barrier();
  Phases timed;
  rusage usage_before{};
  getrusage(RUSAGE_SELF, &usage_before);
  for (int i = 0; i < o.steps; ++i) losses.push_back(trainer.step(&timed));
  rusage usage_after{};
  getrusage(RUSAGE_SELF, &usage_after);
  const double faults_per_step = static_cast<double>(usage_after.ru_minflt - usage_before.ru_minflt) / o.steps;
  const std::int64_t param_bytes_after = storage_bytes(model->parameters());

  json memory = nullptr;
  if (o.memory) {
    // The peak of forward + backward + SGD over the resting state (gradients
    // cleared, free heap memory given back).
    model->zero_grad(true);
    malloc_trim(0);
    group->barrier();
    const std::int64_t before = ccts::bench::status_bytes("VmRSS");
    const bool reset = ccts::bench::reset_peak_rss();
    std::vector<std::int64_t> peaks;
    losses.push_back(trainer.step(nullptr, &peaks, false));
    const std::int64_t peak = ccts::bench::status_bytes("VmHWM");
    memory = {{"rss_before_bytes", before}, {"hwm_bytes", peak}, {"peak_step_bytes", peak - before},
              {"peak_forward_bytes", peaks.at(0) - before}, {"peak_backward_bytes", peaks.at(1) - before},
              {"hwm_reset", reset}};
  }

  Phases nosync;
  if (o.nosync_steps > 0 && o.api != "none") {
    set_gradient_sync(o.api, *model, false);
    group->barrier();
    for (int i = 0; i < o.nosync_steps; ++i) trainer.step(&nosync);
    set_gradient_sync(o.api, *model, true);
  }

  // The collective alone: one all-reduce of as many floats as the model has.
  std::vector<double> allreduce_ms;
  if (o.allreduce_probe > 0) {
    torch::Tensor flat = torch::ones({numel}, torch::kFloat32);
    group->barrier();
    for (int i = 0; i < o.allreduce_probe; ++i) {
      const auto start = Clock::now();
      group->all_reduce(flat);
      allreduce_ms.push_back(ms_since(start));
    }
  }
  group->barrier();

  // The engine's buckets (parameter indices, in all-reduce order).
  json buckets = nullptr;
  if (o.api == "replicate") {
    buckets = ccts::replicate::replicate_state(*model)->reducer()->bucket_indices();
  }

  json out = {{"side", "reference"},
              {"api", o.api},
              {"torch", ccts::bench::torch_version()},
              {"fixture", o.fixture},
              {"rank", rank},
              {"world_size", world},
              {"threads", at::get_num_threads()},
              {"bucket_cap_mb", o.bucket_cap_mb ? json(*o.bucket_cap_mb) : json(nullptr)},
              {"input_shape", input.args.front().tensor().sizes().vec()},
              {"numel", numel},
              {"full_param_bytes", full_bytes},
              {"shard_rule_bytes", rule_bytes},
              {"param_bytes", param_bytes},
              {"local_shard_bytes", local_bytes},
              {"param_bytes_after_steps", param_bytes_after},
              {"param_sum", param_sum},
              {"build_ms", build_ms},
              {"step_ms", timed.step},
              {"phase_ms", timed.to_json()},
              {"minor_faults_per_step", faults_per_step},
              {"nosync_step_ms", nosync.step},
              {"nosync_phase_ms", nosync.to_json()},
              {"allreduce_ms", allreduce_ms},
              {"losses", losses},
              {"buckets", buckets},
              {"memory", memory}};
  std::cout << out.dump() << std::endl;
  // No process-group teardown: Gloo's can spin when the peers leave at
  // different moments (seen on pytorch_baseline.py's side). Every collective is done.
  std::_Exit(0);
}

}  // namespace

int main(int argc, char** argv) { return ccts::bench::bench_main("ccts-bench", kUsage, argc, argv, parse, run); }
