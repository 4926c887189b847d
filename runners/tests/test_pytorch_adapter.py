"""The PyTorch adapter (runners/adapters/pytorch) against the suite. With
Debian's PyTorch 1.13 the fixture cases must pass on real torch.nn and the
composable-API cases are unsupported (1.13 lacks them); with PyTorch 2.x every
case must pass."""
import inspect
import json
import os
import socket
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path
from typing import Any
from unittest import mock

from runners.suite import suite_version
from runners.tests.support import ROOT

try:
    import torch
    import torch.nn as nn

    from runners.adapters.pytorch import composable as cp
    from runners.adapters.pytorch import probes
    from runners.adapters.pytorch.interpreter import capabilities, encode, run_case
except ImportError:  # pragma: no cover - depends on the machine
    torch = None

ADAPTER = f"{sys.executable} -m runners.adapters.pytorch"
XFAIL = ROOT / "runners" / "adapters" / "pytorch" / "expected-failures.txt"
HAS_REPLICATE = torch is not None and cp.replicate_api() is not None
HAS_FULLY_SHARD = torch is not None and cp.fully_shard_api() is not None
NO_TORCH = "PyTorch is not installed"
# Debian's PyTorch 1.13 has neither API; these tests need PyTorch 2.x.
NO_REPLICATE = "needs torch.distributed._composable.replicate (PyTorch 2.x)"
NO_FULLY_SHARD = "needs fully_shard (FSDP2, PyTorch >= 2.4)"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def adapter_lines(*messages: dict, preamble: str = "", unset: tuple[str, ...] = ()) -> list[dict]:
    """One world-size-1 adapter process; `preamble` is Python run before its main
    (to monkeypatch the PyTorch under it), `unset` names variables it must not inherit."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1",
               MASTER_PORT=str(free_port()))
    for name in unset:
        env.pop(name, None)
    command = [sys.executable, "-m", "runners.adapters.pytorch"] if not preamble else [
        sys.executable, "-c", preamble + "\nimport sys\nfrom runners.adapters.pytorch.__main__ import main\n"
                                         "sys.exit(main())\n"]
    p = subprocess.run(command, input="".join(json.dumps(m) + "\n" for m in messages),
                       capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    return [json.loads(line) for line in p.stdout.splitlines() if line.strip()]


class Protocol(unittest.TestCase):
    def test_wrong_protocol_is_an_error_message(self) -> None:
        replies = adapter_lines({"type": "hello", "protocol": 99})
        self.assertEqual(replies[0]["type"], "error")
        self.assertIn("protocol version 99 is not supported", replies[0]["message"])

    def test_unknown_message_type(self) -> None:
        self.assertEqual(adapter_lines({"type": "nonsense"})[0]["type"], "error")


@unittest.skipIf(torch is None, "PyTorch is not installed")
class AgainstTheSuite(unittest.TestCase):
    @unittest.skipIf(os.environ.get("CCTS_ORACLE_IN_CTEST") == "1",
                     "CTest's oracle tests run every case x world size on this PyTorch")
    def test_suite_on_real_pytorch(self) -> None:
        out = Path(tempfile.mkdtemp(prefix="ccts-pytorch-"))
        subprocess.run([sys.executable, "-m", "runners", "run", "--adapter", ADAPTER, "--world-sizes", "1",
                        "--xfail", str(XFAIL), "--out", str(out), "-q"], cwd=ROOT,
                       env=dict(os.environ, PYTHONPATH=str(ROOT)), capture_output=True, text=True, timeout=600)
        report = json.loads((out / "report.json").read_text())
        by_area: dict[str, set] = {}
        for r in report["results"]:
            by_area.setdefault(r["area"], set()).add(r["outcome"])
        self.assertEqual(by_area.get("fixtures"), {"pass"}, "fixture cases on real torch.nn")
        # A case passes where the adapter declares all it needs (or fails as its
        # release's expected-failures entry says), else it is unsupported: the
        # CUDA cases on a machine without a GPU, FSDP2's where its probe failed.
        from runners.suite import Suite
        needs = {c.id: set(c.needs) for c in Suite().load_cases()}
        capabilities = set(report["implementation"]["capabilities"])
        for r in report["results"]:
            declared = needs[r["case"]] <= capabilities
            allowed = ({"pass", "xfail"} if r["xfail_reason"] else {"pass"}) if declared else {"unsupported"}
            self.assertIn(r["outcome"], allowed, f"{r['case']}: {r['message']}")

    def test_golden_files_are_current(self) -> None:
        p = subprocess.run([sys.executable, "-m", "runners", "golden", "--check"], cwd=ROOT,
                           env=dict(os.environ, PYTHONPATH=str(ROOT)), capture_output=True, text=True, timeout=600)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)



# -- the new vocabulary of spec/replicate.md and spec/fully_shard.md ----------------
NET = {"name": "Net", "root": "Net", "source": "test_replicate.py::Net",
       "input": {"args": [{"shape": [4, 2], "init": "normal"}]},
       "classes": {"Net": {"members": [{"name": f"fc{i}", "module": {"class": "Linear", "in": 2, "out": 2}}
                                       for i in (1, 2, 3)],
                           "forward": {"params": ["x"],
                                       "body": [{"op": "call", "module": "fc1", "args": ["x"], "as": "h1"},
                                                {"op": "call", "module": "fc2", "args": ["h1"], "as": "h2"},
                                                {"op": "call", "module": "fc3", "args": ["h2"], "as": "out"}],
                                       "return": "out"}}}}
NET_FQNS = ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias", "fc3.weight", "fc3.bias"]


def run_message(steps: list[dict[str, Any]]) -> dict[str, Any]:
    return {"type": "run", "case": {"id": "t.case", "steps": steps, "expect": []}, "fixtures": {"Net": NET},
            "world_size": 1, "rank": 0, "backend": "gloo", "device": "cpu"}


def run_steps(steps: list[dict[str, Any]]) -> dict[str, Any]:
    """One rank, no process group: enough for steps that make no collective."""
    return run_case(run_message(steps), 0, 1)


def run_in_adapter(steps: list[dict[str, Any]]) -> dict[str, Any]:
    """A world-size-1 adapter process with its Gloo process group, as the runner starts it."""
    replies = adapter_lines({"type": "hello", "protocol": 2, "suite_version": "0.1.0", "backend": "gloo",
                             "device": "cpu"}, run_message(steps), {"type": "bye"})
    return replies[1]


class Shard:
    """Stands in for DTensor's Shard placement (named alike)."""

    def __init__(self, dim: int) -> None:
        self.dim = dim


