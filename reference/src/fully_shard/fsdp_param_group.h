#pragma once
// The parameters of one fully_shard call (FSDP2's FSDPParam and
// FSDPParamGroup): sharded storage, the unsharded parameter whose storage is
// allocated only while gathered, and the group's collectives.
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <torch/types.h>

#include "ccts/fully_shard/fully_shard.h"
#include "sharded_registry.h"

namespace ccts::fully_shard {

// torch.chunk on dim 0: `chunk` rows per rank until they run out, then empty shards.
struct ShardRule {
  int64_t rows = 0;   // global dim 0
  int64_t chunk = 0;  // ceil(rows / world)
  int64_t rows_of(int rank) const;
  int64_t start_of(int rank) const { return static_cast<int64_t>(rank) * chunk; }
};

class FSDPParam {
 public:
  FSDPParam(nn::Module* module, std::string name, const torch::Tensor& original,
            std::shared_ptr<distributed::ProcessGroup> group);

  void to_sharded();
  void to_unsharded();
  // An integer reshard_after_forward: keep this rank's chunk of `group_size`
  // chunks, placed (Replicate(), Shard(0)) on the (world / k, k) mesh.
  void to_sharded_post_forward(int group_size);

  // Copies the ranks' padded shards (gathered[r]) into the unsharded
  // parameter, allocating its storage first.
  void copy_out(const std::vector<torch::Tensor>& gathered, int64_t offset);
  void free_unsharded();

  const torch::Tensor& padded() const { return padded_; }
  const torch::Tensor& sharded() const { return sharded_; }
  const torch::Tensor& unsharded() const { return unsharded_; }
  int64_t inner() const { return inner_; }
  const ShardRule& rule() const { return rule_; }
  bool requires_grad() const { return requires_grad_; }
  // Runs on_accumulated after each backward accumulates into the unsharded gradient.
  void hook_unsharded_grad(std::function<void()> on_accumulated);

 private:
  void register_on_module(const torch::Tensor& tensor);
  detail::FullTensorFn gatherer() const;
  void allocate_unsharded();

  nn::Module* module_;
  std::string name_;
  std::shared_ptr<distributed::ProcessGroup> group_;
  int rank_;
  bool requires_grad_;
  ShardRule rule_;
  int64_t inner_ = 1;  // elements per row
  std::vector<int64_t> global_shape_;
  torch::Tensor padded_;     // [chunk, ...]: this rank's storage
  torch::Tensor sharded_;    // the registered parameter: padded_'s first rows_of(rank) rows
  torch::Tensor unsharded_;  // the global parameter; storage only while gathered
  torch::Tensor post_forward_;
  std::shared_ptr<void> grad_hook_;
};

class FSDPParamGroup : public std::enable_shared_from_this<FSDPParamGroup> {
 public:
  enum class PostForward { Reshard, Keep, ReshardToGroup };

  FSDPParamGroup(std::vector<std::unique_ptr<FSDPParam>> params, std::shared_ptr<distributed::ProcessGroup> group);
  void install_grad_hooks();

  void unshard();   // one all-gather for the whole group
  void reshard();   // register shards, free the unsharded storage
  void post_forward();
  // Reduce-scatters (averaged) the unsharded gradients into the sharded
  // ones, or keeps them when gradient sync is off; then reshards.
  void post_backward();

  bool is_unsharded() const { return unsharded_; }
  PostForward post_forward_mode = PostForward::Reshard;
  int post_forward_group_size = 0;
  bool reduce_grads = true;
  const std::vector<std::unique_ptr<FSDPParam>>& params() const { return params_; }

 private:
  void on_grad_accumulated();

  std::vector<std::unique_ptr<FSDPParam>> params_;
  std::shared_ptr<distributed::ProcessGroup> group_;
  bool unsharded_ = false;
  std::mutex lock_;
  std::map<const void*, std::pair<int, int>> backward_counts_;  // backward -> (seen, expected)
};

}  // namespace ccts::fully_shard
