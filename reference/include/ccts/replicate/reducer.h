#pragma once
// The data-parallel engine under replicate: c10d's Reducer design
// (torch/csrc/distributed/c10d/reducer.cpp) on the reference's process
// group. Gradients are copied into flat buckets as autograd accumulates
// them, scaled by 1/world size, and each bucket's all-reduce starts as soon
// as its last gradient is ready, while backward still runs; the end of
// backward waits for the buckets and writes the averages back
// (spec/replicate.md, REPLICATE-GRAD-*, REPLICATE-BUCKET-*).
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include <torch/types.h>

namespace ccts::distributed {
class ProcessGroup;
class Work;
}  // namespace ccts::distributed

namespace ccts::replicate {

// kDefaultFirstBucketBytes: DDP's first bucket when bucket_cap_mb is not given.
inline constexpr std::int64_t kDefaultFirstBucketBytes = 1024 * 1024;

// compute_bucket_assignment_by_size: walks `order` (indices into `tensors`),
// one accumulator per (dtype, device); a bucket closes once its size reaches
// the current limit, and the limits advance, the last one repeating. Without
// an explicit order the buckets are sorted by their smallest index.
std::vector<std::vector<std::size_t>> compute_bucket_assignment_by_size(
    const std::vector<torch::Tensor>& tensors, const std::vector<std::int64_t>& size_limits,
    const std::vector<std::size_t>& order = {});

enum class CommHook { Mean, Sum };

class Reducer : public std::enable_shared_from_this<Reducer> {
 public:
  struct Options {
    std::int64_t bucket_bytes_cap = 25 * 1024 * 1024;
    std::int64_t first_bucket_bytes = kDefaultFirstBucketBytes;
    bool gradient_as_bucket_view = false;
    // The bucket's communication (DDP's comm hook): the mean (default, and
    // PyTorch's allreduce_hook, which divides then all-reduces) or the sum
    // (a hook that all-reduces without dividing).
    CommHook comm_hook = CommHook::Mean;
    // DDP's find_unused_parameters: a parameter no backward reached is
    // reduced as zeros and keeps no gradient where no rank used it. Without
    // it, such a parameter leaves the iteration unfinished and the next
    // forward raises DDP's error (REPLICATE-UNUSED-001).
    bool find_unused_parameters = false;
  };

  // `params` are the synchronised parameters (leaves that require grad).
  static std::shared_ptr<Reducer> create(std::vector<torch::Tensor> params,
                                         std::shared_ptr<distributed::ProcessGroup> group, Options options);
  ~Reducer();

  // DDP's _pre_forward: raises when the last backward left parameters without
  // a gradient (and find_unused_parameters is off); rebuilds the buckets in
  // gradient-ready order once, after the first synchronised backward.
  void prepare_for_forward();
  // require_backward_grad_sync: false lets gradients accumulate locally.
  void set_require_grad_sync(bool sync) { require_grad_sync_ = sync; }

  // Parameter indices per bucket, in all-reduce order.
  std::vector<std::vector<std::size_t>> bucket_indices() const;

 private:
  struct Bucket {
    std::vector<std::size_t> params;    // indices into params_
    std::vector<torch::Tensor> views;   // one per param, into `flat`
    torch::Tensor flat;
    std::size_t pending = 0;
    std::shared_ptr<distributed::Work> work;
  };

  Reducer(std::vector<torch::Tensor> params, std::shared_ptr<distributed::ProcessGroup> group, Options options);
  void install_hooks();
  void initialize_buckets(const std::vector<std::vector<std::size_t>>& assignment);
  void on_grad_accumulated(std::size_t index);
  void start_backward();
  void launch_ready_buckets();
  void finalize_backward();

  std::vector<torch::Tensor> params_;
  std::shared_ptr<distributed::ProcessGroup> group_;
  Options options_;
  std::vector<std::shared_ptr<void>> grad_accumulators_;  // keep the hooks alive
  std::vector<Bucket> buckets_;
  std::vector<std::pair<std::size_t, std::size_t>> locator_;  // param -> (bucket, slot)
  std::vector<bool> ready_;
  std::size_t next_bucket_ = 0;
  bool require_grad_sync_ = true;
  bool in_backward_ = false;
  bool has_rebuilt_buckets_ = false;
  std::vector<std::size_t> rebuilt_order_;  // gradient-ready order of the first synced backward
  std::vector<std::size_t> unfinished_;     // parameters the last backward did not reach
  std::mutex lock_;
};

}  // namespace ccts::replicate