class Replicate:
    pass


class FakeDTensor:
    """What the adapter reads of a DTensor: global shape, placements, the local shard."""

    def __init__(self, local: Any, shape: list[int], placements: tuple = (Shard(0),)) -> None:
        self._local, self.shape, self.placements = local, torch.Size(shape), placements

    def to_local(self) -> Any:
        return self._local

    def full_tensor(self) -> Any:
        return torch.zeros(self.shape)


@unittest.skipIf(torch is None, NO_TORCH)
class Kwargs(unittest.TestCase):
    def convert(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        modules = {"m.fc1": "module fc1", "m.fc2": "module fc2"}
        params = {"m.fc1.weight": "param w", "m.fc2.bias": "param b"}
        return cp.convert_kwargs(kwargs, modules.__getitem__, params.__getitem__)

    def test_references_become_modules_and_a_set_of_parameters(self) -> None:
        out = self.convert({"ignored_modules": ["m.fc1", "m.fc2"], "ignored_params": ["m.fc1.weight", "m.fc2.bias"]})
        self.assertEqual(out, {"ignored_modules": ["module fc1", "module fc2"],
                               "ignored_params": {"param w", "param b"}})

    def test_device_id_int_string_and_list(self) -> None:
        self.assertEqual(self.convert({"device_id": 0})["device_id"], 0)
        self.assertIs(type(self.convert({"device_id": 0})["device_id"]), int)
        self.assertEqual(self.convert({"device_id": "cpu"})["device_id"], torch.device("cpu"))
        self.assertEqual(self.convert({"device_id": ["cpu", 1]})["device_id"], [torch.device("cpu"), 1])

    def test_other_kwargs_pass_through_and_the_case_is_not_changed(self) -> None:
        kwargs = {"bucket_cap_mb": 25, "gradient_as_bucket_view": True, "reshard_after_forward": 2,
                  "ignored_modules": ["m.fc1"]}
        out = self.convert(kwargs)
        self.assertEqual({k: out[k] for k in ("bucket_cap_mb", "gradient_as_bucket_view", "reshard_after_forward")},
                         {"bucket_cap_mb": 25, "gradient_as_bucket_view": True, "reshard_after_forward": 2})
        self.assertEqual(kwargs["ignored_modules"], ["m.fc1"])


@unittest.skipIf(torch is None, NO_TORCH)
class Layout(unittest.TestCase):
    def test_plain_tensor(self) -> None:
        self.assertEqual(cp.tensor_layout(torch.zeros(2, 3)), {"sharded": False, "shape": [2, 3]})

    def test_sharded_tensor_reports_global_and_local_shape(self) -> None:
        t = FakeDTensor(torch.zeros(1, 3), [3, 3])
        self.assertEqual(cp.tensor_layout(t), {"sharded": True, "shape": [3, 3], "local_shape": [1, 3],
                                               "placements": ["Shard(0)"]})

    def test_placement_names_as_the_spec_writes_them(self) -> None:
        self.assertEqual(cp.placement_name(Shard(1)), "Shard(1)")
        self.assertEqual(cp.placement_name(Replicate()), "Replicate()")

    def test_sharded_tensors_are_observed_as_their_local_shard(self) -> None:
        shard = torch.tensor([1.0, 2.0])
        self.assertEqual(encode(FakeDTensor(shard, [4])), encode(shard))
        self.assertIs(cp.local(shard), shard)

    def test_full_tensor_only_for_sharded_tensors(self) -> None:
        plain = torch.ones(2)
        self.assertIs(cp.full_tensor(plain), plain)
        self.assertEqual(cp.full_tensor(FakeDTensor(torch.ones(1), [2])).tolist(), [0.0, 0.0])


@unittest.skipIf(torch is None, NO_TORCH)
class GradStorageGroups(unittest.TestCase):
    def test_views_of_one_flat_bucket_form_one_group(self) -> None:
        model = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2))
        flat = torch.zeros(10)
        model[0].weight.grad = flat[0:4].view(2, 2)
        model[0].bias.grad = torch.zeros(2)
        model[1].weight.grad = flat[4:8].view(2, 2)
        # model[1].bias has no gradient: it is in no group.
        self.assertEqual(cp.grad_storage_groups(model), [["0.weight", "1.weight"], ["0.bias"]])

    def test_groups_in_order_of_their_first_member(self) -> None:
        flat = torch.zeros(4)
        named = [("a", torch.zeros(1)), ("b", flat[:2]), ("c", torch.zeros(1)), ("d", flat[2:])]
        self.assertEqual(cp.storage_groups(named), [["a"], ["b", "d"], ["c"]])

    def test_sharded_gradients_group_by_their_local_shard(self) -> None:
        flat = torch.zeros(4)
        named = [("a", FakeDTensor(flat[:2], [4])), ("b", FakeDTensor(flat[2:], [4]))]
        self.assertEqual(cp.storage_groups(named), [["a", "b"]])

    def test_autograd_gives_every_gradient_its_own_storage(self) -> None:
        model = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2))
        model(torch.ones(1, 2)).sum().backward()
        self.assertEqual(cp.grad_storage_groups(model), [["0.weight"], ["0.bias"], ["1.weight"], ["1.bias"]])


