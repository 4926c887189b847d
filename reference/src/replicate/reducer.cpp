#include "ccts/replicate/reducer.h"

#include <algorithm>
#include <limits>
#include <map>
#include <string>
#include <utility>

#include <torch/torch.h>

#include "ccts/distributed/process_group.h"
#include "ccts/mutants.h"
#include "ccts/nn/grad_hooks.h"

namespace ccts::replicate {

std::vector<std::vector<std::size_t>> compute_bucket_assignment_by_size(
    const std::vector<torch::Tensor>& tensors, const std::vector<std::int64_t>& size_limits,
    const std::vector<std::size_t>& order) {
  if (size_limits.empty()) throw std::invalid_argument("compute_bucket_assignment_by_size: no size limit");
  struct Accumulator {
    std::vector<std::size_t> indices;
    std::int64_t size = 0;
    std::size_t limit = 0;  // index into size_limits; the last one repeats
  };
  std::map<std::string, Accumulator> open;  // per (dtype, device)
  std::vector<std::vector<std::size_t>> result;
  std::vector<std::size_t> walk = order;
  if (walk.empty()) {
    for (std::size_t i = 0; i < tensors.size(); ++i) walk.push_back(i);
  }
  for (std::size_t i : walk) {
    const torch::Tensor& t = tensors.at(i);
    Accumulator& acc = open[std::string(c10::toString(t.scalar_type())) + "@" + t.device().str()];
    acc.indices.push_back(i);
    acc.size += t.numel() * static_cast<std::int64_t>(t.element_size());
    if (acc.size >= size_limits[acc.limit]) {
      result.push_back(std::move(acc.indices));
      acc.indices.clear();
      acc.size = 0;
      if (acc.limit + 1 < size_limits.size()) ++acc.limit;
    }
  }
  for (auto& [key, acc] : open) {
    if (!acc.indices.empty()) result.push_back(std::move(acc.indices));
  }
  if (order.empty()) {
    std::sort(result.begin(), result.end(), [](const auto& a, const auto& b) {
      return *std::min_element(a.begin(), a.end()) < *std::min_element(b.begin(), b.end());
    });
  }
  return result;
}

std::shared_ptr<Reducer> Reducer::create(std::vector<torch::Tensor> params,
                                         std::shared_ptr<distributed::ProcessGroup> group, Options options) {
  std::shared_ptr<Reducer> reducer(new Reducer(std::move(params), std::move(group), options));
  reducer->install_hooks();
  return reducer;
}

Reducer::Reducer(std::vector<torch::Tensor> params, std::shared_ptr<distributed::ProcessGroup> group,
                 Options options)
    : params_(std::move(params)), group_(std::move(group)), options_(options) {
  // DDP's first iteration (find_unused_parameters=False): one bucket per
  // dtype and device, buckets in reverse order of their parameters.
  auto assignment = compute_bucket_assignment_by_size(params_, {std::numeric_limits<std::int64_t>::max()});
  std::reverse(assignment.begin(), assignment.end());
  initialize_buckets(assignment);
}

Reducer::~Reducer() = default;

void Reducer::install_hooks() {
  std::weak_ptr<Reducer> weak = weak_from_this();
  for (std::size_t i = 0; i < params_.size(); ++i) {
    grad_accumulators_.push_back(nn::register_post_accumulate_grad_hook(params_[i], [weak, i] {
      if (auto self = weak.lock()) self->on_grad_accumulated(i);
    }));
  }
}

void Reducer::initialize_buckets(const std::vector<std::vector<std::size_t>>& assignment) {
  torch::NoGradGuard no_grad;
  buckets_.clear();
  locator_.assign(params_.size(), {0, 0});
  for (const auto& indices : assignment) {
    Bucket bucket;
    bucket.params = indices;
    int64_t total = 0;
    for (std::size_t i : indices) total += params_[i].numel();
    const torch::Tensor& first = params_[indices.front()];
    bucket.flat = torch::zeros({total}, first.options().requires_grad(false));
    int64_t offset = 0;
    for (std::size_t slot = 0; slot < indices.size(); ++slot) {
      const torch::Tensor& p = params_[indices[slot]];
      bucket.views.push_back(bucket.flat.narrow(0, offset, p.numel()).view(p.sizes()));
      offset += p.numel();
      locator_[indices[slot]] = {buckets_.size(), slot};
    }
    buckets_.push_back(std::move(bucket));
  }
  // initialize_bucket_views: gradients that exist move into their new views.
  if (options_.gradient_as_bucket_view) {
    for (std::size_t i = 0; i < params_.size(); ++i) {
      torch::Tensor& grad = params_[i].mutable_grad();
      const torch::Tensor& view = buckets_[locator_[i].first].views[locator_[i].second];
      if (grad.defined() && !grad.is_alias_of(view)) {
        view.copy_(grad);
        grad = view;
      }
    }
  }
}

std::vector<std::vector<std::size_t>> Reducer::bucket_indices() const {
  std::vector<std::vector<std::size_t>> out;
  for (const auto& bucket : buckets_) out.push_back(bucket.params);
  return out;
}

void Reducer::prepare_for_forward() {
  if (!unfinished_.empty()) {
    std::string indices;
    for (std::size_t index : unfinished_) indices += " " + std::to_string(index);
    throw std::runtime_error(
        "Expected to have finished reduction in the prior iteration before starting a new one. This error "
        "indicates that your module has parameters that were not used in producing loss. You can enable unused "
        "parameter detection by passing the keyword argument `find_unused_parameters=True` to "
        "`torch.nn.parallel.DistributedDataParallel`, and by \nmaking sure all `forward` function outputs "
        "participate in calculating loss. \nIf you already have done the above, then the distributed data "
        "parallel module wasn't able to locate the output tensors in the return value of your module's "
        "`forward` function. Please include the loss function and the structure of the return value of "
        "`forward` of your module when reporting this issue (e.g. list, dict, iterable).\nParameter indices "
        "which did not receive grad for rank " + std::to_string(group_->rank()) + ":" + indices +
        "\n In addition, you can set the environment variable TORCH_DISTRIBUTED_DEBUG to either INFO or DETAIL "
        "to print out information about which particular parameters did not receive gradient on this rank as "
        "part of this error");
  }
  if (has_rebuilt_buckets_ || rebuilt_order_.empty() || !torch::GradMode::is_enabled()) return;
  if (mutant("replicate_no_rebuild")) return;
  std::vector<std::size_t> order = rebuilt_order_;
  for (std::size_t i = params_.size(); i-- > 0;) {
    if (std::find(order.begin(), order.end(), i) == order.end()) order.push_back(i);
  }
  auto assignment = compute_bucket_assignment_by_size(
      params_, {options_.first_bucket_bytes, options_.bucket_bytes_cap}, order);
  // sync_bucket_indices: every rank takes rank 0's layout.
  std::vector<int64_t> encoded{static_cast<int64_t>(assignment.size())};
  for (const auto& bucket : assignment) encoded.push_back(static_cast<int64_t>(bucket.size()));
  for (const auto& bucket : assignment) encoded.insert(encoded.end(), bucket.begin(), bucket.end());
  torch::Tensor layout = torch::tensor(encoded, torch::kInt64);
  group_->broadcast(layout, 0);
  auto flat = layout.accessor<int64_t, 1>();
  std::vector<std::vector<std::size_t>> synced(static_cast<std::size_t>(flat[0]));
  int64_t next = 1 + flat[0];
  for (std::size_t b = 0; b < synced.size(); ++b) {
    for (int64_t k = 0; k < flat[1 + static_cast<int64_t>(b)]; ++k) synced[b].push_back(static_cast<std::size_t>(flat[next++]));
  }
  initialize_buckets(synced);
  has_rebuilt_buckets_ = true;
}

void Reducer::start_backward() {
  in_backward_ = true;
  next_bucket_ = 0;
  ready_.assign(params_.size(), false);
  for (auto& bucket : buckets_) {
    bucket.pending = bucket.params.size();
    bucket.work.reset();
  }
  std::weak_ptr<Reducer> weak = weak_from_this();
  nn::queue_backward_callback([weak] {
    if (auto self = weak.lock()) self->finalize_backward();
  });
}

void Reducer::on_grad_accumulated(std::size_t index) {
  if (!require_grad_sync_) return;  // no_sync: autograd accumulates locally
  std::lock_guard<std::mutex> guard(lock_);
  if (!in_backward_) start_backward();
  if (ready_[index]) return;  // a parameter used twice is reduced once, at its first hook
  ready_[index] = true;
  if (!has_rebuilt_buckets_) rebuilt_order_.push_back(index);
  Bucket& bucket = buckets_[locator_[index].first];
  const torch::Tensor& view = bucket.views[locator_[index].second];
  torch::Tensor& grad = params_[index].mutable_grad();
  torch::NoGradGuard no_grad;
  const bool sum = options_.comm_hook == CommHook::Sum || mutant("grad_sum");
  const double scale = sum ? 1.0 : 1.0 / group_->size();
  if (options_.gradient_as_bucket_view && grad.is_alias_of(view)) {
    view.mul_(scale);
  } else {
    torch::mul_out(const_cast<torch::Tensor&>(view), grad, torch::scalar_tensor(scale, torch::kDouble));
    if (options_.gradient_as_bucket_view) grad = view;
  }
  if (--bucket.pending == 0) launch_ready_buckets();
}

void Reducer::launch_ready_buckets() {
  // Buckets are all-reduced strictly in order, each as soon as it is full.
  while (next_bucket_ < buckets_.size() && buckets_[next_bucket_].pending == 0) {
    Bucket& bucket = buckets_[next_bucket_++];
    bucket.work = group_->all_reduce_async(bucket.flat, distributed::ReduceOp::Sum);
  }
}

void Reducer::finalize_backward() {
  std::lock_guard<std::mutex> guard(lock_);
  torch::NoGradGuard no_grad;
  std::vector<std::size_t> unused;
  for (std::size_t i = 0; i < params_.size(); ++i) {
    if (!ready_[i]) unused.push_back(i);
  }
  if (!unused.empty() && !options_.find_unused_parameters && !mutant("replicate_unused_as_zeros")) {
    // DDP: the buckets those parameters are in are never reduced, and the next
    // forward raises (prepare_for_forward).
    unfinished_ = unused;
  } else {
    // find_unused_parameters: unused parameters contribute zeros, so every
    // rank runs the same collectives.
    for (auto& bucket : buckets_) {
      for (std::size_t slot = 0; slot < bucket.params.size(); ++slot) {
        if (!ready_[bucket.params[slot]]) {
          bucket.views[slot].zero_();
          --bucket.pending;
        }
      }
    }
    launch_ready_buckets();
  }
  // Which parameters some rank used (DDP's local_used_map, all-reduced):
  // only those get the reduced gradient. Every rank all-reduces it after every
  // backward, whatever it used itself: the collective must match across ranks.
  std::vector<bool> used_somewhere(ready_.begin(), ready_.end());
  if (options_.find_unused_parameters) {
    torch::Tensor used = torch::zeros({static_cast<int64_t>(params_.size())}, torch::kInt32);
    for (std::size_t i = 0; i < params_.size(); ++i) used[static_cast<int64_t>(i)] = ready_[i] ? 1 : 0;
    group_->all_reduce(used, distributed::ReduceOp::Sum);
    for (std::size_t i = 0; i < params_.size(); ++i) used_somewhere[i] = used[static_cast<int64_t>(i)].item<int>() > 0;
  }
  for (auto& bucket : buckets_) {
    if (!bucket.work) continue;  // a bucket left unfinished
    bucket.work->wait();
    for (std::size_t slot = 0; slot < bucket.params.size(); ++slot) {
      const std::size_t index = bucket.params[slot];
      if (!used_somewhere[index]) continue;
      torch::Tensor& grad = params_[index].mutable_grad();
      if (options_.gradient_as_bucket_view) {
        if (!grad.defined()) grad = bucket.views[slot];  // used elsewhere only: the view is its gradient
        if (grad.is_alias_of(bucket.views[slot])) continue;
      }
      if (grad.defined()) {
        grad.copy_(bucket.views[slot]);
      } else {
        grad = bucket.views[slot].clone();
      }
    }
  }
  in_backward_ = false;
}

}  // namespace ccts::replicate
