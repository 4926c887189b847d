#include "ccts/distributed/process_group.h"

#include <algorithm>

#include <chrono>
#include <cstdlib>
#include <stdexcept>

#include <torch/csrc/distributed/c10d/FileStore.hpp>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#ifdef USE_C10D_NCCL
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif
#include <torch/torch.h>

#include "ccts/errors.h"

namespace ccts::distributed {

namespace {

constexpr const char* kEnvHint =
    " (a rank needs torchrun's RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT)";

std::string required_env(const char* name) {
  const char* value = std::getenv(name);
  if (value == nullptr || *value == '\0') {
    throw std::invalid_argument(std::string("environment variable ") + name + " is not set" +
                                kEnvHint);
  }
  return value;
}

int env_int(const char* name) {
  const std::string text = required_env(name);
  std::size_t used = 0;
  int value = 0;
  try {
    value = std::stoi(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used == 0 || used != text.size()) {
    throw std::invalid_argument(std::string("environment variable ") + name + "='" + text +
                                "' is not an integer");
  }
  return value;
}

std::chrono::milliseconds timeout() {
  const char* value = std::getenv("CCTS_PG_TIMEOUT_S");
  double seconds = 120.0;
  if (value != nullptr && *value != '\0') {
    char* end = nullptr;
    seconds = std::strtod(value, &end);
    if (end == value || *end != '\0' || !(seconds > 0)) {
      throw std::invalid_argument(std::string("environment variable CCTS_PG_TIMEOUT_S='") + value +
                                  "' is not a positive number of seconds");
    }
  }
  return std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000));
}

void check_backend(const std::string& backend) {
  if (backend == "nccl") {
    if (!compat::kNccl) {
      throw Unsupported(
          "backend 'nccl' is not available: this build of LibTorch has no NCCL (USE_C10D_NCCL); "
          "use 'gloo'");
    }
    return;
  }
  if (backend != "gloo") {
    throw std::invalid_argument("unknown backend '" + backend + "' (known: gloo, nccl)");
  }
}

void check_rank(int rank, int size) {
  if (size < 1) throw std::invalid_argument("world size " + std::to_string(size) + " is not positive");
  if (rank < 0 || rank >= size) {
    throw std::invalid_argument("rank " + std::to_string(rank) + " is not in [0, world size " +
                                std::to_string(size) + ")");
  }
}

c10::intrusive_ptr<compat::NativeGroup> make_gloo(const c10::intrusive_ptr<c10d::Store>& store,
                                                  int rank, int size,
                                                  const std::string& master_addr) {
  auto options = c10d::ProcessGroupGloo::Options::create();
  options->timeout = timeout();
  // Loopback unless told otherwise: rank processes on one machine must not
  // depend on the host name resolving.
  if (const char* ifname = std::getenv("GLOO_SOCKET_IFNAME"); ifname != nullptr && *ifname != '\0') {
    options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(ifname));
  } else if (master_addr.empty() || master_addr == "127.0.0.1" || master_addr == "localhost") {
    options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
  } else {
    options->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
  }
  return c10::make_intrusive<c10d::ProcessGroupGloo>(store, rank, size, options);
}

c10::intrusive_ptr<compat::NativeGroup> make_nccl(const c10::intrusive_ptr<c10d::Store>& store,
                                                  int rank, int size) {
#ifdef USE_C10D_NCCL
  auto options = c10d::ProcessGroupNCCL::Options::create();
  options->timeout = timeout();
  return c10::make_intrusive<c10d::ProcessGroupNCCL>(store, rank, size, options);
#else
  (void)store;
  (void)rank;
  (void)size;
  throw Unsupported("backend 'nccl' is not available: this build of LibTorch has no NCCL");
#endif
}

c10d::ReduceOp native_op(ReduceOp op) {
  // Avg is a sum divided afterwards: Gloo has no AVG, and one rule for every
  // backend keeps the results bit-identical across them.
  (void)op;
  return c10d::ReduceOp::SUM;
}

