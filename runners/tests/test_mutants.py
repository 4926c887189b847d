"""Realistic bugs in the reference (reference/include/ccts/mutants.h) are
caught: with CCTS_MUTANT set, the named cases must fail and the rest of the
area keeps passing. Needs the built adapter (CCTS_ADAPTER or build/)."""
import json
import os
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

from runners.execute import default_adapter
from runners.tests.support import ROOT

ADAPTER = os.environ.get("CCTS_ADAPTER") or default_adapter()

# mutant -> (area, cases that must fail)
MUTANTS = {
    "no_fqn_check": ("contract", {"contract.fqn.wrapper_rejected", "contract.fqn.added_parameter_rejected",
                                  "contract.fqn.added_buffer_rejected", "contract.fqn.added_module_rejected",
                                  "contract.fqn.reordered_rejected"}),
    "state_not_shared": ("contract", {"contract.state.shared_per_call", "contract.state.roots_only"}),
    "no_once_check": ("contract", {"contract.registry.order_and_reapply", "contract.once.list_reapply_message",
                                   "contract.once.partial_list_keeps_earlier"}),
    "parents_not_reset": ("mod_tracker", {"mod_tracker.backward.reset_clears_unfinished_modules"}),
    "pre_fw_before_append": ("mod_tracker", {"mod_tracker.hooks.user_hooks_order",
                                             "mod_tracker.ac.recompute_inside_backward"}),
    "hooks_kept_on_reregister": ("mod_tracker", {"mod_tracker.hooks.reregister_assigns_every_kind",
                                                 "mod_tracker.hooks.rejected_call_keeps_earlier_kinds"}),
    "grad_sum": ("replicate", {"replicate.parity.single_module", "replicate.parity.multi_module",
                               "replicate.parity.with_kwargs", "replicate.sync.accumulate_then_sync"}),
    "replicate_no_broadcast": ("replicate", {"replicate.init.broadcast_from_rank0"}),
    "replicate_syncs_ignored": ("replicate", {"replicate.ignore.module_grads_stay_local",
                                              "replicate.ignore.nested_modules"}),
    "comm_hook_ignored": ("replicate", {"replicate.comm_hook.sum_before_first_forward"}),
    "replicate_unused_as_zeros": ("replicate", {"replicate.unused.error_at_next_forward"}),
    "replicate_group_ignored": ("replicate", {"replicate.process_group.subgroups_of_two"}),
    "replicate_no_rebuild": ("replicate", {"replicate.bucket.rebuilt_by_cap"}),
    "replicate_wraps": ("replicate", {"replicate.state_dict.single_module", "replicate.state_dict.non_root_multiple"}),
    "shard_round_down": ("fully_shard", {"fully_shard.shard.uneven_layout_ws2", "fully_shard.parity.uneven_model", "fully_shard.tied.uneven_rows",
                                         "fully_shard.shard.uneven_layout_ws4"}),
    "fsdp_never_reshards": ("fully_shard", {"fully_shard.reshard.after_forward_per_setting",
                                            "fully_shard.reshard.root_false_explicit_true",
                                            "fully_shard.reshard.int_group_size"}),
    "fsdp_any_root": ("fully_shard", {"fully_shard.root.child_forward_first"}),
    "shard_placement_ignored": ("fully_shard", {"fully_shard.placement.dim1_layout",
                                                "fully_shard.placement.dim1_local_shapes_ws2",
                                                "fully_shard.placement.dim1_local_shapes_ws4",
                                                "fully_shard.placement.largest_dim",
                                                "fully_shard.placement.negative_dim",
                                                "fully_shard.placement.uneven_dim1_rejected",
                                                "fully_shard.placement.dim_beyond_rank_rejected",
                                                "fully_shard.placement.largest_dim_single_group"}),
    "divide_factor_ignored": ("fully_shard", {"fully_shard.methods.gradient_divide_factor_one_rank",
                                              "fully_shard.methods.gradient_divide_factor_forced_sum_one_rank"}),
    "hsdp_replicas_ignored": ("fully_shard", {"fully_shard.mesh.hsdp_layout", "fully_shard.mesh.hsdp_trains_like_local",
                                              "fully_shard.mesh.hsdp_collectives"}),
    "mesh_unchecked": ("fully_shard", {"fully_shard.mesh.three_dims_rejected",
                                       "fully_shard.mesh.two_dims_without_names_rejected"}),
    "sub_mesh_is_world": ("fully_shard", {"fully_shard.mesh.sub_mesh_one_dim"}),
    "fsdp_reshards_in_recompute": ("fully_shard", {"fully_shard.checkpoint.reshard_true"}),
    "fsdp_freeze_ignored": ("fully_shard", {"fully_shard.frozen.after_fully_shard"}),
    "clip_local_norm": ("fully_shard", {"fully_shard.clip.total_norm_over_shards"}),
    "fsdp_tie_broken": ("fully_shard", {"fully_shard.tied.one_group", "fully_shard.tied.list_call"}),
    "post_acc_grad_hooks_skipped": ("fully_shard", {"fully_shard.hooks.post_accumulate_grad_once",
                                                    "fully_shard.hooks.optimizer_in_backward"}),
    "fsdp_ignores_whole_module": ("fully_shard", {"fully_shard.ignored.one_parameter_of_module"}),
    "fsdp_counts_sharded_requires_grad": ("fully_shard", {"fully_shard.frozen.unfrozen_after_gathered_forward",
                                                          "fully_shard.mp.reduce_dtype_after_frozen_first_forward"}),
    "fsdp_no_op_conversion_resets": ("fully_shard", {"fully_shard.mp.no_op_conversion_keeps_pending_grad"}),
    "fsdp_partial_groups_left_open": ("fully_shard", {"fully_shard.list.double_partial_forward"}),
    "mp_list_casts_first_only": ("fully_shard", {"fully_shard.mp.list_call_casts_every_module"}),
    "fsdp_reset_iter_state_noop": ("fully_shard", {"fully_shard.methods.reset_iter_state_after_exception"}),
    "fsdp_duplicates_by_shape": ("fully_shard", {"fully_shard.shared.layer_by_layer_no_false_duplicate"}),
    "fsdp_strided_grads": ("fully_shard", {"fully_shard.placement.dim1_contiguous"}),
    "all_reduce_hook_ignored": ("fully_shard", {"fully_shard.methods.all_reduce_hook_across_replicas"}),
    "fsdp_replaced_param_kept": ("fully_shard", {"fully_shard.init.replaced_parameter_resharded"}),
    "dp_mesh_dims_unchecked": ("fully_shard", {"fully_shard.mesh.spmd_replicate_placement_required",
                                               "fully_shard.mesh.spmd_unknown_dim_rejected",
                                               "fully_shard.mesh.spmd_other_mesh_rejected",
                                               "fully_shard.mesh.spmd_dims_required",
                                               "fully_shard.mesh.spmd_plain_parameters_rejected",
                                               "fully_shard.mesh.spmd_int_reshard_rejected"}),
    "fsdp_size1_grad_dropped": ("fully_shard", {"fully_shard.parity.world_size_one_exact"}),
    "state_dict_copies": ("fully_shard", {"fully_shard.state_dict.cached_aliases_shards"}),
    "from_group_dims_reversed": ("fully_shard", {"fully_shard.mesh.hsdp_from_groups"}),
    "broadcast_skipped": ("fully_shard", {"fully_shard.mesh.hsdp_broadcast_across_replicas"}),
    "spmd_params_left_replicated": ("fully_shard", {"fully_shard.mesh.spmd_layout_as_plain_mesh",
                                                    "fully_shard.mesh.spmd_hsdp_layout",
                                                    "fully_shard.mesh.spmd_trains_like_local",
                                                    "fully_shard.mesh.spmd_trains_like_local_no_reshard",
                                                    "fully_shard.mesh.spmd_hsdp_trains_like_local"}),
    "container_subclass_rejected": ("fully_shard", {"fully_shard.api.list_subclass_with_forward",
                                                    "fully_shard.api.dict_subclass_with_forward"}),
    "fsdp_no_dedupe": ("fully_shard", {"fully_shard.shared.module_and_buffer_managed_once", "fully_shard.tied.one_group"}),
    "forward_method_unwrapped": ("fully_shard", {"fully_shard.methods.forward_method_gathers"}),
    "mp_inputs_not_cast": ("fully_shard", {"fully_shard.mp.param_dtype_forward", "fully_shard.mp.output_dtype",
                                           "fully_shard.checkpoint.recompute_casts_inputs",
                                           "fully_shard.checkpoint.recompute_casts_outputs",
                                           "fully_shard.mp.list_call_casts_every_module",
                                           "fully_shard.mp.norm_modules_bf16", "fully_shard.mp.norm_modules_fp16"}),
}
# Mutants whose effect needs more than one rank.
WORLD_SIZES = {"grad_sum": "2", "comm_hook_ignored": "2", "replicate_group_ignored": "4", "replicate_no_broadcast": "2", "replicate_syncs_ignored": "2",
               "shard_round_down": "2,4", "shard_placement_ignored": "2,4", "fsdp_never_reshards": "1,4", "hsdp_replicas_ignored": "4",
               "mesh_unchecked": "4", "sub_mesh_is_world": "4", "forward_method_unwrapped": "2",
               "fsdp_reshards_in_recompute": "2", "fsdp_freeze_ignored": "2", "clip_local_norm": "2",
               "fsdp_no_dedupe": "2", "fsdp_ignores_whole_module": "2",
               "all_reduce_hook_ignored": "4", "spmd_params_left_replicated": "1,4",
               "from_group_dims_reversed": "4", "broadcast_skipped": "4"}


