#pragma once
// Process groups over LibTorch's c10d (Gloo on CPU): rendezvous through
// torchrun's environment (TCPStore) or a FileStore, and the collectives the
// composable APIs need, with c10d's names.
#include <memory>
#include <string>
#include <vector>

#include <torch/types.h>

#include "ccts/compat.h"

namespace ccts::distributed {

enum class ReduceOp { Sum, Avg };

// An in-flight collective (c10d's Work); wait() finishes it, including the
// division of an Avg reduction.
class Work {
 public:
  Work(c10::intrusive_ptr<compat::NativeWork> work, torch::Tensor tensor, int divide_by);
  void wait();
  bool is_completed();

 private:
  c10::intrusive_ptr<compat::NativeWork> work_;
  torch::Tensor tensor_;
  int divide_by_;
  bool done_ = false;
};

class ProcessGroup {
 public:
  // torchrun's environment: RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT
  // (rank 0 hosts the TCPStore). Optional: CCTS_PG_TIMEOUT_S (default 120).
  static std::shared_ptr<ProcessGroup> from_env(const std::string& backend = "gloo");
  static std::shared_ptr<ProcessGroup> from_file_store(const std::string& path, int rank,
                                                       int world_size,
                                                       const std::string& backend = "gloo");

  int rank() const { return rank_; }
  int size() const { return size_; }
  const std::string& backend() const { return backend_; }

  void broadcast(torch::Tensor& tensor, int src = 0);
  void all_reduce(torch::Tensor& tensor, ReduceOp op = ReduceOp::Sum);
  std::shared_ptr<Work> all_reduce_async(torch::Tensor& tensor, ReduceOp op = ReduceOp::Sum);
  // One tensor per rank, in rank order.
  std::vector<torch::Tensor> all_gather(const torch::Tensor& tensor);
  // The ranks' shards concatenated on dim 0.
  torch::Tensor all_gather_into(const torch::Tensor& shard);
  // input's dim 0 is size() * k; returns this rank's [k, ...] chunk of the reduction.
  torch::Tensor reduce_scatter(const torch::Tensor& input, ReduceOp op = ReduceOp::Sum);
  void barrier();

  c10::intrusive_ptr<c10d::ProcessGroupGloo> native() const { return gloo_; }

 private:
  ProcessGroup(c10::intrusive_ptr<c10d::Store> store, int rank, int size, std::string backend,
               const std::string& master_addr);

  int rank_;
  int size_;
  std::string backend_;
  c10::intrusive_ptr<c10d::ProcessGroupGloo> gloo_;
};

}  // namespace ccts::distributed