void check_avg(const torch::Tensor& tensor, ReduceOp op, const char* collective) {
  if (op == ReduceOp::Avg && !tensor.is_floating_point()) {
    throw std::invalid_argument(std::string(collective) + ": Avg needs a floating-point tensor, got " +
                                c10::toString(tensor.scalar_type()));
  }
}

}  // namespace

Work::Work(c10::intrusive_ptr<compat::NativeWork> work, torch::Tensor result, torch::Tensor target,
           int divide_by)
    : work_(std::move(work)),
      result_(std::move(result)),
      target_(std::move(target)),
      divide_by_(divide_by) {}

Work::~Work() = default;

void Work::wait() {
  if (done_) return;
  work_->wait();
  if (divide_by_ > 1) result_.div_(divide_by_);
  if (!result_.is_same(target_)) target_.copy_(result_);
  done_ = true;
}

bool Work::is_completed() { return done_ || work_->isCompleted(); }

ProcessGroup::ProcessGroup(c10::intrusive_ptr<c10d::Store> store, int rank, int size,
                           std::string backend, const std::string& master_addr)
    : store_(store), master_addr_(master_addr), rank_(rank), size_(size), backend_(std::move(backend)) {
  try {
    native_ = backend_ == "nccl" ? make_nccl(store, rank, size) : make_gloo(store, rank, size, master_addr);
  } catch (const c10::Error& e) {
    // c10's message carries a C++ backtrace; keep the first line.
    throw std::runtime_error(backend_ + " process group: rendezvous of rank " + std::to_string(rank) +
                             " of " + std::to_string(size) + " failed: " + e.what_without_backtrace());
  }
}

ProcessGroup::~ProcessGroup() = default;

namespace {
CollectiveCounts& counts() {
  static CollectiveCounts c;
  return c;
}
}  // namespace

CollectiveCounts collective_counts() { return counts(); }

std::shared_ptr<ProcessGroup> ProcessGroup::new_group_of(const std::vector<std::vector<int>>& partition) {
  const int call = subgroups_made_++;
  for (std::size_t index = 0; index < partition.size(); ++index) {
    const auto& ranks = partition[index];
    auto at = std::find(ranks.begin(), ranks.end(), rank_);
    if (at == ranks.end()) continue;
    auto store = c10::make_intrusive<c10d::PrefixStore>(
        "ccts_subgroups_" + std::to_string(call) + "_" + std::to_string(index) + "/", store_);
    return std::shared_ptr<ProcessGroup>(new ProcessGroup(store, static_cast<int>(at - ranks.begin()),
                                                          static_cast<int>(ranks.size()), backend_, master_addr_));
  }
  throw std::invalid_argument("new_group_of: rank " + std::to_string(rank_) + " is in none of the groups");
}

std::shared_ptr<ProcessGroup> ProcessGroup::new_subgroup(int group_size) {
  if (group_size <= 0) {
    throw std::invalid_argument("The arg 'group_size' (" + std::to_string(group_size) + ") must be positive");
  }
  if (size_ < group_size) {
    throw std::invalid_argument("The arg 'group_size' (" + std::to_string(group_size) +
                                ") must not exceed the world size (" + std::to_string(size_) + ")");
  }
  if (size_ % group_size != 0) {
    throw std::invalid_argument("The world size (" + std::to_string(size_) + ") must be divisible by 'group_size=" +
                                std::to_string(group_size) + "'");
  }
  std::vector<std::vector<int>> partition(size_ / group_size);
  for (int r = 0; r < size_; ++r) partition[r / group_size].push_back(r);
  return new_group_of(partition);
}

std::vector<std::string> ProcessGroup::available_backends() {
  std::vector<std::string> out{"gloo"};
  if (compat::kNccl) out.emplace_back("nccl");
  return out;
}

