#pragma once
// Process groups over LibTorch's c10d: rendezvous through torchrun's
// environment (TCPStore) or a FileStore, and the collectives the composable
// APIs need, with c10d's names. Backends: "gloo" (CPU tensors) always;
// "nccl" (CUDA tensors) only in builds of LibTorch with NCCL.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <torch/csrc/distributed/c10d/Store.hpp>
#include <torch/types.h>

#include "ccts/compat.h"

namespace ccts::distributed {

enum class ReduceOp { Sum, Avg };

// An in-flight collective (c10d's Work). The result is final once wait()
// returns: wait() also divides an Avg reduction and writes a result computed
// in a contiguous copy back into the caller's tensor.
class Work {
 public:
  Work(c10::intrusive_ptr<compat::NativeWork> work, torch::Tensor result, torch::Tensor target,
       int divide_by);
  virtual ~Work();
  Work(const Work&) = delete;
  Work& operator=(const Work&) = delete;

  void wait();
  // True once wait() returned, or once c10d reports the collective finished
  // (wait() must still be called to finish an Avg or a non-contiguous tensor).
  bool is_completed();

 private:
  c10::intrusive_ptr<compat::NativeWork> work_;
  torch::Tensor result_;  // the tensor c10d reduces into
  torch::Tensor target_;  // the caller's tensor (same as result_ when contiguous)
  int divide_by_;
  bool done_ = false;
};

class ProcessGroup {
 public:
  // torchrun's environment: RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT (rank
  // 0 hosts the TCPStore). Optional: CCTS_PG_TIMEOUT_S (seconds, default 120)
  // bounds the rendezvous and every collective; GLOO_SOCKET_IFNAME picks the
  // network interface. Throws std::invalid_argument naming a missing or
  // malformed variable, ccts::Unsupported for a backend this build lacks.
  static std::shared_ptr<ProcessGroup> from_env(const std::string& backend = "gloo");
  // Rendezvous through a file every rank can reach (world_size ranks, each
  // calling with its rank); the file should not exist before the first call.
  static std::shared_ptr<ProcessGroup> from_file_store(const std::string& path, int rank,
                                                       int world_size,
                                                       const std::string& backend = "gloo");
  // The backends this build can create ("gloo", and "nccl" where compiled in).
  static std::vector<std::string> available_backends();

  ~ProcessGroup();
  ProcessGroup(const ProcessGroup&) = delete;
  ProcessGroup& operator=(const ProcessGroup&) = delete;

  // torch.distributed.new_subgroups(group_size): the ranks in consecutive
  // groups of group_size; returns the group this rank is in (ranks numbered
  // within it). Every rank calls it, in the same order, as with PyTorch; the
  // groups rendezvous through this group's store under their own prefix.
  // std::invalid_argument with PyTorch's ValueError text for a bad size.
  std::shared_ptr<ProcessGroup> new_subgroup(int group_size);
  // One group per list of ranks (a partition of this group's ranks, each list
  // in rank order): returns the group this rank is in. Every rank calls it
  // with the same partition, as with DeviceMesh's per-dimension groups.
  std::shared_ptr<ProcessGroup> new_group_of(const std::vector<std::vector<int>>& partition);

  int rank() const { return rank_; }
  int size() const { return size_; }
  const std::string& backend() const { return backend_; }

  // Every rank gets src's values, in place.
  void broadcast(torch::Tensor& tensor, int src = 0);
  // In place; Avg is the sum divided by size() (floating-point tensors only).
  void all_reduce(torch::Tensor& tensor, ReduceOp op = ReduceOp::Sum);
  std::shared_ptr<Work> all_reduce_async(torch::Tensor& tensor, ReduceOp op = ReduceOp::Sum);
  // One tensor per rank, in rank order; every rank passes the same shape.
  std::vector<torch::Tensor> all_gather(const torch::Tensor& tensor);
  // The ranks' shards concatenated on dim 0.
  torch::Tensor all_gather_into(const torch::Tensor& shard);
  // input's dim 0 is size() * k; returns this rank's [k, ...] chunk (rows
  // rank*k .. rank*k+k-1) of the element-wise reduction over ranks.
  torch::Tensor reduce_scatter(const torch::Tensor& input, ReduceOp op = ReduceOp::Sum);
  // The same, on a scratch input whose values are lost: on Gloo it is the
  // all-reduce's buffer itself, so no copy of it is made.
  torch::Tensor reduce_scatter_(torch::Tensor& scratch, ReduceOp op = ReduceOp::Sum);
  void barrier();

  // The c10d object doing the work: a c10d::ProcessGroup on LibTorch 1.13, a
  // c10d::Backend on 2.x (see ccts/compat.h).
  c10::intrusive_ptr<compat::NativeGroup> native() const { return native_; }

 private:
  ProcessGroup(c10::intrusive_ptr<c10d::Store> store, int rank, int size, std::string backend,
               const std::string& master_addr);
  void check_tensor(const torch::Tensor& tensor, const char* collective) const;

  c10::intrusive_ptr<c10d::Store> store_;
  std::string master_addr_;
  int subgroups_made_ = 0;  // prefixes of new_subgroup's rendezvous
  int rank_;
  int size_;
  std::string backend_;
  c10::intrusive_ptr<compat::NativeGroup> native_;
};

// The collectives this process issued on any group since it started, by kind:
// what a count_collectives step reports (spec/fully_shard.md). The Gloo
// all-reduce that stands in for reduce-scatter (process_group.cpp) counts as
// a reduce-scatter.
struct CollectiveCounts {
  std::int64_t all_gather = 0;
  std::int64_t reduce_scatter = 0;
  std::int64_t all_reduce = 0;
};
CollectiveCounts collective_counts();

// torch.distributed's default group (what init_process_group creates): the
// group replicate and fully_shard use. The adapter sets it once per session.
void set_default_process_group(std::shared_ptr<ProcessGroup> group);
// Throws std::invalid_argument with PyTorch's message when none is set.
std::shared_ptr<ProcessGroup> default_process_group();

}  // namespace ccts::distributed