@unittest.skipIf(torch is None, NO_TORCH)
class ReplicateParamNames(unittest.TestCase):
    def model(self) -> Any:
        m = nn.Module()
        m.a = nn.Linear(2, 2)
        m.b = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2))
        m.c = nn.Linear(2, 2)
        return m

    def test_everything_in_named_parameters_order(self) -> None:
        m = self.model()
        self.assertEqual(cp.replicate_param_names(m, set(), lambda _: False), [n for n, _ in m.named_parameters()])

    def test_ignored_and_fully_sharded_modules_are_skipped_with_their_parameters(self) -> None:
        m = self.model()
        m.c.weight = m.a.weight  # shared with an ignored module: replicate ignores it everywhere
        names = cp.replicate_param_names(m, {m.a}, lambda x: x is m.b[1])
        self.assertEqual(names, ["b.0.weight", "b.0.bias", "c.bias"])


@unittest.skipIf(torch is None, NO_TORCH)
class Capabilities(unittest.TestCase):
    def test_declared_by_feature_detection(self) -> None:
        caps = capabilities()
        self.assertEqual("replicate" in caps, HAS_REPLICATE)
        self.assertEqual("fully_shard" in caps, HAS_FULLY_SHARD)
        self.assertEqual("cuda" in caps, torch.cuda.is_available())


