#pragma once
// fully_shard (torch.distributed.fsdp.fully_shard, FSDP2) as a contract API
// (spec/fully_shard.md): every parameter a call manages is sharded on dim 0,
// or the dim its shard_placement_fn names, across the mesh's shard ranks
// (torch.chunk's rule, each rank's storage padded to rank 0's chunk), all-gathered before forward and backward, resharded after
// them, and its gradient reduce-scattered and averaged into the sharded
// gradient. Registered parameters stand in for DTensors: the module holds
// this rank's local shard, and sharded_layout() tells its global shape and
// placements.
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <torch/types.h>

#include "ccts/composable/contract.h"
#include "ccts/nn/module.h"
#include "ccts/nn/value.h"

namespace ccts::distributed {
class DeviceMesh;
class ProcessGroup;
}

namespace ccts::fully_shard {

// What DTensor says of a sharded tensor.
struct ShardedLayout {
  std::vector<int64_t> global_shape;
  // "Shard(0)" on the whole world; "Replicate()", "Shard(0)" after a forward
  // with an integer reshard_after_forward (a 2-D mesh).
  std::vector<std::string> placements;
  // The DeviceMesh a tensor of distribute_module lives on (its identity is
  // what fully_shard's dp_mesh_dims checks); null for fully_shard's own.
  std::shared_ptr<const distributed::DeviceMesh> mesh;
};

// The layout of a tensor fully_shard registered as sharded, or nothing for a
// plain tensor.
std::optional<ShardedLayout> sharded_layout(const torch::Tensor& tensor);
// distribute_tensor(full, ...).to_local() without communication: this rank's
// part of `full` laid out as the sharded tensor, or `full` for a plain one.
torch::Tensor shard_of(const torch::Tensor& tensor, const torch::Tensor& full);
// DTensor.full_tensor(): the global value; a collective for a sharded
// tensor (every rank must call it), the tensor itself otherwise.
torch::Tensor full_tensor(const torch::Tensor& tensor);

// MixedPrecisionPolicy: gather and compute in param_dtype, reduce gradients
// in reduce_dtype (default param_dtype), cast forward outputs to
// output_dtype; unset dtypes change nothing.
struct MixedPrecisionPolicy {
  std::optional<torch::ScalarType> param_dtype;
  std::optional<torch::ScalarType> reduce_dtype;
  std::optional<torch::ScalarType> output_dtype;
  bool cast_forward_inputs = true;
};

// DataParallelMeshDims(shard, replicate): the dims of an SPMD mesh, whose
// parameters are already DTensors on it, that are data parallel. make()
// raises PyTorch's ValueError when neither is set.
struct DataParallelMeshDims {
  std::vector<std::string> shard;
  std::vector<std::string> replicate;
  static DataParallelMeshDims make(std::vector<std::string> shard, std::vector<std::string> replicate);
};

// distribute_module(module, mesh, partition_fn) (torch.distributed.tensor):
// each parameter that `placements` names by FQN becomes a DTensor with those
// placements ("Replicate()" or "Shard(d)", one per mesh dim; at most one
// Shard), every other parameter and buffer a DTensor replicated on the mesh.
// The module holds the local tensors. Forward does not model DTensor
// arithmetic: the tensors are for fully_shard's dp_mesh_dims.
void distribute_module(nn::Module& module, const std::shared_ptr<distributed::DeviceMesh>& mesh,
                       const std::map<std::string, std::vector<std::string>>& placements = {});

// DTensor.from_local(local, mesh, [Replicate()] * mesh.ndim, run_check=False):
// a view of `local` (gradients flow back to it) registered as replicated on
// the mesh.
torch::Tensor from_local_replicated(const torch::Tensor& local, const std::shared_ptr<distributed::DeviceMesh>& mesh);

struct FullyShardOptions {
  // A Bool, or an Int that divides the world size; unset: true, except
  // false for the root (decided at its first forward).
  std::optional<nn::Value> reshard_after_forward;
  // Parameters left alone: not sharded, not gathered, not reduced.
  std::vector<torch::Tensor> ignored_params;
  // A 1-D mesh shards over its ranks; a 2-D one is HSDP (dim 0 replicates,
  // dim 1 shards) and must have dim names. Unset: a 1-D mesh over
  // process_group, else over distributed::default_process_group().
  std::shared_ptr<distributed::DeviceMesh> mesh;
  std::shared_ptr<distributed::ProcessGroup> process_group;
  // shard_placement_fn: the dim a parameter is sharded on (may be negative),
  // or nothing for the default, dim 0.
  std::function<std::optional<int64_t>(const torch::Tensor&)> shard_dim;
  MixedPrecisionPolicy mp_policy;
  // The mesh is an SPMD mesh and these are its data-parallel dims
  // (FSDP-MESH-004): every parameter must be a DTensor on that very mesh,
  // replicated on those dims. The reference shards such meshes when their
  // dims are (shard) or (replicate, shard), one name each, as a plain mesh
  // of that shape; others raise Unsupported.
  std::optional<DataParallelMeshDims> dp_mesh_dims;
};

class FSDPState;

// The `fully_shard` contract (registry name "fully_shard"); one per process.
const composable::Contract& fully_shard_contract();

// fully_shard(module, **options): returns the module, now of class FSDP<Name>.
std::shared_ptr<nn::Module> fully_shard(const std::shared_ptr<nn::Module>& module, FullyShardOptions options = {});
// fully_shard([modules], **options): one state and one parameter group for all of them.
composable::Modules fully_shard(const composable::Modules& modules, FullyShardOptions options = {});

// fully_shard.state(module), or nullptr.
std::shared_ptr<FSDPState> fully_shard_state(const nn::Module& module);

// FSDPModule methods. unshard/reshard act on the module's own group only.
void unshard(nn::Module& module);
void reshard(nn::Module& module);
// After an exception mid-iteration, on the root (RuntimeError otherwise):
// every group resharded and the iteration's trackers cleared (FSDP-METHOD-010).
void reset_iter_state(nn::Module& module);
// With recurse, every fully_shard module inside `module` too.
void set_requires_gradient_sync(nn::Module& module, bool requires_gradient_sync, bool recurse = true);
// A Bool only (PyTorch's ValueError otherwise); replaces the root's default.
void set_reshard_after_forward(nn::Module& module, const nn::Value& reshard_after_forward, bool recurse = true);
void set_reshard_after_backward(nn::Module& module, bool reshard_after_backward, bool recurse = true);
// An int of at least 1 (PyTorch's TypeError, bool included, or ValueError
// otherwise). Reductions here finish inside their backward, one buffer at a
// time, so there is nothing in flight to cap: only the argument is checked.
void set_reduce_scatter_max_input_buffers(nn::Module& module, const nn::Value& max_input_buffers, bool recurse = true);
void set_is_last_backward(nn::Module& module, bool is_last_backward);
// The reduced gradient is the sum over the ranks divided by `factor`.
void set_gradient_divide_factor(nn::Module& module, double factor);
void set_force_sum_reduction_for_comms(nn::Module& module, bool enable);
// `hook(reduced)` on the module's own group: after the reduce-scatter (and a
// 2-D mesh's all-reduce), before any division by a divide factor; it may
// change the gradient in place (FSDP-METHOD-011).
void set_all_reduce_hook(nn::Module& module, std::function<void(torch::Tensor&)> hook);
// Groups to gather right after this module's own: in its pre-forward, or in
// its pre-backward. They change when parameters are gathered, not values.
void set_modules_to_forward_prefetch(nn::Module& module, const std::vector<std::shared_ptr<nn::Module>>& modules);
void set_modules_to_backward_prefetch(nn::Module& module, const std::vector<std::shared_ptr<nn::Module>>& modules);

// torch.nn.utils.clip_grad_norm_(parameters, max_norm) over sharded and
// plain gradients: the total 2-norm of the full gradients (a collective when
// any is sharded: every rank must call it), then each gradient scaled by
// min(max_norm / (norm + 1e-6), 1). Returns the total norm.
torch::Tensor clip_grad_norm_(const std::vector<torch::Tensor>& parameters, double max_norm);

// register_fsdp_forward_method: the method runs between the module's
// pre-forward and post-forward, as forward does; a no-op on other modules.
void register_fsdp_forward_method(nn::Module& module, const std::string& method);

// module.to_empty(device=device) and module.to(dtype) over a tree with
// fully_shard modules: sharded parameters get new storage and stay sharded;
// the rest converts as nn::Module does.
void to_empty(nn::Module& module, const torch::Device& device);
void to_dtype(nn::Module& module, torch::ScalarType dtype);

// FQNs (relative to the module) of the parameters its call manages that the
// module holds, in named_parameters order; nothing when the call manages
// none (no group).
std::optional<std::vector<std::string>> managed_parameters(const nn::Module& module);

}  // namespace ccts::fully_shard
