"""One case's steps (spec/CASES.md and the area chapters) on real PyTorch."""
from __future__ import annotations

import contextlib
import time
from typing import Any, Optional

import torch
import torch.nn as nn

from ccts_common import portable_values as pv

from . import composable as cp
from . import fixtures as fx
from .errors import Unsupported, error_json



def capabilities() -> list[str]:
    caps = ["fixtures"]
    if hasattr(nn.Module, "register_full_backward_pre_hook"):
        caps.append("hooks")
    try:
        from torch.distributed._composable import contract  # noqa: F401
        caps.append("contract")
    except ImportError:
        pass
    try:
        from torch.distributed._tools.mod_tracker import ModTracker  # noqa: F401
        caps += ["mod_tracker", "checkpoint"]
    except ImportError:
        pass
    caps += [name for name in cp.BUILTIN_APIS if cp.builtin_api(name) is not None]
    if torch.cuda.is_available():
        caps.append("cuda")
    return caps


# Device meshes of this session by (device, shape, names): see CaseRun.mesh.
SESSION_MESHES: dict[tuple, Any] = {}
# Steps one case may run, each repetition counted (spec/CASES.md).
MAX_STEPS = 10000


class StepError(Exception):
    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__(error["message"])
        self.error = error


def encode(t: torch.Tensor) -> dict[str, Any]:
    # A sharded tensor is observed as this rank's shard (spec/CASES.md).
    t = cp.local(t).detach().to("cpu").contiguous()
    names = {torch.float32: "float32", torch.float64: "float64", torch.float16: "float16",
             torch.bfloat16: "bfloat16", torch.int64: "int64", torch.int32: "int32", torch.bool: "bool"}
    dtype = names[t.dtype]
    values = t.float().flatten().tolist() if dtype == "bfloat16" else t.flatten().tolist()
    return pv.encode(dtype, list(t.shape), values)