@unittest.skipIf(torch is None, NO_TORCH)
class NewSteps(unittest.TestCase):
    def test_mse_loss_and_load_state_dict(self) -> None:
        result = run_steps([
            {"build": {"fixture": "Net", "as": "m", "seed": 0}},
            {"build": {"fixture": "Net", "as": "n", "seed": 1}},
            {"load_state_dict": {"model": "n", "from": "m"}},
            {"observe": {"as": "m_params", "named_parameters": "m"}},
            {"observe": {"as": "n_params", "named_parameters": "n"}},
            {"batch": {"as": "x", "shape": [4, 2]}},
            {"batch": {"as": "t", "shape": [4, 2], "seed": 1}},
            {"mse_loss": {"input": "x", "target": "t", "as": "loss"}},
            {"observe": {"as": "loss", "value": "loss"}},
            {"observe": {"as": "x", "value": "x"}},
            {"observe": {"as": "t", "value": "t"}},
        ])
        self.assertIsNone(result["error"])
        obs = result["observations"]
        self.assertEqual(obs["n_params"], obs["m_params"])
        x, t = (torch.tensor(decode(obs[k])).reshape(4, 2) for k in ("x", "t"))
        self.assertEqual(obs["loss"], encode(torch.nn.functional.mse_loss(x, t)))
        self.assertEqual(obs["loss"]["shape"], [])

    def test_type_name_layouts_full_parameters_and_gradient_storage(self) -> None:
        result = run_steps([
            {"build": {"fixture": "Net", "as": "m"}},
            {"observe": {"as": "type", "type_name": "m"}},
            {"observe": {"as": "sub_type", "type_name": "m.fc1"}},
            {"observe": {"as": "layout", "parameter_layout": "m.fc1"}},
            {"observe": {"as": "sd_layout", "state_dict_layout": "m"}},
            {"observe": {"as": "full", "full_parameters": "m"}},
            {"observe": {"as": "params", "named_parameters": "m"}},
            {"input": {"fixture": "Net", "as": "x"}},
            {"forward": {"model": "m", "input": "x", "as": "y"}},
            {"backward": {"of": "y"}},
            {"observe": {"as": "groups", "grad_storage_groups": "m"}},
            {"zero_grad": {"model": "m.fc1"}},
            {"observe": {"as": "groups_after", "grad_storage_groups": "m"}},
        ])
        self.assertIsNone(result["error"])
        obs = result["observations"]
        self.assertEqual(obs["type"], {"kind": "json", "value": "Net"})
        self.assertEqual(obs["sub_type"], {"kind": "json", "value": "Linear"})
        self.assertEqual(obs["layout"]["value"], {"weight": {"sharded": False, "shape": [2, 2]},
                                                  "bias": {"sharded": False, "shape": [2]}})
        self.assertEqual(list(obs["sd_layout"]["value"]), NET_FQNS)
        self.assertEqual(obs["full"], obs["params"])
        self.assertEqual(obs["groups"]["value"], [[n] for n in NET_FQNS])
        self.assertEqual(obs["groups_after"]["value"], [[n] for n in NET_FQNS[2:]])

    def test_model_steps_on_a_plain_module_fail_naming_their_step(self) -> None:
        result = run_steps([
            {"build": {"fixture": "Net", "as": "m"}},
            {"raises": {"as": "sync", "do": [{"set_requires_gradient_sync": {"model": "m", "value": False}}]}},
            {"raises": {"as": "unshard", "do": [{"unshard": {"model": "m.fc1"}}]}},
            {"raises": {"as": "api", "do": [{"apply": {"api": "nope", "to": "m"}}]}},
            {"raises": {"as": "load", "do": [{"load_state_dict": {"model": "m.fc1", "from": "m"}}]}},
        ])
        obs = result["observations"]
        # Protocol 2: kind, message and step; the runner derives the phase from the step.
        self.assertEqual((obs["sync"]["error"]["kind"], obs["sync"]["error"]["step"]), ("invalid_argument", "1.do.0"))
        self.assertEqual((obs["unshard"]["error"]["kind"], obs["unshard"]["error"]["step"]),
                         ("invalid_argument", "2.do.0"))
        self.assertEqual(obs["api"]["error"]["kind"], "invalid_argument")
        self.assertEqual((obs["load"]["error"]["kind"], obs["load"]["error"]["step"]), ("runtime_error", "4.do.0"))
        self.assertFalse([name for name, o in obs.items() if "phase" in o["error"]])

    @unittest.skipIf(torch is not None and HAS_REPLICATE, "replicate is available: the step is supported")
    def test_builtin_apis_missing_from_this_pytorch_are_unsupported(self) -> None:
        result = run_steps([
            {"build": {"fixture": "Net", "as": "m"}},
            {"raises": {"as": "apply", "do": [{"apply": {"api": "replicate", "to": "m"}}]}},
            {"raises": {"as": "managed", "do": [{"observe": {"as": "x", "managed_parameters":
                                                              {"api": "replicate", "module": "m"}}}]}},
        ])
        obs = result["observations"]
        self.assertEqual((obs["apply"]["error"]["kind"], obs["apply"]["error"]["step"]), ("unsupported", "1.do.0"))
        self.assertEqual(obs["managed"]["error"]["kind"], "unsupported")


