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

// torch.chunk on the shard dim: `chunk` rows per rank until they run out,
// then empty shards ("rows" are slices along that dim).
struct ShardRule {
  int64_t dim = 0;
  int64_t rows = 0;   // the global size of dim
  int64_t chunk = 0;  // ceil(rows / world)
  int64_t rows_of(int rank) const;
  int64_t start_of(int rank) const { return static_cast<int64_t>(rank) * chunk; }
};

class FSDPParam {
 public:
  // `shard_dim` is non-negative; `replicated` adds a leading Replicate()
  // placement (HSDP: the shard group is one replica of several).
  // The unsharded parameter is of `param_dtype` when set (mixed precision).
  FSDPParam(nn::Module* module, std::string name, const torch::Tensor& original,
            std::shared_ptr<distributed::ProcessGroup> group, int64_t shard_dim, bool replicated,
            std::optional<torch::ScalarType> param_dtype = std::nullopt);

  // A tied parameter: the same Parameter also registered as `name` on `module`.
  void add_alias(nn::Module* module, std::string name);
  // The Parameter fully_shard found (for FSDP2's check that no two groups manage it).
  const c10::TensorImpl* original() const { return original_._unsafe_get_target(); }

  void to_sharded();
  void to_unsharded();
  // module.to(device / dtype) and to_empty (empty: zeros, the old values are
  // not read): new storage for the shard, still sharded. The group must
  // install its gradient hooks again (the unsharded parameter is new).
  // A conversion to the device and dtype the shard has changes nothing (a
  // gradient pending in the unsharded parameter stays): false then.
  bool convert(std::optional<torch::Device> device, std::optional<torch::ScalarType> dtype, bool empty);
  // Lazy init: the module's parameter replaced since fully_shard
  // (`model.w = nn.Parameter(full)`) is sharded again from its value
  // (FSDP-INIT-005); false when it is still ours.
  bool reshard_if_replaced();
  // An integer reshard_after_forward: keep this rank's chunk of `group_size`
  // chunks, placed (Replicate(), Shard(0)) on the (world / k, k) mesh.
  void to_sharded_post_forward(int group_size);

  // Copies the ranks' padded shards (gathered[r], flat, from `offset`) into
  // the unsharded parameter, allocating its storage first.
  void copy_out(const std::vector<torch::Tensor>& gathered, int64_t offset);
  // Rank r's rows of a full-size tensor (a gradient) into `block`, flat.
  void copy_in_rows(const torch::Tensor& full, int rank, torch::Tensor block) const;
  void free_unsharded();
  // Registers a sharded gradient with the parameter's layout.
  void mark_sharded_grad(const torch::Tensor& grad) const;
  // Whether `t` is one of the tensors this parameter registers on its module.
  bool owns(const torch::Tensor& t) const;

  const torch::Tensor& padded() const { return padded_; }
  const torch::Tensor& sharded() const { return sharded_; }
  const torch::Tensor& unsharded() const { return unsharded_; }
  const ShardRule& rule() const { return rule_; }
  // The shape of rank r's shard.
  std::vector<int64_t> shard_shape(int rank) const;
  // The registered shard's flag: freezing it after fully_shard counts from the next gather.
  bool requires_grad() const { return sharded_.requires_grad(); }
  // Runs on_accumulated after each backward accumulates into the unsharded gradient.
  void hook_unsharded_grad(std::function<void()> on_accumulated);

 private:
  void adopt(const torch::Tensor& padded);
  torch::Tensor padded_shard_of(const torch::Tensor& full) const;
  void register_on_module(const torch::Tensor& tensor);
  detail::FullTensorFn gatherer() const;
  void allocate_unsharded();
  ShardedLayout layout() const;

  nn::Module* module_;
  std::string name_;
  std::vector<std::pair<nn::Module*, std::string>> aliases_;
  // Held weakly: its address stays unique while this lives, its storage goes.
  c10::weak_intrusive_ptr<c10::TensorImpl> original_;
  std::shared_ptr<distributed::ProcessGroup> group_;
  int rank_;
  bool requires_grad_;  // at construction (and after convert): whether the gradient hook exists
  bool replicated_;
  std::optional<torch::ScalarType> param_dtype_;
  ShardRule rule_;
  std::vector<int64_t> global_shape_;
  torch::Tensor padded_;     // this rank's storage: rank 0's chunk on the shard dim
  torch::Tensor sharded_;    // the registered parameter: padded_'s first rows_of(rank) rows
  torch::Tensor unsharded_;  // the global parameter; storage only while gathered
  torch::Tensor post_forward_;
  std::shared_ptr<void> grad_hook_;
};

class FSDPParamGroup : public std::enable_shared_from_this<FSDPParamGroup> {
 public:
  enum class PostForward { Reshard, Keep, ReshardToGroup };

  // `replicate_group`: HSDP's other mesh dim, over which reduced gradients
  // are all-reduced (mean); null for a 1-D mesh.
  FSDPParamGroup(std::vector<std::unique_ptr<FSDPParam>> params, std::shared_ptr<distributed::ProcessGroup> group,
                 std::shared_ptr<distributed::ProcessGroup> replicate_group);
  void install_grad_hooks();

  void unshard();   // one all-gather for the whole group
  void reshard();   // register shards, free the unsharded storage
  void post_forward();
  void pre_backward();  // gathers, and marks the group as owing a post-backward
  // Reduce-scatters (averaged) the unsharded gradients into the sharded
  // ones, or keeps them when gradient sync is off; then reshards (unless
  // reshard_after_backward is off).
  void post_backward();

  bool is_unsharded() const { return unsharded_; }
  // Whether this backward still owes the group its post-backward.
  bool owes_post_backward() const { return owes_post_backward_ || (unsharded_ && reshard_after_backward); }
  bool owns(const torch::Tensor& t) const;
  // Every parameter's reshard_if_replaced(), then the gradient hooks again.
  void reshard_replaced_params();
  // reset_iter_state: resharded, no post-backward owed, no backward counted.
  void reset_iter_state();
  // Every parameter's convert(), then the gradient hooks again.
  void convert(std::optional<torch::Device> device, std::optional<torch::ScalarType> dtype, bool empty);
  PostForward post_forward_mode = PostForward::Reshard;
  int post_forward_group_size = 0;
  bool reduce_grads = true;
  bool reshard_after_backward = true;
  std::optional<double> gradient_divide_factor;
  std::optional<torch::ScalarType> reduce_dtype;  // unset: the gradients' own dtype
  bool force_sum_reduction = false;
  std::function<void(torch::Tensor&)> all_reduce_hook;  // set_all_reduce_hook
  const std::vector<std::unique_ptr<FSDPParam>>& params() const { return params_; }

 private:
  void on_grad_accumulated();
  // Some parameters have new storage (converted, replaced): none is gathered,
  // and the new unsharded parameters need the gradient hooks.
  void adopt_new_storage();

  std::vector<std::unique_ptr<FSDPParam>> params_;
  torch::Tensor reduce(torch::Tensor input);

  std::shared_ptr<distributed::ProcessGroup> group_;
  std::shared_ptr<distributed::ProcessGroup> replicate_group_;
  bool unsharded_ = false;
  bool owes_post_backward_ = false;
  std::mutex lock_;
  std::map<const void*, std::pair<int, int>> backward_counts_;  // backward -> (seen, expected)
};

}  // namespace ccts::fully_shard
