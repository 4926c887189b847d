#include "ccts/distributed/process_group.h"

#include <chrono>
#include <cstdlib>
#include <stdexcept>

#include <torch/csrc/distributed/c10d/FileStore.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <torch/torch.h>

#include "ccts/errors.h"

namespace ccts::distributed {

namespace {

std::string required_env(const char* name) {
  const char* value = std::getenv(name);
  if (value == nullptr || *value == '\0') {
    throw std::invalid_argument(std::string("environment variable ") + name +
                                " is not set (torchrun's RANK, WORLD_SIZE, MASTER_ADDR and "
                                "MASTER_PORT are needed)");
  }
  return value;
}

int env_int(const char* name) {
  const std::string text = required_env(name);
  try {
    return std::stoi(text);
  } catch (const std::exception&) {
    throw std::invalid_argument(std::string("environment variable ") + name + "='" + text +
                                "' is not an integer");
  }
}

std::chrono::milliseconds timeout() {
  const char* value = std::getenv("CCTS_PG_TIMEOUT_S");
  return std::chrono::milliseconds(static_cast<int64_t>((value ? std::atof(value) : 120.0) * 1000));
}

void check_backend(const std::string& backend) {
  if (backend == "nccl") {
    throw Unsupported("backend 'nccl' is not supported by this build of the reference (Gloo on CPU)");
  }
  if (backend != "gloo") throw std::invalid_argument("unknown backend '" + backend + "'");
}

}  // namespace

Work::Work(c10::intrusive_ptr<compat::NativeWork> work, torch::Tensor tensor, int divide_by)
    : work_(std::move(work)), tensor_(std::move(tensor)), divide_by_(divide_by) {}

void Work::wait() {
  if (done_) return;
  work_->wait();
  if (divide_by_ > 1) tensor_.div_(divide_by_);
  done_ = true;
}

bool Work::is_completed() { return done_ || work_->isCompleted(); }

ProcessGroup::ProcessGroup(c10::intrusive_ptr<c10d::Store> store, int rank, int size,
                           std::string backend, const std::string& master_addr)
    : rank_(rank), size_(size), backend_(std::move(backend)) {
  auto options = c10d::ProcessGroupGloo::Options::create();
  options->timeout = timeout();
  // Loopback unless told otherwise: rank processes on one machine must not
  // depend on the host name resolving.
  if (const char* ifname = std::getenv("GLOO_SOCKET_IFNAME")) {
    options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(ifname));
  } else if (master_addr.empty() || master_addr == "127.0.0.1" || master_addr == "localhost") {
    options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
  } else {
    options->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
  }
  gloo_ = c10::make_intrusive<c10d::ProcessGroupGloo>(store, rank, size, options);
}

std::shared_ptr<ProcessGroup> ProcessGroup::from_env(const std::string& backend) {
  check_backend(backend);
  const int rank = env_int("RANK");
  const int size = env_int("WORLD_SIZE");
  const std::string addr = required_env("MASTER_ADDR");
  const int port = env_int("MASTER_PORT");
  if (size < 1 || rank < 0 || rank >= size) {
    throw std::invalid_argument("RANK=" + std::to_string(rank) + " is not in [0, WORLD_SIZE=" +
                                std::to_string(size) + ")");
  }
  c10d::TCPStoreOptions opts;
  opts.port = static_cast<std::uint16_t>(port);
  opts.isServer = rank == 0;
  opts.numWorkers = static_cast<std::size_t>(size);
  opts.waitWorkers = true;
  opts.timeout = timeout();
  auto store = c10::make_intrusive<c10d::TCPStore>(addr, opts);
  return std::shared_ptr<ProcessGroup>(new ProcessGroup(store, rank, size, backend, addr));
}

std::shared_ptr<ProcessGroup> ProcessGroup::from_file_store(const std::string& path, int rank,
                                                            int world_size,
                                                            const std::string& backend) {
  check_backend(backend);
  auto store = c10::make_intrusive<c10d::FileStore>(path, world_size);
  return std::shared_ptr<ProcessGroup>(new ProcessGroup(store, rank, world_size, backend, ""));
}

void ProcessGroup::broadcast(torch::Tensor& tensor, int src) {
  std::vector<torch::Tensor> tensors{tensor};
  c10d::BroadcastOptions opts;
  opts.rootRank = src;
  gloo_->broadcast(tensors, opts)->wait();
}

std::shared_ptr<Work> ProcessGroup::all_reduce_async(torch::Tensor& tensor, ReduceOp op) {
  std::vector<torch::Tensor> tensors{tensor};
  c10d::AllreduceOptions opts;
  opts.reduceOp = c10d::ReduceOp::SUM;  // Gloo has no AVG: sum, then divide in wait()
  return std::make_shared<Work>(gloo_->allreduce(tensors, opts), tensor,
                                op == ReduceOp::Avg ? size_ : 1);
}

void ProcessGroup::all_reduce(torch::Tensor& tensor, ReduceOp op) {
  all_reduce_async(tensor, op)->wait();
}

std::vector<torch::Tensor> ProcessGroup::all_gather(const torch::Tensor& tensor) {
  torch::Tensor input = tensor.contiguous();
  std::vector<std::vector<torch::Tensor>> outputs(1);
  for (int r = 0; r < size_; ++r) outputs[0].push_back(torch::empty_like(input));
  std::vector<torch::Tensor> inputs{input};
  gloo_->allgather(outputs, inputs)->wait();
  return outputs[0];
}

torch::Tensor ProcessGroup::all_gather_into(const torch::Tensor& shard) {
  return torch::cat(all_gather(shard), 0);
}

torch::Tensor ProcessGroup::reduce_scatter(const torch::Tensor& input, ReduceOp op) {
  if (input.dim() == 0 || input.size(0) % size_ != 0) {
    throw std::invalid_argument("reduce_scatter: dim 0 of the input must be a multiple of the "
                                "world size " + std::to_string(size_));
  }
  // Gloo (1.13) has no reduce_scatter: an all-reduce of the whole input, then
  // this rank's chunk. Same result, more traffic.
  torch::Tensor full = input.clone();
  all_reduce(full, op);
  const int64_t chunk = input.size(0) / size_;
  return full.narrow(0, rank_ * chunk, chunk).clone();
}

void ProcessGroup::barrier() { gloo_->barrier()->wait(); }

}  // namespace ccts::distributed