def decode(observation: dict[str, Any]) -> list:
    from ccts_common import portable_values as pv
    return pv.decode(observation)[2]


@unittest.skipUnless(HAS_REPLICATE, NO_REPLICATE)
class OnReplicate(unittest.TestCase):
    def test_replicate_bucket_views_and_managed_parameters(self) -> None:
        result = run_in_adapter([
            {"build": {"fixture": "Net", "as": "m"}},
            {"apply": {"api": "replicate", "to": "m", "kwargs": {"gradient_as_bucket_view": True}}},
            {"observe": {"as": "type", "type_name": "m"}},
            {"observe": {"as": "before", "managed_parameters": {"api": "replicate", "module": "m"}}},
            {"input": {"fixture": "Net", "as": "x"}},
            {"forward": {"model": "m", "input": "x", "as": "y"}},
            {"backward": {"of": "y"}},
            {"observe": {"as": "after", "managed_parameters": {"api": "replicate", "module": "m"}}},
            {"observe": {"as": "device_ids", "replicate_device_ids": "m"}},
            {"observe": {"as": "groups", "grad_storage_groups": "m"}},
            {"set_requires_gradient_sync": {"model": "m", "value": False}},
        ])
        self.assertIsNone(result["error"], result)
        obs = result["observations"]
        self.assertEqual(obs["type"]["value"], "DDPNet")
        self.assertEqual(obs["before"], {"kind": "strings", "items": NET_FQNS})
        self.assertEqual(obs["after"], obs["before"])
        self.assertEqual(obs["device_ids"]["value"], None)
        self.assertEqual(obs["groups"]["value"], [NET_FQNS])  # one bucket for six tiny parameters

    def test_ignored_modules_are_not_managed(self) -> None:
        result = run_in_adapter([
            {"build": {"fixture": "Net", "as": "m"}},
            {"apply": {"api": "replicate", "to": "m", "kwargs": {"ignored_modules": ["m.fc1"]}}},
            {"observe": {"as": "before", "managed_parameters": {"api": "replicate", "module": "m"}}},
            {"input": {"fixture": "Net", "as": "x"}},
            {"forward": {"model": "m", "input": "x"}},
            {"observe": {"as": "after", "managed_parameters": {"api": "replicate", "module": "m"}}},
        ])
        self.assertIsNone(result["error"], result)
        self.assertEqual(result["observations"]["before"]["items"], NET_FQNS[2:])
        self.assertEqual(result["observations"]["after"]["items"], NET_FQNS[2:])


@unittest.skipUnless(HAS_FULLY_SHARD, NO_FULLY_SHARD)
class OnFullyShard(unittest.TestCase):
    def test_layout_managed_parameters_and_unshard(self) -> None:
        result = run_in_adapter([
            {"build": {"fixture": "Net", "as": "m"}},
            {"apply": {"api": "fully_shard", "to": "m.fc1"}},
            {"apply": {"api": "fully_shard", "to": "m"}},
            {"observe": {"as": "type", "type_name": "m"}},
            {"observe": {"as": "layout", "parameter_layout": "m.fc1"}},
            {"observe": {"as": "inner", "managed_parameters": {"api": "fully_shard", "module": "m.fc1"}}},
            {"observe": {"as": "outer", "managed_parameters": {"api": "fully_shard", "module": "m"}}},
            {"observe": {"as": "full", "full_parameters": "m"}},
            {"observe": {"as": "params", "named_parameters": "m"}},
            {"unshard": {"model": "m"}},
            {"observe": {"as": "unsharded", "parameter_layout": "m.fc2"}},
            {"reshard": {"model": "m"}},
            {"set_requires_gradient_sync": {"model": "m", "value": False}},
        ])
        self.assertIsNone(result["error"], result)
        obs = result["observations"]
        self.assertEqual(obs["type"]["value"], "FSDPNet")
        self.assertEqual(obs["layout"]["value"]["weight"], {"sharded": True, "shape": [2, 2], "local_shape": [2, 2],
                                                            "placements": ["Shard(0)"]})
        self.assertEqual(obs["inner"], {"kind": "strings", "items": ["weight", "bias"]})
        self.assertEqual(obs["outer"], {"kind": "strings", "items": NET_FQNS[2:]})
        self.assertEqual(obs["full"], obs["params"])  # world size 1: the shard is everything
        self.assertEqual(obs["unsharded"]["value"]["weight"], {"sharded": False, "shape": [2, 2]})

    @unittest.skipUnless(HAS_FULLY_SHARD and "ignored_params" in inspect.signature(cp.fully_shard_api()).parameters,
                         "fully_shard of this PyTorch takes no ignored_params")
    def test_ignored_params_stay_plain_and_unmanaged(self) -> None:
        result = run_in_adapter([
            {"build": {"fixture": "Net", "as": "m"}},
            {"apply": {"api": "fully_shard", "to": "m", "kwargs": {"ignored_params": ["m.fc3.bias"]}}},
            {"observe": {"as": "managed", "managed_parameters": {"api": "fully_shard", "module": "m"}}},
            {"observe": {"as": "layout", "parameter_layout": "m.fc3"}},
        ])
        self.assertIsNone(result["error"], result)
        self.assertEqual(result["observations"]["managed"]["items"], NET_FQNS[:5])
        self.assertEqual(result["observations"]["layout"]["value"]["bias"], {"sharded": False, "shape": [2]})



