#pragma once
// Deliberate bugs for the suite's self-test (runners/tests/test_mutants.py):
// with CCTS_MUTANT=<name> in the environment, the reference misbehaves in
// that one way, and the conformance cases must catch it. Unset, nothing
// changes. Names: no_fqn_check, state_not_shared, no_once_check (contract);
// parents_not_reset, pre_fw_before_append, hooks_kept_on_reregister
// (ModTracker); grad_sum (replicate and fully_shard sum gradients instead of
// averaging), replicate_no_broadcast, replicate_syncs_ignored,
// replicate_no_rebuild (buckets never rebuilt), replicate_wraps (a
// DistributedDataParallel-style wrapper whose FQNs carry `module.`),
// comm_hook_ignored (a registered comm hook never reaches the engine),
// replicate_unused_as_zeros (parameters without a gradient reduced as zeros
// even without find_unused_parameters), replicate_group_ignored (the
// process_group kwarg is dropped for the world);
// shard_round_down (floor(rows / world) rows per rank), fsdp_never_reshards,
// fsdp_any_root (every module that runs forward first is a root),
// shard_placement_ignored (shard_placement_fn dropped: every parameter on
// dim 0), divide_factor_ignored (set_gradient_divide_factor dropped),
// hsdp_replicas_ignored (a 2-D mesh's replicate dim dropped: no all-reduce),
// mesh_unchecked (3-D meshes and 2-D meshes without names accepted),
// sub_mesh_is_world (mesh[dim] is the whole world), mp_inputs_not_cast
// (cast_forward_inputs ignored), forward_method_unwrapped
// (register_fsdp_forward_method does nothing), fsdp_reshards_in_recompute
// (checkpoint's recomputation in backward runs the forward hooks as forward
// does, resharding what backward needs), fsdp_freeze_ignored (freezing a
// shard after fully_shard does not reach the gathered parameter),
// clip_local_norm (clip_grad_norm_ scales by each rank's own shards' norm),
// fsdp_tie_broken (a tied Parameter's second place keeps the original),
// fsdp_no_dedupe (a module or Parameter reached by two paths is managed twice),
// fsdp_ignores_whole_module (one ignored parameter leaves its module's others
// unmanaged too), post_acc_grad_hooks_skipped (hooks on a sharded parameter
// never see its reduced gradient), container_subclass_rejected (a
// ModuleList or ModuleDict subclass that defines forward is rejected too),
// fsdp_counts_sharded_requires_grad (backward waits only for the gradients of
// parameters whose shards require grad, resharding while gathered ones that
// were unfrozen still compute), fsdp_no_op_conversion_resets (module.to() to
// the shards' own dtype makes new storage, dropping pending gradients),
// fsdp_partial_groups_left_open (the root's forward does not complete a list
// call whose forward ran only some of its modules), mp_list_casts_first_only
// (cast_forward_inputs on the first module of a list call only),
// fsdp_reset_iter_state_noop (reset_iter_state leaves the groups as they are),
// fsdp_duplicates_by_shape (the shared-parameter check keys parameters by
// shard shape and dtype, not identity, so parameters alike look shared),
// fsdp_strided_grads (2-D sharded gradients column-major: same values),
// all_reduce_hook_ignored (set_all_reduce_hook does nothing),
// fsdp_replaced_param_kept (a parameter replaced before the first forward is
// not sharded again: the group keeps the old one), dp_mesh_dims_unchecked
// (DataParallelMeshDims and fully_shard's SPMD-mesh checks skipped),
// spmd_params_left_replicated (with dp_mesh_dims nothing is sharded: the
// parameters stay replicated DTensors), from_group_dims_reversed
// (DeviceMesh::from_group takes its groups in reverse dim order),
// broadcast_skipped (the adapter's broadcast step does nothing),
// fsdp_size1_grad_dropped (a one-rank group's shortcut skips the reduction:
// the sharded parameters get no gradient), state_dict_copies
// (Module::state_dict returns copies of the tensors, not the tensors);
// intake_number_overflow_uncaught (the adapter's intake lets a JSON number too
// large escape: reference/tests/fuzz/ proves its regression inputs catch it);
// checkpoint_keeps_activations (no saved-tensor hooks: a checkpointed region
// keeps its activations; runners/tests/test_bench_checkpoint.py catches it).
#include <cstdlib>
#include <string>

namespace ccts {

inline bool mutant(const char* name) {
  static const std::string active = [] {
    const char* value = std::getenv("CCTS_MUTANT");
    return std::string(value ? value : "");
  }();
  return active == name;
}

}  // namespace ccts