std::shared_ptr<ProcessGroup> ProcessGroup::from_env(const std::string& backend) {
  check_backend(backend);
  const int rank = env_int("RANK");
  const int size = env_int("WORLD_SIZE");
  const std::string addr = required_env("MASTER_ADDR");
  const int port = env_int("MASTER_PORT");
  if (size < 1 || rank < 0 || rank >= size) {
    throw std::invalid_argument("environment variable RANK=" + std::to_string(rank) +
                                " is not in [0, WORLD_SIZE=" + std::to_string(size) + ")");
  }
  if (port < 1 || port > 65535) {
    throw std::invalid_argument("environment variable MASTER_PORT=" + std::to_string(port) +
                                " is not a TCP port (1..65535)");
  }
  c10d::TCPStoreOptions opts;
  opts.port = static_cast<std::uint16_t>(port);
  opts.isServer = rank == 0;
  opts.numWorkers = static_cast<std::size_t>(size);
  opts.waitWorkers = true;
  opts.timeout = timeout();
  c10::intrusive_ptr<c10d::Store> store = c10::make_intrusive<c10d::TCPStore>(addr, opts);
  return std::shared_ptr<ProcessGroup>(new ProcessGroup(store, rank, size, backend, addr));
}

std::shared_ptr<ProcessGroup> ProcessGroup::from_file_store(const std::string& path, int rank,
                                                            int world_size,
                                                            const std::string& backend) {
  check_backend(backend);
  check_rank(rank, world_size);
  if (path.empty()) throw std::invalid_argument("FileStore path is empty");
  c10::intrusive_ptr<c10d::Store> store = c10::make_intrusive<c10d::FileStore>(path, world_size);
  store->setTimeout(timeout());
  return std::shared_ptr<ProcessGroup>(new ProcessGroup(store, rank, world_size, backend, ""));
}

void ProcessGroup::check_tensor(const torch::Tensor& tensor, const char* collective) const {
  if (!tensor.defined()) throw std::invalid_argument(std::string(collective) + ": undefined tensor");
  if (backend_ == "nccl" && !tensor.is_cuda()) {
    throw std::invalid_argument(std::string(collective) + ": backend 'nccl' needs CUDA tensors, got " +
                                tensor.device().str());
  }
}

void ProcessGroup::broadcast(torch::Tensor& tensor, int src) {
  check_tensor(tensor, "broadcast");
  if (src < 0 || src >= size_) {
    throw std::invalid_argument("broadcast: src " + std::to_string(src) + " is not in [0, " +
                                std::to_string(size_) + ")");
  }
  torch::Tensor dense = tensor.contiguous();
  std::vector<torch::Tensor> tensors{dense};
  c10d::BroadcastOptions opts;
  opts.rootRank = src;
  native_->broadcast(tensors, opts)->wait();
  if (!dense.is_same(tensor)) tensor.copy_(dense);
}

std::shared_ptr<Work> ProcessGroup::all_reduce_async(torch::Tensor& tensor, ReduceOp op) {
  check_tensor(tensor, "all_reduce");
  check_avg(tensor, op, "all_reduce");
  torch::Tensor dense = tensor.contiguous();
  std::vector<torch::Tensor> tensors{dense};
  c10d::AllreduceOptions opts;
  opts.reduceOp = native_op(op);
  auto work = native_->allreduce(tensors, opts);
  ++counts().all_reduce;
  return std::make_shared<Work>(std::move(work), dense, tensor, op == ReduceOp::Avg ? size_ : 1);
}

void ProcessGroup::all_reduce(torch::Tensor& tensor, ReduceOp op) {
  all_reduce_async(tensor, op)->wait();
}