@unittest.skipIf(torch is None, NO_TORCH)
class Placement(unittest.TestCase):
    """On `device: cuda` every tensor of a fixture is placed, also those Module.to()
    misses; the meta device stands in for CUDA on a machine without a GPU."""

    def test_parameters_buffers_plain_attributes_and_plain_list_modules(self) -> None:
        from runners.adapters.pytorch import fixtures as fx
        from runners.suite import Suite, resolved_fixtures

        suite = Suite()
        meta = torch.device("meta")
        cases = {c.id: c for c in suite.load_cases()}
        for case_id, fixture in (("fixtures.fake_sequential.parameters", "FakeSequential"),
                                 ("contract.fqn.wrapper_rejected", "ToyModel")):
            definition = resolved_fixtures(cases[case_id], suite)[fixture]
            model = fx.build_module(definition, 0, device=meta)
            tensors = list(model.parameters()) + list(model.buffers())
            for module in model.modules():
                for value in vars(module).values():
                    if isinstance(value, torch.Tensor):
                        tensors.append(value)
                    elif isinstance(value, list):
                        tensors += [t for m in value if isinstance(m, nn.Module) for t in m.parameters()]
            self.assertGreater(len(tensors), len(list(model.parameters())), fixture)
            self.assertEqual({t.device for t in tensors}, {meta}, fixture)
            args, kwargs = fx.make_input(definition, 1, meta)
            self.assertEqual({t.device for t in args + list(kwargs.values()) if isinstance(t, torch.Tensor)}, {meta})

    def test_a_missing_backend_is_declared_not_initialized(self) -> None:
        hello = adapter_lines({"type": "hello", "protocol": 2, "suite_version": suite_version(), "backend": "nccl",
                               "device": "cuda"}, {"type": "bye"})[0]
        self.assertEqual(hello["type"], "hello")
        self.assertEqual("nccl" in hello["backends"], torch.cuda.is_available() and
                         torch.distributed.is_nccl_available())
        self.assertEqual(hello["build"]["libtorch"], torch.__version__.split("+")[0])


# -- probing the build at hello (runners/adapters/pytorch/probes.py) -------------------
HELLO = {"type": "hello", "protocol": 2, "suite_version": suite_version(), "backend": "gloo", "device": "cpu"}
# What Debian 13's PyTorch 2.6 (built without libuv) raises from the env:// rendezvous.
LIBUV_MISSING = RuntimeError("use_libuv was requested but PyTorch was build without libuv support")
# Wraps the real init_process_group of the adapter's process like such a build.
WITHOUT_LIBUV = """
import os
import torch.distributed as dist
real_init = dist.init_process_group
def init_process_group(*args, **kwargs):
    if os.environ.get("USE_LIBUV", "1") != "0":
        raise RuntimeError("use_libuv was requested but PyTorch was build without libuv support")
    return real_init(*args, **kwargs)
dist.init_process_group = init_process_group
"""
# fully_shard whose forward raises like FSDP2 of Debian 13's PyTorch 2.6 on the CPU.
FSDP2_WITHOUT_RECORD_EVENT = """
from runners.adapters.pytorch import composable as cp
real_fully_shard = cp.fully_shard_api()
def stream_without_record_event(module, args):
    raise AttributeError("'Stream' object has no attribute 'record_event'")
def fully_shard(module, **kwargs):
    real_fully_shard(module, **kwargs)
    module.register_forward_pre_hook(stream_without_record_event)
    return module
cp.fully_shard_api = lambda: fully_shard
"""