class CasesBeyondTwoRanks(unittest.TestCase):
    def test_each_case_that_runs_only_above_two_ranks_has_a_mutant_there(self) -> None:
        # test_mutations tampers at 1 and 2 ranks only; a case that never runs
        # there proves its strength through a mutant run at one of its sizes.
        from runners.suite import Suite
        for case in Suite().load_cases():
            sizes = set(case.data.get("world_sizes", [1, 2, 4]))
            if sizes & {1, 2}:
                continue
            covered = [m for m, (_, cases) in MUTANTS.items()
                       if case.id in cases and sizes & {int(n) for n in WORLD_SIZES.get(m, "1").split(",")}]
            self.assertTrue(covered, f"{case.id} runs only at {sorted(sizes)}: no mutant there must fail it")


@unittest.skipUnless(Path(ADAPTER).exists(), f"the reference adapter is not built ({ADAPTER})")
class Mutants(unittest.TestCase):
    def test_each_mutant_is_caught_by_its_cases(self) -> None:
        work = Path(tempfile.mkdtemp(prefix="ccts-mutants-"))
        for mutant, (area, must_fail) in MUTANTS.items():
            with self.subTest(mutant=mutant):
                out = work / mutant
                subprocess.run([sys.executable, "-m", "runners", "run", "--adapter", ADAPTER, "--area", area,
                                "--world-sizes", WORLD_SIZES.get(mutant, "1"), "--out", str(out), "-q"], cwd=ROOT,
                               capture_output=True,
                               env=dict(os.environ, PYTHONPATH=str(ROOT), CCTS_MUTANT=mutant), timeout=300)
                report = json.loads((out / "report.json").read_text())
                failed = {r["case"] for r in report["results"] if r["outcome"] == "fail"}
                self.assertLessEqual(must_fail, failed, f"{mutant}: cases that did not catch it")


if __name__ == "__main__":
    unittest.main()
