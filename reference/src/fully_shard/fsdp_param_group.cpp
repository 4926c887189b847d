#include "fsdp_param_group.h"

#include <algorithm>

#include <torch/torch.h>

#include "ccts/distributed/process_group.h"
#include "ccts/errors.h"
#include "ccts/mutants.h"
#include "ccts/nn/grad_hooks.h"
#include "ccts/python_repr.h"
#include "sharded_registry.h"

namespace ccts::fully_shard {

int64_t ShardRule::rows_of(int rank) const {
  return std::clamp<int64_t>(rows - start_of(rank), 0, chunk);
}

FSDPParam::FSDPParam(nn::Module* module, std::string name, const torch::Tensor& original,
                     std::shared_ptr<distributed::ProcessGroup> group, int64_t shard_dim, bool replicated,
                     std::optional<torch::ScalarType> param_dtype)
    : module_(module),
      name_(std::move(name)),
      original_(original.getIntrusivePtr()),
      group_(std::move(group)),
      rank_(group_->rank()),
      requires_grad_(original.requires_grad()),
      replicated_(replicated) {
  torch::NoGradGuard no_grad;
  const int world = group_->size();
  global_shape_ = original.sizes().vec();
  rule_.dim = shard_dim;
  rule_.rows = original.size(shard_dim);
  rule_.chunk = (rule_.rows + world - 1) / world;
  // A wrong rule for the self-test: floor(rows / world) rows per rank.
  if (mutant("shard_round_down")) rule_.chunk = std::max<int64_t>(1, rule_.rows / world);
  param_dtype_ = param_dtype;
  adopt(padded_shard_of(original));
}

// Every rank's storage has rank 0's size; this rank's rows of `full` sit at its front.
torch::Tensor FSDPParam::padded_shard_of(const torch::Tensor& full) const {
  torch::NoGradGuard no_grad;
  std::vector<int64_t> padded_shape = global_shape_;
  padded_shape[rule_.dim] = rule_.chunk;
  torch::Tensor padded = torch::zeros(padded_shape, full.options().requires_grad(false));
  const int64_t rows = rule_.rows_of(rank_);
  if (rows > 0) padded.narrow(rule_.dim, 0, rows).copy_(full.detach().narrow(rule_.dim, rule_.start_of(rank_), rows));
  return padded;
}

bool FSDPParam::reshard_if_replaced() {
  torch::Tensor* slot = module_->find_parameter(name_);
  if (slot == nullptr || !slot->defined() || owns(*slot) || mutant("fsdp_replaced_param_kept")) return false;
  if (slot->sizes().vec() != global_shape_) {
    throw std::invalid_argument("fully_shard: parameter '" + name_ + "' was replaced by one of shape " +
                                torch_size_repr(slot->sizes()) + " instead of " + torch_size_repr(global_shape_));
  }
  const torch::Tensor full = *slot;
  requires_grad_ = full.requires_grad();
  sharded_ = torch::Tensor();  // adopt() takes requires_grad from the new parameter
  adopt(padded_shard_of(full));  // on the new value's device and dtype
  return true;
}

// Makes `padded` this rank's storage: the registered shard is its front, and
// the unsharded parameter (storage freed) has its device and dtype, or
// param_dtype under mixed precision.
void FSDPParam::adopt(const torch::Tensor& padded) {
  padded_ = padded;
  const int64_t rows = rule_.rows_of(rank_);
  if (sharded_.defined()) requires_grad_ = sharded_.requires_grad();
  sharded_ = padded_.narrow(rule_.dim, 0, rows).detach().requires_grad_(requires_grad_);
  detail::mark_sharded(sharded_, layout(), gatherer(), [rule = rule_, rank = rank_](const torch::Tensor& full) {
    return full.narrow(rule.dim, rule.start_of(rank), rule.rows_of(rank));
  });
  unsharded_ = torch::empty(global_shape_, padded_.options().dtype(param_dtype_.value_or(padded_.scalar_type())));
  free_unsharded();
  unsharded_.requires_grad_(requires_grad_);
  post_forward_ = torch::Tensor();
  register_on_module(sharded_);
}

bool FSDPParam::convert(std::optional<torch::Device> device, std::optional<torch::ScalarType> dtype, bool empty) {
  const bool same = (!device || *device == padded_.device()) && (!dtype || *dtype == padded_.scalar_type());
  if (same && !empty && !mutant("fsdp_no_op_conversion_resets")) return false;
  torch::NoGradGuard no_grad;
  torch::TensorOptions options = padded_.options();
  if (device) options = options.device(*device);
  if (dtype) options = options.dtype(*dtype);
  adopt(empty ? torch::zeros(padded_.sizes(), options) : padded_.to(options));
  return true;
}

// What DTensor says of the shard (and of its gradient).
ShardedLayout FSDPParam::layout() const {
  const std::string shard = "Shard(" + std::to_string(rule_.dim) + ")";
  return ShardedLayout{global_shape_, replicated_ ? std::vector<std::string>{"Replicate()", shard} : std::vector<std::string>{shard},
                       nullptr};
}

std::vector<int64_t> FSDPParam::shard_shape(int rank) const {
  std::vector<int64_t> shape = global_shape_;
  shape[rule_.dim] = rule_.rows_of(rank);
  return shape;
}

bool FSDPParam::owns(const torch::Tensor& t) const {
  return t.is_same(sharded_) || t.is_same(unsharded_) || (post_forward_.defined() && t.is_same(post_forward_));
}

void FSDPParam::add_alias(nn::Module* module, std::string name) {
  aliases_.emplace_back(module, std::move(name));
  register_on_module(sharded_);
}

void FSDPParam::register_on_module(const torch::Tensor& tensor) {
  torch::Tensor* slot = module_->find_parameter(name_);
  if (slot == nullptr) throw std::logic_error("fully_shard: parameter '" + name_ + "' is gone from its module");
  *slot = tensor;
  if (mutant("fsdp_tie_broken")) return;
  for (const auto& [module, name] : aliases_) {
    if (torch::Tensor* alias = module->find_parameter(name)) *alias = tensor;
  }
}

void FSDPParam::hook_unsharded_grad(std::function<void()> on_accumulated) {
  if (requires_grad_) grad_hook_ = nn::register_post_accumulate_grad_hook(unsharded_, std::move(on_accumulated));
}

void FSDPParam::to_sharded() {
  register_on_module(sharded_);
  post_forward_ = torch::Tensor();
  free_unsharded();
}

void FSDPParam::to_unsharded() {
  if (!mutant("fsdp_freeze_ignored")) unsharded_.requires_grad_(sharded_.requires_grad());
  register_on_module(unsharded_);
}

void FSDPParam::to_sharded_post_forward(int group_size) {
  if (rule_.dim != 0) throw Unsupported("an integer reshard_after_forward with a shard dim other than 0 is not supported by ccts-reference");
  torch::NoGradGuard no_grad;
  const int64_t chunk = (rule_.rows + group_size - 1) / group_size;
  const int64_t start = std::min<int64_t>(rule_.rows, (rank_ % group_size) * chunk);
  const int64_t rows = std::clamp<int64_t>(rule_.rows - start, 0, chunk);
  post_forward_ = unsharded_.detach().narrow(0, start, rows).clone().requires_grad_(requires_grad_);
  detail::mark_sharded(post_forward_, ShardedLayout{global_shape_, {"Replicate()", "Shard(0)"}, nullptr}, gatherer());
  register_on_module(post_forward_);
  free_unsharded();
}

// FSDP2 frees an unsharded parameter by resizing its storage to 0 and
// re-allocates it before the next all-gather: the tensor object, which
// autograd may have saved for backward, stays the same.
void FSDPParam::free_unsharded() {
  c10::StorageImpl* storage = unsharded_.storage().unsafeGetStorageImpl();
  storage->set_data_ptr_noswap(at::DataPtr(nullptr, unsharded_.device()));
  storage->set_nbytes(0);
}

void FSDPParam::allocate_unsharded() {
  c10::StorageImpl* storage = unsharded_.storage().unsafeGetStorageImpl();
  const std::size_t nbytes = static_cast<std::size_t>(unsharded_.numel()) * unsharded_.element_size();
  if (storage->nbytes() == nbytes) return;
  storage->set_data_ptr_noswap(storage->allocator()->allocate(nbytes));
  storage->set_nbytes(nbytes);
}

void FSDPParam::copy_out(const std::vector<torch::Tensor>& gathered, int64_t offset) {
  allocate_unsharded();
  torch::NoGradGuard no_grad;
  // Written through an alias with its own version counter: the gather must
  // not look like an in-place change to tensors autograd saved.
  torch::Tensor target = torch::from_blob(unsharded_.data_ptr(), global_shape_, unsharded_.options().requires_grad(false));
  const std::vector<int64_t> padded_shape = padded_.sizes().vec();
  for (int r = 0; r < static_cast<int>(gathered.size()); ++r) {
    const int64_t rows = rule_.rows_of(r);
    if (rows == 0) continue;
    torch::Tensor shard = gathered[r].narrow(0, offset, padded_.numel()).view(padded_shape).narrow(rule_.dim, 0, rows);
    target.narrow(rule_.dim, rule_.start_of(r), rows).copy_(shard);
  }
}

void FSDPParam::copy_in_rows(const torch::Tensor& full, int rank, torch::Tensor block) const {
  const int64_t rows = rule_.rows_of(rank);
  if (rows == 0) return;
  torch::Tensor rows_of_rank = full.narrow(rule_.dim, rule_.start_of(rank), rows);
  block.narrow(0, 0, rows_of_rank.numel()).view(shard_shape(rank)).copy_(rows_of_rank);
}

namespace {
// The global value from every rank's `padded` (rank 0's chunk on the shard
// dim); a collective unless the group has one rank.
torch::Tensor gather_full(const torch::Tensor& padded, const ShardRule& rule, distributed::ProcessGroup& group) {
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> shards = group.size() == 1 ? std::vector<torch::Tensor>{padded} : group.all_gather(padded);
  std::vector<torch::Tensor> rows;
  for (int r = 0; r < static_cast<int>(shards.size()); ++r) rows.push_back(shards[r].narrow(rule.dim, 0, rule.rows_of(r)));
  return torch::cat(rows, rule.dim);
}
}  // namespace

// It holds what it needs, so a registered tensor may outlive its FSDPParam.
detail::FullTensorFn FSDPParam::gatherer() const {
  return [padded = padded_, rule = rule_, group = group_] { return gather_full(padded, rule, *group); };
}

// A sharded gradient is a DTensor like its parameter: same layout (grad_layout).
// It is padded to the storage shape only when gathered (clip_grad_norm_), and
// held weakly so that the registry entry does not keep it alive.
void FSDPParam::mark_sharded_grad(const torch::Tensor& grad) const {
  c10::weak_intrusive_ptr<c10::TensorImpl, c10::UndefinedTensorImpl> weak(grad.getIntrusivePtr());
  detail::mark_sharded(grad, layout(), [weak, sizes = padded_.sizes().vec(), rule = rule_, group = group_] {
    torch::NoGradGuard no_grad;
    const torch::Tensor grad(weak.lock());
    torch::Tensor padded = torch::zeros(sizes, grad.options());
    padded.narrow(rule.dim, 0, grad.size(rule.dim)).copy_(grad);
    return gather_full(padded, rule, *group);
  });
}

FSDPParamGroup::FSDPParamGroup(std::vector<std::unique_ptr<FSDPParam>> params,
                               std::shared_ptr<distributed::ProcessGroup> group,
                               std::shared_ptr<distributed::ProcessGroup> replicate_group)
    : params_(std::move(params)), group_(std::move(group)), replicate_group_(std::move(replicate_group)) {}

bool FSDPParamGroup::owns(const torch::Tensor& t) const {
  return std::any_of(params_.begin(), params_.end(), [&](const auto& p) { return p->owns(t); });
}

void FSDPParamGroup::convert(std::optional<torch::Device> device, std::optional<torch::ScalarType> dtype, bool empty) {
  bool changed = false;
  for (auto& p : params_) changed = p->convert(device, dtype, empty) || changed;
  if (changed) adopt_new_storage();
}

void FSDPParamGroup::adopt_new_storage() {
  unsharded_ = false;
  install_grad_hooks();
}

void FSDPParamGroup::reset_iter_state() {
  {
    std::lock_guard<std::mutex> guard(lock_);
    backward_counts_.clear();
  }
  owes_post_backward_ = false;
  reshard();
}

void FSDPParamGroup::reshard_replaced_params() {
  bool replaced = false;
  for (auto& p : params_) replaced = p->reshard_if_replaced() || replaced;
  if (replaced) adopt_new_storage();
}

void FSDPParamGroup::pre_backward() {
  owes_post_backward_ = true;
  unshard();
}

void FSDPParamGroup::install_grad_hooks() {
  std::weak_ptr<FSDPParamGroup> weak = weak_from_this();
  for (auto& p : params_) {
    p->hook_unsharded_grad([weak] {
      if (auto self = weak.lock()) self->on_grad_accumulated();
    });
  }
}

void FSDPParamGroup::unshard() {
  if (unsharded_) return;
  std::vector<torch::Tensor> flat;
  // In the unsharded parameters' dtype: param_dtype under mixed precision.
  for (auto& p : params_) flat.push_back(p->padded().reshape({-1}).to(p->unsharded().scalar_type()));
  torch::Tensor input = torch::cat(flat);
  // One collective for the whole group; one rank needs none.
  std::vector<torch::Tensor> gathered =
      group_->size() == 1 ? std::vector<torch::Tensor>{input} : group_->all_gather(input);
  int64_t offset = 0;
  for (auto& p : params_) {
    p->copy_out(gathered, offset);
    offset += p->padded().numel();
  }
  for (auto& p : params_) p->to_unsharded();
  unsharded_ = true;
}

void FSDPParamGroup::reshard() {
  for (auto& p : params_) p->to_sharded();
  unsharded_ = false;
}

void FSDPParamGroup::post_forward() {
  if (mutant("fsdp_never_reshards")) return;
  switch (post_forward_mode) {
    case PostForward::Keep: return;
    case PostForward::Reshard: reshard(); return;
    case PostForward::ReshardToGroup:
      for (auto& p : params_) p->to_sharded_post_forward(post_forward_group_size);
      unsharded_ = false;
      return;
  }
}

void FSDPParamGroup::on_grad_accumulated() {
  const void* backward = nn::current_backward();
  bool done = false;
  {
    std::lock_guard<std::mutex> guard(lock_);
    auto [it, first] = backward_counts_.try_emplace(backward, 0, 0);
    if (first) {
      // The unsharded parameters autograd accumulates into: they may require
      // grad while the shards do not (frozen at a forward that kept them
      // gathered, then unfrozen through the module's parameters).
      for (auto& p : params_) {
        const bool counted = mutant("fsdp_counts_sharded_requires_grad") ? p->requires_grad() : p->unsharded().requires_grad();
        it->second.second += counted && nn::will_accumulate_grad(p->unsharded());
      }
    }
    done = ++it->second.first >= it->second.second;
    if (done) backward_counts_.erase(it);
  }
  // The group's post-backward as soon as its last gradient is in, so its
  // reduce-scatter overlaps the rest of backward.
  if (done) post_backward();
}

void FSDPParamGroup::post_backward() {
  torch::NoGradGuard no_grad;
  owes_post_backward_ = false;
  const bool reshard_now = reshard_after_backward && !mutant("fsdp_never_reshards");
  if (!reduce_grads) {
    // No sync: the unsharded gradients stay and keep accumulating.
    if (reshard_now) reshard();
    return;
  }
  std::vector<FSDPParam*> with_grad;
  for (auto& p : params_) {
    if (p->unsharded().grad().defined()) with_grad.push_back(p.get());
  }
  if (reshard_now) reshard();
  const int world = group_->size();
  if (with_grad.empty() || (world == 1 && mutant("fsdp_size1_grad_dropped"))) return;
  int64_t per_rank = 0;
  bool padded = false;  // some shard has fewer rows than its storage
  for (FSDPParam* p : with_grad) {
    per_rank += p->padded().numel();
    padded = padded || p->rule().rows != p->rule().chunk * world;
  }
  // Rank r's block holds row-chunk r of every gradient, padded like the
  // shards; the padding is summed with the rest, so it must be zeros.
  const torch::TensorOptions grad_options = with_grad.front()->unsharded().grad().options();
  const torch::TensorOptions input_options = reduce_dtype ? grad_options.dtype(*reduce_dtype) : grad_options;
  torch::Tensor input = padded ? torch::zeros({world, per_rank}, input_options)
                               : torch::empty({world, per_rank}, input_options);
  int64_t offset = 0;
  for (FSDPParam* p : with_grad) {
    for (int r = 0; r < world; ++r) p->copy_in_rows(p->unsharded().grad(), r, input[r].narrow(0, offset, p->padded().numel()));
    offset += p->padded().numel();
    // As FSDP2: the unsharded gradient goes once copied in, before the
    // collective, so the two never hold memory together.
    p->unsharded().mutable_grad() = torch::Tensor();
  }
  torch::Tensor reduced = reduce(input);
  offset = 0;
  for (FSDPParam* p : with_grad) {
    const std::vector<int64_t> shape = p->shard_shape(group_->rank());
    const int64_t numel = p->sharded().numel();
    torch::Tensor shard = reduced.narrow(0, offset, numel).view(shape).to(p->sharded().scalar_type()).clone();
    if (mutant("fsdp_strided_grads") && shard.dim() == 2) shard = shard.t().contiguous().t();  // same values, column-major
    torch::Tensor& grad = p->sharded().mutable_grad();
    if (grad.defined()) {
      grad.add_(shard);  // accumulate into the existing sharded gradient (marked when it was made)
    } else {
      grad = shard;
      p->mark_sharded_grad(grad);
    }
    // As FSDP2 does: hooks registered on the sharded parameter see its new gradient.
    if (!mutant("post_acc_grad_hooks_skipped")) nn::run_post_accumulate_grad_hooks(p->sharded());
    offset += p->padded().numel();
  }
}

// [world, per_rank] blocks -> this rank's reduced block: the mean over the
// shard ranks (then over the replicas, HSDP), or with a divide factor the
// sum divided by it (FSDP-METHOD-004).
torch::Tensor FSDPParamGroup::reduce(torch::Tensor input) {
  const int world = group_->size();
  const int replicas = replicate_group_ ? replicate_group_->size() : 1;
  using distributed::ReduceOp;
  if (!gradient_divide_factor) {
    const auto op = mutant("grad_sum") ? ReduceOp::Sum : ReduceOp::Avg;
    torch::Tensor flat = input.reshape({-1});  // a scratch buffer: the collective may overwrite it
    torch::Tensor reduced = world == 1 ? input[0] : group_->reduce_scatter_(flat, op);
    if (replicate_group_) replicate_group_->all_reduce(reduced, op);
    if (all_reduce_hook) all_reduce_hook(reduced);
    return reduced;
  }
  const double factor = *gradient_divide_factor;
  // FSDP2 divides inside the collective with ReduceOp.PREMUL_SUM, which Gloo
  // lacks, unless the factor is the shard size (AVG) or sums are forced.
  if (world > 1 && !force_sum_reduction && factor != world && group_->backend() == "gloo") {
    throw std::runtime_error("Cannot use ReduceOp.PREMUL_SUM with Gloo");
  }
  torch::Tensor flat = input.reshape({-1});
  torch::Tensor reduced = world == 1 ? input[0].clone() : group_->reduce_scatter_(flat, ReduceOp::Sum);
  if (replicate_group_ && replicas > 1) replicate_group_->all_reduce(reduced, ReduceOp::Sum);
  if (all_reduce_hook) all_reduce_hook(reduced);
  return reduced.div_(factor);
}

}  // namespace ccts::fully_shard