@unittest.skipIf(torch is None, NO_TORCH)
class LibuvFallback(unittest.TestCase):
    """A PyTorch without libuv refuses the TCPStore it is asked for; every rank
    retries once with USE_LIBUV=0, and a failed attempt leaves no group behind."""

    def setUp(self) -> None:
        environ = mock.patch.dict(os.environ)
        environ.start()
        self.addCleanup(environ.stop)
        os.environ.pop("USE_LIBUV", None)
        self.log: list[str] = []

    def patch(self, init: Any, initialized: tuple[bool, ...] = (False,)) -> None:
        answers = iter(initialized)
        for name, fake in (("init_process_group", init),
                           ("is_initialized", lambda: next(answers, False)),
                           ("destroy_process_group", lambda *a, **k: self.log.append("destroy"))):
            patcher = mock.patch.object(torch.distributed, name, fake)
            patcher.start()
            self.addCleanup(patcher.stop)

    def init_without_libuv(self, *args: Any, **kwargs: Any) -> None:
        self.log.append(f"init USE_LIBUV={os.environ.get('USE_LIBUV')}")
        if os.environ.get("USE_LIBUV", "1") != "0":
            raise LIBUV_MISSING

    def test_retries_once_with_use_libuv_0(self) -> None:
        self.patch(self.init_without_libuv)
        self.assertTrue(probes.init_process_group("gloo", 0, 2))
        self.assertEqual(self.log, ["init USE_LIBUV=None", "init USE_LIBUV=0"])
        self.assertEqual(os.environ["USE_LIBUV"], "0")

    def test_a_half_made_group_is_destroyed_before_the_retry(self) -> None:
        self.patch(self.init_without_libuv, initialized=(True,))
        self.assertTrue(probes.init_process_group("gloo", 0, 2))
        self.assertEqual(self.log, ["init USE_LIBUV=None", "destroy", "init USE_LIBUV=0"])

    def test_a_build_with_libuv_initializes_once(self) -> None:
        self.patch(lambda *a, **k: self.log.append("init"))
        self.assertFalse(probes.init_process_group("gloo", 0, 2))
        self.assertEqual(self.log, ["init"])
        self.assertNotIn("USE_LIBUV", os.environ)

    def test_other_errors_are_not_retried(self) -> None:
        def refused(*args: Any, **kwargs: Any) -> None:
            self.log.append("init")
            raise RuntimeError("The client socket has timed out after 60s")
        self.patch(refused)
        with self.assertRaisesRegex(RuntimeError, "timed out"):
            probes.init_process_group("gloo", 1, 2)
        self.assertEqual(self.log, ["init"])
        self.assertNotIn("USE_LIBUV", os.environ)

    def test_only_one_retry(self) -> None:
        def always(*args: Any, **kwargs: Any) -> None:
            self.log.append("init")
            raise LIBUV_MISSING
        self.patch(always)
        with self.assertRaisesRegex(RuntimeError, "without libuv support"):
            probes.init_process_group("gloo", 0, 2)
        self.assertEqual(self.log, ["init", "init"])

    def test_hello_of_a_build_without_libuv(self) -> None:
        replies = adapter_lines(HELLO, run_message([{"build": {"fixture": "Net", "as": "m"}},
                                                    {"observe": {"as": "fqns", "parameter_fqns": "m"}}]),
                                {"type": "bye"}, preamble=WITHOUT_LIBUV, unset=("USE_LIBUV",))
        self.assertEqual([r["type"] for r in replies], ["hello", "result", "bye"], replies)
        self.assertEqual(replies[0]["build"]["probes"], probes.LIBUV_NOTE)
        self.assertEqual(problems(replies[0], "adapter_hello"), [])
        self.assertEqual(replies[1]["observations"]["fqns"]["items"], NET_FQNS)


def problems(message: dict, definition: str) -> list[str]:
    from ccts_common import schemas
    return schemas.problems(message, "adapter-messages.schema.json", definition)


def failing(reason: BaseException, log: list[str]) -> Any:
    def run(device: str, world_size: int) -> None:
        log.append(f"{device}/{world_size}")
        raise reason
    return run