std::vector<torch::Tensor> ProcessGroup::all_gather(const torch::Tensor& tensor) {
  check_tensor(tensor, "all_gather");
  // A gather copies bits: bfloat16 travels as float16, which Gloo before 2.x
  // knows ("Invalid scalar type" otherwise).
  const bool as_bits = tensor.scalar_type() == torch::kBFloat16 && backend_ == "gloo";
  torch::Tensor input = as_bits ? tensor.contiguous().view(torch::kFloat16) : tensor.contiguous();
  std::vector<std::vector<torch::Tensor>> outputs(1);
  for (int r = 0; r < size_; ++r) outputs[0].push_back(torch::empty_like(input));
  std::vector<torch::Tensor> inputs{input};
  native_->allgather(outputs, inputs)->wait();
  ++counts().all_gather;
  if (as_bits) {
    for (auto& out : outputs[0]) out = out.view(torch::kBFloat16);
  }
  return outputs[0];
}

torch::Tensor ProcessGroup::all_gather_into(const torch::Tensor& shard) {
  if (shard.defined() && shard.dim() == 0) {
    throw std::invalid_argument("all_gather_into: a scalar shard has no dim 0 to concatenate on");
  }
  return torch::cat(all_gather(shard), 0);
}

torch::Tensor ProcessGroup::reduce_scatter(const torch::Tensor& input, ReduceOp op) {
  // Only Gloo's way writes its input (reduce_scatter_); an undefined input
  // gets check_tensor's message there.
  torch::Tensor scratch = backend_ == "nccl" || !input.defined() ? input : input.clone();
  return reduce_scatter_(scratch, op);
}

torch::Tensor ProcessGroup::reduce_scatter_(torch::Tensor& input, ReduceOp op) {
  check_tensor(input, "reduce_scatter");
  check_avg(input, op, "reduce_scatter");
  if (input.dim() == 0 || input.size(0) % size_ != 0) {
    throw std::invalid_argument("reduce_scatter: dim 0 of the input (shape " +
                                c10::str(input.sizes()) + ") must be a multiple of the world size " +
                                std::to_string(size_));
  }
  const int64_t chunk = input.size(0) / size_;
  torch::Tensor out;
  if (backend_ == "nccl") {
    // c10d's reduce_scatter: input chunk r goes to rank r.
    std::vector<std::vector<torch::Tensor>> inputs(1);
    for (int r = 0; r < size_; ++r) inputs[0].push_back(input.narrow(0, r * chunk, chunk).contiguous());
    std::vector<torch::Tensor> outputs{torch::empty_like(inputs[0][0])};
    c10d::ReduceScatterOptions opts;
    opts.reduceOp = native_op(op);
    native_->reduce_scatter(outputs, inputs, opts)->wait();
    out = outputs[0];
  } else {
    // Gloo: an all-reduce of the whole input, then this rank's chunk. Gloo
    // has no reduce_scatter before 2.8, and from 2.8 its own all-reduces
    // each chunk separately, cloning the others: the same bytes in one
    // collective here instead of one per rank (1.2x to 1.6x faster for 4 MB
    // at 2 and 4 ranks on 2.13, loopback).
    const bool widen = input.scalar_type() == torch::kBFloat16 && !compat::kGlooBFloat16Reduce;
    torch::Tensor full = widen ? input.to(torch::kFloat32) : input.contiguous();
    std::vector<torch::Tensor> tensors{full};
    c10d::AllreduceOptions opts;
    opts.reduceOp = native_op(op);
    native_->allreduce(tensors, opts)->wait();
    out = full.narrow(0, rank_ * chunk, chunk).to(input.scalar_type()).clone();
  }
  ++counts().reduce_scatter;
  if (op == ReduceOp::Avg) out.div_(size_);
  return out;
}

void ProcessGroup::barrier() { native_->barrier()->wait(); }

namespace {
std::shared_ptr<ProcessGroup>& default_group_slot() {
  static std::shared_ptr<ProcessGroup> group;
  return group;
}
}  // namespace

void set_default_process_group(std::shared_ptr<ProcessGroup> group) { default_group_slot() = std::move(group); }

std::shared_ptr<ProcessGroup> default_process_group() {
  if (!default_group_slot()) {
    throw std::invalid_argument(
        "Default process group has not been initialized, please make sure to call init_process_group.");
  }
  return default_group_slot();
}

}  // namespace ccts::distributed