class CaseRun:
    def __init__(self, message: dict[str, Any], rank: int, world_size: int) -> None:
        self.case = message["case"]
        self.fixtures = message.get("fixtures") or {}
        self.rank = rank
        self.world_size = world_size
        self.device = message.get("device", "cpu")
        # Where models and inputs live: fixtures are generated on the CPU (the same
        # bits everywhere), then placed (spec/ADAPTERS.md, "Where a case runs").
        self.placement = torch.device("cuda", torch.cuda.current_device()) if self.device == "cuda" \
            else torch.device("cpu")
        self.models: dict[str, nn.Module] = {}
        self.values: dict[str, Any] = {}
        self.inputs: dict[str, tuple[list, dict]] = {}
        self.observations: dict[str, Any] = {}
        self.steps_run = 0
        self.probes: list[str] = []
        self.apis: dict[str, Any] = {}
        self.trackers: dict[str, Any] = {}
        self.events: dict[str, list] = {}
        self.with_parents: dict[str, bool] = {}  # trackers whose hook events carry the whole parents set
        self.active: list[str] = []
        self.groups: list[Any] = []  # process groups the case created
        self.handles: list[Any] = []  # global hooks the case registered
        self.step_index = 0

    def execute(self) -> Optional[dict[str, Any]]:
        try:
            self.run_steps(self.case["steps"], "")
        except StepError as e:
            return e.error
        finally:
            self.release()
        return None

    def release(self) -> None:
        """What the case made that lives outside its models: global hooks, process groups."""
        import torch.distributed as dist
        for handle in self.handles:  # nothing a case installed outlives it
            handle.remove()
        self.handles.clear()
        self.models.clear()  # modules holding a group go first
        for group in self.groups:
            dist.destroy_process_group(group)
        self.groups.clear()

    def run_steps(self, steps: list, path: str) -> None:
        for i, step in enumerate(steps):
            step_path = f"{path}.{i}" if path else str(i)
            (name, body), = step.items()
            self.steps_run += 1
            if self.steps_run > MAX_STEPS:  # spec/CASES.md: a bounded case (nested repeats multiply)
                raise StepError(error_json(ValueError(f"the case runs more than {MAX_STEPS} steps, counting each "
                                                      "repetition (spec/CASES.md)"), step_path))
            try:
                getattr(self, "step_" + name, self.unknown(name))(body, step_path)
            except StepError:
                raise
            except BaseException as e:  # noqa: BLE001 - every error is reported, none lost
                if isinstance(e, (KeyboardInterrupt, SystemExit)):
                    raise
                raise StepError(error_json(e, step_path)) from None

    def unknown(self, name: str):
        def fail(body: Any, path: str) -> None:
            raise Unsupported(f"step '{name}' is not supported by the PyTorch adapter")
        return fail

    # -- fixtures and values ----------------------------------------------
    def seed(self, body: dict[str, Any]) -> int:
        seed = body.get("seed", 0)
        return self.step_index if seed == "step" else self.rank if seed == "rank" else int(seed)

    def step_build(self, body: dict[str, Any], path: str) -> None:
        model = fx.build_module(self.fixture(body["fixture"]), self.seed(body), self.on_probe,
                                self.checkpoint, self.placement)
        self.models[body["as"]] = model.to("meta") if body.get("device") == "meta" else model

    def step_to_empty(self, body: dict[str, Any], path: str) -> None:
        self.module(body["model"]).to_empty(device=self.placement)

    def step_init_parameters(self, body: dict[str, Any], path: str) -> None:
        full = dict(fx.build_module(self.fixture(body["fixture"]), self.seed(body), device=self.placement)
                    .named_parameters())
        with torch.no_grad():
            for name, p in self.module(body["model"]).named_parameters():
                if name not in full:
                    raise ValueError(f"init_parameters: fixture {body['fixture']} has no parameter '{name}'")
                cp.local(p).copy_(cp.shard_of(p, full[name]))

    def step_copy(self, body: dict[str, Any], path: str) -> None:
        import copy
        self.models[body["as"]] = copy.deepcopy(self.module(body["from"]))

    def step_input(self, body: dict[str, Any], path: str) -> None:
        args, kwargs = fx.make_input(self.fixture(body["fixture"]), self.seed(body), self.placement)
        self.inputs[body["as"]] = (args, kwargs)
        self.values[body["as"]] = args[0] if len(args) == 1 and not kwargs else tuple(args)

    def step_batch(self, body: dict[str, Any], path: str) -> None:
        shape = [self.world_size if d == "world_size" else d for d in body["shape"]]
        stream = pv.fnv1a64(body.get("stream", body["as"]))
        if body.get("dist", "uniform") == "normal":
            flat = pv.normal(shape, self.seed(body), stream)
        else:
            flat = pv.uniform(shape, body.get("low", -1.0), body.get("high", 1.0), self.seed(body), stream)
        t = torch.tensor(flat, dtype=torch.float32).reshape(shape).to(self.placement)
        self.values[body["as"]] = t.requires_grad_(True) if body.get("requires_grad") else t

    def step_slice(self, body: dict[str, Any], path: str) -> None:
        whole = self.values[body["from"]]
        dim = body.get("dim", 0)
        # by rank: one chunk per rank; by {subgroups_of: n}: one per group of n ranks
        size = body["by"]["subgroups_of"] if isinstance(body.get("by"), dict) else 1
        if size < 1 or self.world_size % size:
            raise ValueError(f"slice: subgroups_of {size} does not divide the world size {self.world_size}")
        chunks, index = self.world_size // size, self.rank // size
        if whole.shape[dim] % chunks:
            raise ValueError(f"slice: dimension {dim} of size {whole.shape[dim]} does not split into "
                             f"{chunks} equal chunks")
        chunk = whole.shape[dim] // chunks
        self.values[body["as"]] = whole.narrow(dim, index * chunk, chunk).clone()

    def step_cast(self, body: dict[str, Any], path: str) -> None:
        self.values[body["as"]] = self.values[body["from"]].to(getattr(torch, body["dtype"]))

    def step_to_dtype(self, body: dict[str, Any], path: str) -> None:
        self.module(body["model"]).to(getattr(torch, body["dtype"]))

    def step_forward(self, body: dict[str, Any], path: str) -> None:
        args, kwargs = ([], {})
        if "input" in body:
            args, kwargs = self.inputs[body["input"]]
            args, kwargs = list(args), dict(kwargs)
        args += [self.values[a] for a in body.get("args", [])]
        kwargs.update({k: self.values[v] for k, v in (body.get("kwargs") or {}).items()})
        with torch.no_grad() if body.get("no_grad") else contextlib.nullcontext():
            out = self.module(body["model"])(*args, **kwargs)
        if "as" in body:
            self.values[body["as"]] = out

    def step_call_method(self, body: dict[str, Any], path: str) -> None:
        module = self.module(body["model"])
        out = getattr(module, body["method"])(*[self.values[a] for a in body.get("args", [])])
        if "as" in body:
            self.values[body["as"]] = out

    def step_backward(self, body: dict[str, Any], path: str) -> None:
        of = body["of"]
        value = [self.values[v] for v in of] if isinstance(of, list) else self.values[of]
        if "item" in body:
            value = value[body["item"]]
        tensors = [t for t in flatten(value) if isinstance(t, torch.Tensor)]
        if not tensors:
            raise ValueError("backward: the value holds no tensor")
        loss = tensors[0].sum()
        for t in tensors[1:]:
            loss = loss + t.sum()
        loss.backward()

    def step_zero_grad(self, body: dict[str, Any], path: str) -> None:
        self.module(body["model"]).zero_grad(set_to_none=body.get("set_to_none", True))

    def step_probe_post_accumulate_grad(self, body: dict[str, Any], path: str) -> None:
        for name, p in self.module(body["model"]).named_parameters():
            p.register_post_accumulate_grad_hook(lambda _p, name=name: self.on_probe(f"post_accumulate_grad:{name}"))

    def step_sgd_in_backward(self, body: dict[str, Any], path: str) -> None:
        lr = body["lr"]

        def step(p: torch.Tensor) -> None:
            with torch.no_grad():
                p.add_(p.grad, alpha=-lr)
            p.grad = None
        for p in self.module(body["model"]).parameters():
            p.register_post_accumulate_grad_hook(step)

    def step_sgd_step(self, body: dict[str, Any], path: str) -> None:
        with torch.no_grad():
            for p in self.module(body["model"]).parameters():
                if p.grad is not None:
                    p.add_(p.grad, alpha=-body["lr"])

    def step_mse_loss(self, body: dict[str, Any], path: str) -> None:
        self.values[body["as"]] = torch.nn.functional.mse_loss(self.values[body["input"]], self.values[body["target"]])

    def step_load_state_dict(self, body: dict[str, Any], path: str) -> None:
        self.module(body["model"]).load_state_dict(self.module(body["from"]).state_dict())

    def step_state_dict(self, body: dict[str, Any], path: str) -> None:
        self.values[body["as"]] = self.module(body["model"]).state_dict()

    def step_set_requires_grad(self, body: dict[str, Any], path: str) -> None:
        if "model" in body:
            self.module(body["model"]).requires_grad_(body["value"])
        for ref in body.get("parameters", []):
            self.parameter(ref).requires_grad_(body["value"])

    def step_clip_grad_norm(self, body: dict[str, Any], path: str) -> None:
        norm = torch.nn.utils.clip_grad_norm_(self.module(body["model"]).parameters(), body["max_norm"])
        if "as" in body:
            self.values[body["as"]] = cp.full_tensor(norm)

    def step_to_device(self, body: dict[str, Any], path: str) -> None:
        self.module(body["model"]).to(torch.device(body["device"]))

    def step_raises(self, body: dict[str, Any], path: str) -> None:
        recorded = None
        try:
            self.run_steps(body["do"], path + ".do")
        except StepError as e:
            recorded = e.error
        self.observations[body["as"]] = {"kind": "error", "error": recorded}

    def step_repeat(self, body: dict[str, Any], path: str) -> None:
        outer = self.step_index
        for i in range(body["times"]):
            self.step_index = i
            self.run_steps(body["do"], path + ".do")
        self.step_index = outer

    def step_global_hooks(self, body: dict[str, Any], path: str) -> None:
        from torch.nn.modules import module as nn_module
        events: list = []
        self.observations[body["as"]] = {"kind": "json", "value": events}

        seen: list = []  # modules by first appearance: their `id`

        def record(hook: str, module: nn.Module) -> None:
            if not any(m is module for m in seen):
                seen.append(module)
            index = next(i for i, m in enumerate(seen) if m is module)
            event = {"hook": hook, "module": type(module).__name__, "id": index}
            if self.active:  # inside `track`: what the innermost tracker holds at this moment
                event["parents"] = sorted(self.trackers[self.active[-1]].parents)
            events.append(event)

        def recorder(hook: str) -> Any:
            return lambda module, *rest: record(hook, module)
        self.handles += [nn_module.register_module_forward_pre_hook(recorder("forward_pre")),
                         nn_module.register_module_forward_hook(recorder("forward")),
                         nn_module.register_module_full_backward_pre_hook(recorder("backward_pre")),
                         nn_module.register_module_full_backward_hook(recorder("backward"))]

    def step_delete(self, body: dict[str, Any], path: str) -> None:
        del self.models[body["model"]]

    # -- observations ------------------------------------------------------
    def step_observe(self, body: dict[str, Any], path: str) -> None:
        (kind, ref), = ((k, v) for k, v in body.items() if k != "as")
        handler = getattr(self, "observe_" + kind, None)
        if handler is None:
            raise Unsupported(f"observe: unknown kind '{kind}'")
        self.observations[body["as"]] = handler(ref)

    def observe_named_parameters(self, ref: str) -> dict[str, Any]:
        return named(self.module(ref).named_parameters())

    def observe_parameter_fqns(self, ref: str) -> dict[str, Any]:
        return strings(n for n, _ in self.module(ref).named_parameters())

    def observe_named_buffers(self, ref: str) -> dict[str, Any]:
        return named(self.module(ref).named_buffers())

    def observe_buffer_fqns(self, ref: str) -> dict[str, Any]:
        return strings(n for n, _ in self.module(ref).named_buffers())

    def observe_state_dict(self, ref: str) -> dict[str, Any]:
        return named(self.module(ref).state_dict().items())

    def observe_state_dict_keys(self, ref: str) -> dict[str, Any]:
        return strings(self.module(ref).state_dict().keys())

    def observe_module_fqns(self, ref: str) -> dict[str, Any]:
        return strings(n for n, _ in self.module(ref).named_modules())

    def observe_parameter_shapes(self, ref: str) -> dict[str, Any]:
        return as_json({n: list(p.shape) for n, p in self.module(ref).named_parameters()})

    def observe_grads(self, ref: str) -> dict[str, Any]:
        return named((n, p.grad) for n, p in self.module(ref).named_parameters() if p.grad is not None)

    def observe_value(self, ref: str) -> dict[str, Any]:
        return observe_value(self.values[ref])

    def observe_probes(self, ref: Any) -> dict[str, Any]:
        return strings(self.probes)

    def observe_tracker_events(self, ref: str) -> dict[str, Any]:
        return as_json(self.events[ref])

    def observe_tracker_state(self, ref: str) -> dict[str, Any]:
        return as_json(self.tracker_state(ref))

    def observe_registry(self, ref: str) -> dict[str, Any]:
        registry = cp.get_registry(self.module(ref))
        return as_json(None if registry is None else list(registry))

    def observe_registry_identity(self, refs: list[str]) -> dict[str, Any]:
        registries = [cp.get_registry(self.module(m)) for m in refs]
        flat = identities([item for r in registries if r is not None for item in r.values()])
        out, k = [], 0
        for r in registries:
            if r is None:
                out.append(None)
            else:
                out.append(flat[k:k + len(r)])
                k += len(r)
        return as_json(out)

    def observe_state_identity(self, ref: dict[str, Any]) -> dict[str, Any]:
        api = self.api(ref["api"])
        return as_json(identities([api.state(self.module(m)) for m in ref["modules"]]))

    def observe_state(self, ref: dict[str, Any]) -> dict[str, Any]:
        state = self.api(ref["api"]).state(self.module(ref["module"]))
        return as_json(None if state is None else getattr(state, ref["key"], None))

    def observe_state_type(self, ref: dict[str, Any]) -> dict[str, Any]:
        state = self.api(ref["api"]).state(self.module(ref["module"]))
        return as_json(None if state is None else type(state).__name__)

    def observe_type_name(self, ref: str) -> dict[str, Any]:
        return as_json(type(self.module(ref)).__name__)

    def observe_replicate_device_ids(self, ref: str) -> dict[str, Any]:
        return as_json(cp.replicate_device_ids(self.module(ref)))

    def observe_grad_storage_groups(self, ref: str) -> dict[str, Any]:
        return as_json(cp.grad_storage_groups(self.module(ref)))

    def observe_parameter_layout(self, ref: str) -> dict[str, Any]:
        return as_json({n: cp.tensor_layout(p) for n, p in self.module(ref).named_parameters()})

    def observe_grad_layout(self, ref: str) -> dict[str, Any]:
        return as_json({n: cp.tensor_layout(p.grad) for n, p in self.module(ref).named_parameters()
                        if p.grad is not None})

    def observe_contiguity(self, ref: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for n, p in self.module(ref).named_parameters():
            out[n] = {"parameter": cp.is_contiguous(p)}
            if p.grad is not None:
                out[n]["grad"] = cp.is_contiguous(p.grad)
        return as_json(out)

    def observe_state_dict_layout(self, ref: str) -> dict[str, Any]:
        return as_json({k: cp.tensor_layout(v) for k, v in self.module(ref).state_dict().items()})

    def observe_full_parameters(self, ref: str) -> dict[str, Any]:
        with torch.no_grad():
            return named([(n, cp.full_tensor(p)) for n, p in self.module(ref).named_parameters()])

    def observe_full_state_dict(self, ref: str) -> dict[str, Any]:
        with torch.no_grad():
            return named([(k, cp.full_tensor(v)) for k, v in self.module(ref).state_dict().items()])

    def observe_managed_parameters(self, ref: dict[str, Any]) -> dict[str, Any]:
        return observe_managed(ref["api"], self.module(ref["module"]))

    def module(self, ref: str) -> nn.Module:
        head, _, rest = ref.partition(".")
        module = self.models[head]
        return module.get_submodule(rest) if rest else module

    def fixture(self, name: str) -> dict[str, Any]:
        if name not in self.fixtures:
            raise ValueError(f"fixture '{name}' was not sent with the case")
        return self.fixtures[name]

    # -- checkpoint, trackers and test APIs --------------------------------
    def checkpoint(self, module: nn.Module, args: list) -> Any:
        from torch.utils.checkpoint import checkpoint
        return checkpoint(module, *args, use_reentrant=False, preserve_rng_state=True)

    def on_probe(self, name: str) -> None:
        self.probes.append(name)
        if self.active:
            self.events[self.active[-1]].append({**self.tracker_state(self.active[-1]), "probe": name})

    def tracker_state(self, name: str) -> dict[str, Any]:
        t = self.trackers[name]
        return {"parents": sorted(t.parents), "is_bw": t.is_bw}

    def step_tracker(self, body: dict[str, Any], path: str) -> None:
        from torch.distributed._tools.mod_tracker import ModTracker
        self.trackers[body["as"]] = ModTracker()
        self.events[body["as"]] = []
        self.with_parents[body["as"]] = bool(body.get("record_parents"))
        if body.get("record_hooks"):
            self.register_recording_hooks(body["as"], ["pre_fw", "post_fw", "pre_bw", "post_bw"], body.get("raising", []))

    def register_recording_hooks(self, name: str, kinds: list[str], raising: list[str] = ()) -> None:
        mt = self.trackers[name]

        def record(hook: str, module: Optional[nn.Module]) -> None:
            fqn = mt.get_known_fqn(module) if module is not None else None
            event = {"hook": hook, "fqn": fqn, "in_parents": fqn in mt.parents, "is_bw": mt.is_bw}
            if self.with_parents[name]:
                event["parents"] = sorted(mt.parents)
            self.events[name].append(event)
            if hook in raising:
                raise RuntimeError(f"user {hook} hook raised")

        hooks = {"pre_fw": lambda m, i: record("pre_fw", m), "post_fw": lambda m, i, o: record("post_fw", m),
                 "pre_bw": lambda m, g: record("pre_bw", m), "post_bw": lambda m, g: record("post_bw", m)}
        mt.register_user_hooks(*(hooks[k] if k in kinds else None for k in ("pre_fw", "post_fw", "pre_bw", "post_bw")))

    def step_register_user_hooks(self, body: dict[str, Any], path: str) -> None:
        self.register_recording_hooks(body["tracker"], body["hooks"])

    def step_clear_user_hooks(self, body: dict[str, Any], path: str) -> None:
        self.trackers[body["tracker"]].clear_user_hooks()

    def step_track(self, body: dict[str, Any], path: str) -> None:
        self.active.append(body["tracker"])
        try:
            with self.trackers[body["tracker"]]:
                self.run_steps(body["do"], path + ".do")
        finally:
            self.active.pop()

    def step_define_api(self, body: dict[str, Any], path: str) -> None:
        from .test_api import make_test_api
        self.apis[body["name"]] = make_test_api(body, self.observations)

    def api(self, name: str) -> Any:
        """A define_api test API of this case, else PyTorch's replicate or fully_shard."""
        if name in self.apis:
            return self.apis[name]
        if name in cp.BUILTIN_APIS:
            api = cp.builtin_api(name)
            if api is None:
                raise Unsupported(f"{name} is not available in PyTorch {torch.__version__}")
            return api
        raise ValueError(f"API '{name}' is neither defined by define_api nor built in")

    def step_apply(self, body: dict[str, Any], path: str) -> None:
        to = body["to"]
        api = self.api(body["api"])
        target = [self.module(r) for r in to] if isinstance(to, list) else self.module(to)
        kwargs = cp.convert_kwargs(body.get("kwargs") or {}, self.module, self.parameter, self.subgroup, self.mesh)
        if body["api"] == "fully_shard" and body["api"] not in self.apis and cp.cpu_mesh_needed(self.device):
            kwargs.setdefault("mesh", cp.whole_world_mesh("cpu", self.world_size))
        returned = api(target, **kwargs)
        if "as" in body and isinstance(returned, nn.Module):
            self.models[body["as"]] = returned

    def subgroup(self, size: int) -> Any:
        """This rank's group of dist.new_subgroups(size); destroyed when the case ends."""
        import torch.distributed as dist
        group, groups = dist.new_subgroups(group_size=size)
        self.groups.extend(groups)
        return group

    def mesh(self, spec: dict[str, Any]) -> Any:
        """init_device_mesh(shape, mesh_dim_names=names) (or DeviceMesh.from_group), or its
        sub-mesh `dim`. A mesh of each shape, names, instance and way of making is made
        once per session and kept, as a program makes it once: DTensor caches what it
        derives from an equal mesh, so a mesh whose groups were destroyed would poison
        later cases."""
        shape = tuple(self.world_size if size == "world_size" else size for size in spec["shape"])
        key = (self.placement.type, shape, tuple(spec.get("names") or ()), spec.get("instance"),
               bool(spec.get("from_groups")))
        if key not in SESSION_MESHES:
            SESSION_MESHES[key] = cp.device_mesh(self.placement.type, {**spec, "shape": shape})
        mesh = SESSION_MESHES[key]
        return mesh[spec["dim"]] if "dim" in spec else mesh

    def step_distribute_value(self, body: dict[str, Any], path: str) -> None:
        from torch.distributed.tensor import DTensor, Replicate
        mesh = self.mesh(body["mesh"])
        self.values[body["as"]] = DTensor.from_local(self.values[body["from"]], mesh, [Replicate()] * mesh.ndim,
                                                     run_check=False)

    def step_broadcast(self, body: dict[str, Any], path: str) -> None:
        import itertools
        import torch.distributed as dist
        group = self.mesh(body["mesh"]).get_group() if "mesh" in body else dist.group.WORLD
        src = dist.get_process_group_ranks(group)[0]
        module = self.module(body["model"])
        for tensor in itertools.chain(module.parameters(), module.buffers()):
            local = tensor.to_local() if cp.is_dtensor(tensor) else tensor
            dist.broadcast(local.detach(), src=src, group=group)

    def step_distribute_module(self, body: dict[str, Any], path: str) -> None:
        cp.distribute_module(self.module(body["model"]), self.mesh(body["mesh"]), body.get("placements") or {})

    def parameter(self, ref: str) -> nn.Parameter:
        """`model.<path>.<name>`: a parameter of a model or of one of its submodules."""
        head, _, rest = ref.partition(".")
        if not rest:
            raise ValueError(f"'{ref}' names a model, not a parameter (model.<path>.<name>)")
        return self.models[head].get_parameter(rest)

    def step_set_requires_gradient_sync(self, body: dict[str, Any], path: str) -> None:
        module = self.module(body["model"])
        if "recurse" in body:
            module.set_requires_gradient_sync(body["value"], recurse=body["recurse"])
        else:
            module.set_requires_gradient_sync(body["value"])

    # FSDPModule's setters (spec/fully_shard.md): the step is the method, `value` its argument.
    def step_set_reshard_after_forward(self, body: dict[str, Any], path: str) -> None:
        self.module(body["model"]).set_reshard_after_forward(body["value"], recurse=body.get("recurse", True))

    def step_set_reshard_after_backward(self, body: dict[str, Any], path: str) -> None:
        self.module(body["model"]).set_reshard_after_backward(body["value"], recurse=body.get("recurse", True))

    def step_set_reduce_scatter_max_input_buffers(self, body: dict[str, Any], path: str) -> None:
        self.module(body["model"]).set_reduce_scatter_max_input_buffers(body["value"], recurse=body.get("recurse", True))

    def step_set_is_last_backward(self, body: dict[str, Any], path: str) -> None:
        self.module(body["model"]).set_is_last_backward(body["value"])

    def step_set_all_reduce_hook(self, body: dict[str, Any], path: str) -> None:
        import torch.distributed as dist
        group = self.mesh(body["mesh"]).get_group() if "mesh" in body else dist.group.WORLD
        op = dist.ReduceOp.AVG if body["op"] == "avg" else dist.ReduceOp.SUM
        self.module(body["model"]).set_all_reduce_hook(lambda output: dist.all_reduce(output, group=group, op=op))

    def step_set_gradient_divide_factor(self, body: dict[str, Any], path: str) -> None:
        self.module(body["model"]).set_gradient_divide_factor(body["value"])

    def step_set_force_sum_reduction_for_comms(self, body: dict[str, Any], path: str) -> None:
        self.module(body["model"]).set_force_sum_reduction_for_comms(body["value"])

    def step_set_modules_to_forward_prefetch(self, body: dict[str, Any], path: str) -> None:
        self.module(body["model"]).set_modules_to_forward_prefetch([self.module(m) for m in body["modules"]])

    def step_set_modules_to_backward_prefetch(self, body: dict[str, Any], path: str) -> None:
        self.module(body["model"]).set_modules_to_backward_prefetch([self.module(m) for m in body["modules"]])

    def step_register_fsdp_forward_method(self, body: dict[str, Any], path: str) -> None:
        try:
            from torch.distributed.fsdp import register_fsdp_forward_method
        except ImportError:  # before 2.6
            from torch.distributed._composable.fsdp import register_fsdp_forward_method  # type: ignore[no-redef]
        register_fsdp_forward_method(self.module(body["model"]), body["method"])

    def step_count_collectives(self, body: dict[str, Any], path: str) -> None:
        mode = cp.comm_debug_mode()
        with mode:
            self.run_steps(body["do"], path + ".do")
        self.observations[body["as"]] = as_json(cp.collective_counts(mode.get_comm_counts()))

    def step_register_comm_hook(self, body: dict[str, Any], path: str) -> None:
        self.module(body["model"]).register_comm_hook(None, cp.comm_hook(body["hook"]))

    def step_unshard(self, body: dict[str, Any], path: str) -> None:
        if body.get("async_op"):
            handle = self.module(body["model"]).unshard(async_op=True)
            if handle is None or not callable(getattr(handle, "wait", None)):
                raise TypeError(f"unshard(async_op=True) returned {handle!r}, not a handle to wait on")
            handle.wait()
            return
        handle = self.module(body["model"]).unshard()
        if handle is not None:  # an async handle (PyTorch returns None when it waited itself)
            handle.wait()

    def step_reshard(self, body: dict[str, Any], path: str) -> None:
        self.module(body["model"]).reshard()

    def step_reset_iter_state(self, body: dict[str, Any], path: str) -> None:
        self.module(body["model"]).reset_iter_state()


def named(items: Any) -> dict[str, Any]:
    return {"kind": "named_tensors", "items": [[n, encode(t)] for n, t in items]}


def strings(items: Any) -> dict[str, Any]:
    return {"kind": "strings", "items": list(items)}


def as_json(value: Any) -> dict[str, Any]:
    return {"kind": "json", "value": value}


def flatten(value: Any) -> list:
    if isinstance(value, dict):
        return [x for v in value.values() for x in flatten(v)]
    if isinstance(value, (list, tuple)):
        return [x for v in value for x in flatten(v)]
    return [value]


def identities(objects: list) -> list:
    seen: list = []
    out = []
    for obj in objects:
        if obj is None:
            out.append(None)
            continue
        for i, s in enumerate(seen):
            if s is obj:
                out.append(i)
                break
        else:
            seen.append(obj)
            out.append(len(seen) - 1)
    return out


def observe_value(value: Any) -> dict[str, Any]:
    if isinstance(value, torch.Tensor):
        return encode(value)
    if isinstance(value, (dict, list, tuple)):
        items: list = []

        def walk(v: Any, p: str) -> None:
            join = lambda k: f"{p}.{k}" if p else str(k)  # noqa: E731
            if isinstance(v, torch.Tensor):
                items.append([p, encode(v)])
            elif isinstance(v, dict):
                for k, x in v.items():
                    walk(x, join(k))
            elif isinstance(v, (list, tuple)):
                for i, x in enumerate(v):
                    walk(x, join(i))
        walk(value, "")
        return {"kind": "named_tensors", "items": items}
    return {"kind": "json", "value": value}


def observe_managed(api: str, module: nn.Module) -> dict[str, Any]:
    if api == "replicate":
        return strings(cp.replicate_managed(module))
    if api == "fully_shard":
        names = cp.fully_shard_managed(module)
        return as_json(None) if names is None else strings(names)
    raise ValueError(f"managed_parameters: api must be replicate or fully_shard, not '{api}'")


def run_case(message: dict[str, Any], rank: int, world_size: int) -> dict[str, Any]:
    start = time.monotonic()
    run = CaseRun(message, rank, world_size)
    error = run.execute()
    result = {"type": "result", "case": message["case"].get("id", ""), "rank": rank,
              "observations": run.observations, "error": error, "duration_s": time.monotonic() - start}
    return result