@unittest.skipIf(torch is None, NO_TORCH)
class CapabilityProbes(unittest.TestCase):
    CAPS = ["fixtures", "hooks", "contract", "replicate", "fully_shard"]

    def test_a_probe_that_raises_withholds_its_capabilities_and_says_why(self) -> None:
        log: list[str] = []
        probe = probes.Probe("fully_shard", probes.FSDP2_CAPABILITIES, "a train step",
                             failing(AttributeError("'Stream' object has no attribute 'record_event'\nmore"), log))
        kept, notes = probes.probe_capabilities(self.CAPS, "cpu", 2, (probe,))
        self.assertEqual(kept, ["fixtures", "hooks", "contract", "replicate"])
        self.assertEqual(notes, ["fully_shard withheld: a train step on cpu raised AttributeError: "
                                 "'Stream' object has no attribute 'record_event'"])
        self.assertEqual(log, ["cpu/2"])

    def test_a_passing_probe_keeps_everything(self) -> None:
        log: list[str] = []
        probe = probes.Probe("fully_shard", probes.FSDP2_CAPABILITIES, "a train step",
                             lambda device, ws: log.append(device))
        self.assertEqual(probes.probe_capabilities(self.CAPS, "cuda", 1, (probe,)), (self.CAPS, []))
        self.assertEqual(log, ["cuda"])

    def test_an_undeclared_capability_is_not_probed(self) -> None:
        log: list[str] = []
        probe = probes.Probe("fully_shard", probes.FSDP2_CAPABILITIES, "a train step",
                             failing(RuntimeError("never"), log))
        self.assertEqual(probes.probe_capabilities(["fixtures"], "cpu", 1, (probe,)), (["fixtures"], []))
        self.assertEqual(log, [])

    def test_every_case_that_applies_fully_shard_needs_a_withheld_capability(self) -> None:
        # Withholding FSDP2_CAPABILITIES must make every FSDP2 case unsupported.
        from runners.suite import Suite

        def applies_fully_shard(steps: list) -> bool:
            for step in steps:
                (name, body), = step.items()
                if name == "apply" and body.get("api") == "fully_shard":
                    return True
                if isinstance(body, dict) and isinstance(body.get("do"), list) and applies_fully_shard(body["do"]):
                    return True
            return False

        cases = [c for c in Suite().load_cases() if applies_fully_shard(c.data["steps"])]
        self.assertGreater(len(cases), 20)
        for c in cases:
            self.assertTrue(set(c.needs) & set(probes.FSDP2_CAPABILITIES), c.id)

    @unittest.skipUnless(HAS_FULLY_SHARD, NO_FULLY_SHARD)
    def test_hello_keeps_fully_shard_where_it_trains(self) -> None:
        hello = adapter_lines(HELLO, {"type": "bye"})[0]
        self.assertIn("fully_shard", hello["capabilities"])
        self.assertNotIn("probes", hello["build"])

    @unittest.skipUnless(HAS_FULLY_SHARD, NO_FULLY_SHARD)
    def test_hello_withholds_fully_shard_whose_forward_raises(self) -> None:
        replies = adapter_lines(HELLO, run_message([{"build": {"fixture": "Net", "as": "m"}},
                                                    {"observe": {"as": "fqns", "parameter_fqns": "m"}}]),
                                {"type": "bye"}, preamble=FSDP2_WITHOUT_RECORD_EVENT)
        self.assertEqual([r["type"] for r in replies], ["hello", "result", "bye"], replies)
        hello = replies[0]
        self.assertNotIn("fully_shard", hello["capabilities"])
        self.assertIn("replicate", hello["capabilities"])
        self.assertEqual(hello["build"]["probes"],
                         "fully_shard withheld: fully_shard, forward and backward of a fresh nn.Linear(2, 2) on "
                         "cpu raised AttributeError: 'Stream' object has no attribute 'record_event'")
        self.assertEqual(problems(hello, "adapter_hello"), [])
        self.assertIsNone(replies[1]["error"])  # the session goes on
        self.assertEqual(replies[1]["observations"]["fqns"]["items"], NET_FQNS)

    @unittest.skipUnless(HAS_FULLY_SHARD, NO_FULLY_SHARD)
    def test_the_probe_leaves_no_state_behind(self) -> None:
        # No process group in this process: a world-size-1 mesh needs one, so the
        # probe's own train step is checked in a subprocess; here, what it must not touch.
        preamble = """
import json, sys, torch
from runners.adapters.pytorch import probes
import torch.distributed as dist
probes.init_process_group("gloo", 0, 1)
rng = torch.get_rng_state()
probes.fully_shard_train_step("cpu", 1)
print(json.dumps({"rng_kept": bool(torch.equal(rng, torch.get_rng_state())),
                  "global_hooks": [len(getattr(torch.nn.modules.module, name))
                                   for name in ("_global_forward_pre_hooks", "_global_forward_hooks",
                                                "_global_backward_pre_hooks", "_global_backward_hooks")]}))
sys.exit(0)
"""
        replies = adapter_lines(preamble=preamble)
        self.assertEqual(replies, [{"rng_kept": True, "global_hooks": [0, 0, 0, 0]}])


if __name__ == "__main__":
    unittest.main()
