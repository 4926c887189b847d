"""PyTorch's built-in composable APIs (spec/replicate.md, spec/fully_shard.md):
finding them, converting a case's kwargs for them, and reading what they did.

Everything that needs PyTorch 2.x is imported lazily, so this module (and its
pure helpers, tested with plain tensors and fakes) loads on PyTorch 1.13 too."""
from __future__ import annotations

from typing import Any, Callable, Iterable, Optional

import torch
import torch.nn as nn

BUILTIN_APIS = ("replicate", "fully_shard")


# -- finding the APIs (feature detection, never version strings) -------------
def replicate_api() -> Optional[Callable[..., Any]]:
    try:
        from torch.distributed._composable.replicate import replicate
    except Exception:  # noqa: BLE001 - ImportError, or a torch built without distributed
        return None
    return replicate


def fully_shard_api() -> Optional[Callable[..., Any]]:
    # FSDP2: public since 2.6; torch.distributed._composable.fsdp before. The older
    # torch.distributed._composable.fully_shard is FSDP1-based and not the API of the spec.
    try:
        from torch.distributed.fsdp import fully_shard
        return fully_shard
    except Exception:  # noqa: BLE001
        pass
    try:
        from torch.distributed._composable.fsdp import fully_shard
    except Exception:  # noqa: BLE001
        return None
    return fully_shard


def builtin_api(name: str) -> Optional[Callable[..., Any]]:
    if name == "replicate":
        return replicate_api()
    if name == "fully_shard":
        return fully_shard_api()
    return None


def accelerator_available() -> bool:
    accelerator = getattr(torch, "accelerator", None)
    if accelerator is not None and hasattr(accelerator, "is_available"):
        return bool(accelerator.is_available())
    return torch.cuda.is_available()


def cpu_mesh_needed(case_device: str) -> bool:
    """fully_shard's default mesh is on the accelerator when there is one; a CPU case
    on such a machine must name a CPU mesh."""
    return case_device == "cpu" and accelerator_available()


def whole_world_mesh(device_type: str, world_size: int) -> Any:
    try:
        from torch.distributed.device_mesh import init_device_mesh
    except ImportError:  # before 2.2
        from torch.distributed._tensor.device_mesh import init_device_mesh  # type: ignore[no-redef]
    return init_device_mesh(device_type, (world_size,))


# -- kwargs of apply -----------------------------------------------------------
def convert_device_id(value: Any) -> Any:
    """An integer stays an int, a string is a torch.device, a list is a list of those
    (not a valid device_id: the API must reject it, so it is passed as it is)."""
    if isinstance(value, list):
        return [convert_device_id(v) for v in value]
    if isinstance(value, str):
        return torch.device(value)
    return value


def convert_kwargs(kwargs: dict[str, Any], module_of: Callable[[str], nn.Module],
                   parameter_of: Callable[[str], nn.Parameter],
                   subgroup_of: Callable[[int], Any] = lambda n: None,
                   mesh_of: Callable[[dict], Any] = lambda spec: None) -> dict[str, Any]:
    """A case's `apply.kwargs` as the Python call takes them; references become objects."""
    out: dict[str, Any] = {}
    for key, value in kwargs.items():
        if key == "process_group" and isinstance(value, dict):
            out[key] = subgroup_of(value["subgroups_of"])
            continue
        if key == "mesh":
            out[key] = mesh_of(value)
            continue
        if key == "shard_placement_fn":
            out[key] = shard_placement_fn(value)
            continue
        if key == "mp_policy":
            out[key] = mp_policy(value)
            continue
        if key == "dp_mesh_dims":
            out[key] = dp_mesh_dims(value)
            continue
        if key == "ignored_modules" and isinstance(value, list):
            out[key] = [module_of(ref) for ref in value]
        elif key == "ignored_params" and isinstance(value, list):
            out[key] = {parameter_of(ref) for ref in value}
        elif key == "device_id":
            out[key] = convert_device_id(value)
        else:
            out[key] = value
    return out


def device_mesh(device_type: str, spec: dict[str, Any]) -> Any:
    """`mesh: {shape, names, from_groups}` of spec/fully_shard.md as init_device_mesh
    builds it, or DeviceMesh.from_group."""
    try:
        from torch.distributed.device_mesh import init_device_mesh
    except ImportError:  # before 2.2
        from torch.distributed._tensor.device_mesh import init_device_mesh  # type: ignore[no-redef]
    names = spec.get("names")
    shape = tuple(spec["shape"])
    if spec.get("from_groups"):
        return mesh_from_groups(device_type, shape, tuple(names) if names else None)
    return init_device_mesh(device_type, shape, mesh_dim_names=tuple(names) if names else None)


def mesh_from_groups(device_type: str, shape: tuple, names: Optional[tuple]) -> Any:
    """DeviceMesh.from_group on groups made first: along each dim, the ranks that share
    every other coordinate of the row-major mesh (new_subgroups_by_enumeration)."""
    import torch.distributed as dist
    from torch.distributed.device_mesh import DeviceMesh
    layout = torch.arange(dist.get_world_size()).view(shape)
    groups = []
    for dim in range(len(shape)):
        ranks = layout.movedim(dim, -1).reshape(-1, shape[dim]).tolist()
        group, _ = dist.new_subgroups_by_enumeration(ranks)
        groups.append(group)
    return DeviceMesh.from_group(groups, device_type, mesh=layout, mesh_dim_names=names)


def shard_placement_fn(spec: dict[str, Any]) -> Callable[[nn.Parameter], Any]:
    """`{dim: d}`: Shard(d) for every parameter that has dim d (negative dims count from
    the end), the default Shard(0) for the rest (with `every: true`, Shard(d) for every
    parameter, even one without dim d); `{dim: largest}`: Shard of the largest dim, the
    first of equal ones."""
    try:
        from torch.distributed.tensor import Shard
    except ImportError:  # before 2.5
        from torch.distributed._tensor import Shard  # type: ignore[no-redef]
    dim, every = spec["dim"], spec.get("every", False)

    def placement(param: nn.Parameter) -> Any:
        if dim == "largest":
            sizes = list(param.shape)
            return Shard(sizes.index(max(sizes)))
        return Shard(dim) if every or -param.dim() <= dim < param.dim() else None
    return placement


def mp_policy(spec: dict[str, Any]) -> Any:
    """`mp_policy: {param_dtype, ...}` as a MixedPrecisionPolicy; dtypes by name."""
    try:
        from torch.distributed.fsdp import MixedPrecisionPolicy
    except ImportError:  # before 2.6
        from torch.distributed._composable.fsdp import MixedPrecisionPolicy  # type: ignore[no-redef]
    return MixedPrecisionPolicy(**{k: getattr(torch, v) if isinstance(v, str) else v for k, v in spec.items()})


def dp_mesh_dims(spec: dict[str, Any]) -> Any:
    """`dp_mesh_dims: {shard, replicate}` as DataParallelMeshDims; a list of names is
    the tuple of dims flattened into one."""
    try:
        from torch.distributed.fsdp import DataParallelMeshDims
    except ImportError:
        from .errors import Unsupported
        raise Unsupported(f"DataParallelMeshDims is not available in PyTorch {torch.__version__}") from None
    return DataParallelMeshDims(**{k: tuple(v) if isinstance(v, list) else v for k, v in spec.items()})


def placement(name: str) -> Any:
    """"Replicate()" or "Shard(d)", as placement_name writes them, as a Placement."""
    from torch.distributed.tensor import Replicate, Shard
    if name == "Replicate()":
        return Replicate()
    return Shard(int(name[len("Shard("):-1]))


def distribute_module(module: nn.Module, mesh: Any, placements: dict[str, list[str]]) -> None:
    """distribute_module(module, mesh, partition_fn): the parameters `placements` names
    (by FQN) become DTensors with those placements; distribute_module replicates the
    rest, buffers too."""
    try:
        from torch.distributed.tensor import distribute_module as distribute, distribute_tensor
    except ImportError:
        from .errors import Unsupported
        raise Unsupported(f"torch.distributed.tensor is not available in PyTorch {torch.__version__}") from None

    def partition(prefix: str, submodule: nn.Module, device_mesh: Any) -> None:
        for name, param in list(submodule.named_parameters(recurse=False)):
            fqn = f"{prefix}.{name}" if prefix else name
            if fqn in placements:
                tensor = distribute_tensor(param.data, device_mesh, [placement(p) for p in placements[fqn]])
                submodule.register_parameter(name, nn.Parameter(tensor, requires_grad=param.requires_grad))

    distribute(module, mesh, partition)


# -- collectives -------------------------------------------------------------------
def comm_debug_mode() -> Any:
    try:
        from torch.distributed.tensor.debug import CommDebugMode
    except ImportError:
        try:
            from torch.distributed._tensor.debug import CommDebugMode  # type: ignore[no-redef]
        except ImportError:
            from .errors import Unsupported
            raise Unsupported(f"CommDebugMode is not available in PyTorch {torch.__version__}") from None
    return CommDebugMode()


COLLECTIVE_KINDS = {"all_gather": ("allgather", "all_gather"), "reduce_scatter": ("reduce_scatter",),
                    "all_reduce": ("allreduce", "all_reduce")}


def collective_counts(counts: dict[Any, int]) -> dict[str, int]:
    """CommDebugMode's counts per op (c10d._allgather_base_, _c10d_functional.all_reduce,
    ...) summed into the three kinds count_collectives reports."""
    out = {kind: 0 for kind in COLLECTIVE_KINDS}
    for op, n in counts.items():
        name = str(op).split(".")[-1]
        for kind, stems in COLLECTIVE_KINDS.items():
            if any(stem in name for stem in stems):
                out[kind] += n
                break
    return out


# -- sharded tensors -------------------------------------------------------------
def is_dtensor(t: Any) -> bool:
    # Duck-typed: DTensor moved between modules across 2.x, and fakes stand in for it
    # in tests on PyTorch 1.13. A plain tensor has neither attribute.
    return hasattr(t, "placements") and callable(getattr(t, "to_local", None))


def local(t: Any) -> Any:
    """This rank's shard of a sharded tensor; any other tensor as it is."""
    return t.to_local() if is_dtensor(t) else t


def placement_name(p: Any) -> str:
    """spec/fully_shard.md writes Shard(0); str() gives S(0) and repr() Shard(dim=0)."""
    name = type(p).__name__
    if name == "Shard":
        return f"Shard({p.dim})"
    if name == "Replicate":
        return "Replicate()"
    return repr(p)


def tensor_layout(t: Any) -> dict[str, Any]:
    if is_dtensor(t):
        return {"sharded": True, "shape": list(t.shape), "local_shape": list(t.to_local().shape),
                "placements": [placement_name(p) for p in t.placements]}
    return {"sharded": False, "shape": list(t.shape)}


def is_contiguous(t: torch.Tensor) -> bool:
    """The tensor is contiguous, and a sharded one's local shard too."""
    return t.is_contiguous() and (not is_dtensor(t) or t.to_local().is_contiguous())


def shard_of(t: Any, full: torch.Tensor) -> torch.Tensor:
    """This rank's part of `full` laid out as the sharded tensor `t` (distribute_tensor
    without communication: every rank holds the same full value); `full` itself for
    a plain tensor."""
    if not is_dtensor(t):
        return full
    from torch.distributed.tensor import distribute_tensor
    return distribute_tensor(full, t.device_mesh, t.placements, src_data_rank=None).to_local()


def full_tensor(t: Any) -> Any:
    """The global value: a collective for a sharded tensor (every rank must call it)."""
    return t.full_tensor() if is_dtensor(t) else t


# -- gradients in shared storage ---------------------------------------------------
def storage_ptr(t: torch.Tensor) -> int:
    if hasattr(t, "untyped_storage"):
        return t.untyped_storage().data_ptr()
    return t.storage().data_ptr()  # PyTorch 1.13 has no untyped_storage()


def storage_groups(named_grads: Iterable[tuple[str, Any]]) -> list[list[str]]:
    """Names grouped by the storage their tensors live in (views of one flat bucket form
    one group); groups in order of their first member, members in the given order."""
    groups: dict[Any, list[str]] = {}
    for name, grad in named_grads:
        t = local(grad)
        ptr = storage_ptr(t)
        # An empty tensor may have no storage (data_ptr 0); it shares with nothing.
        key: Any = ptr if ptr != 0 else ("empty", name)
        groups.setdefault(key, []).append(name)
    return list(groups.values())


def grad_storage_groups(module: nn.Module) -> list[list[str]]:
    return storage_groups((n, p.grad) for n, p in module.named_parameters() if p.grad is not None)


# -- what a call manages ---------------------------------------------------------------
def applied_state(name: str, module: nn.Module, observation: str) -> Any:
    """`<api>.state(module)` for an observation; unsupported without the API, an error
    when the API was not applied to the module."""
    api = builtin_api(name)
    if api is None:
        from .errors import Unsupported
        raise Unsupported(f"{name} is not available in this PyTorch")
    state = api.state(module)
    if state is None:
        raise ValueError(f"{observation}: {name} was not applied to this {type(module).__name__}")
    return state


def get_registry(module: nn.Module) -> Optional[dict]:
    """contract's per-module registry (None when no API was applied). It lives in
    _composable.contract; the package re-exports it only in some releases."""
    from torch.distributed._composable.contract import _get_registry
    return _get_registry(module)


def is_fully_sharded(module: nn.Module) -> bool:
    """replicate.py's _is_fully_sharded: fully_shard is in the module's registry."""
    try:
        registry = get_registry(module)
    except ImportError:  # no composable APIs: nothing is fully sharded
        return False
    return registry is not None and "fully_shard" in registry


def replicate_param_names(module: nn.Module, ignored_modules: set,
                          fully_sharded: Callable[[nn.Module], bool] = is_fully_sharded) -> list[str]:
    """The FQNs replicate's lazy init collects (_ReplicateState.init/_collect_params):
    ignored modules and fully_shard modules are skipped with their descendants, and
    their parameters are skipped wherever else they are registered."""
    ignored_params = {p for m in ignored_modules for p in m.parameters()}
    for sub in module.modules():
        if fully_sharded(sub):
            ignored_params.update(sub.parameters())
    names: list[str] = []

    def walk(m: nn.Module, prefix: str) -> None:
        if fully_sharded(m) or m in ignored_modules:
            return
        for n, p in m.named_parameters(recurse=False):
            if p not in ignored_params:
                names.append(prefix + n)
        for child_name, child in m.named_children():
            walk(child, f"{prefix}{child_name}.")

    walk(module, "")
    return names


def replicate_managed(module: nn.Module) -> list[str]:
    """replicate.state(module)._param_names once its lazy init (the first forward) ran;
    before that, the same collection computed here from the recorded init arguments,
    without touching the state (the real init builds the DDP engine)."""
    state = applied_state("replicate", module, "managed_parameters")
    if getattr(state, "has_initialized", False):
        return list(state._param_names)
    init_args = getattr(state, "_init_args", None) or ()
    ignored = set(init_args[1]) if len(init_args) > 1 and init_args[1] else set()
    return replicate_param_names(module, ignored)


def fsdp_param_groups(state: Any) -> list:
    # PyTorch after 2.10 keeps a list (per-parameter meshes); before, one group or None.
    groups = getattr(state, "_fsdp_param_groups", None)
    if groups is not None:
        return list(groups)
    group = getattr(state, "_fsdp_param_group", None)
    return [group] if group is not None else []


def fully_shard_managed(module: nn.Module) -> Optional[list[str]]:
    """FQNs (relative to module) of the parameters of the call's parameter groups, found by
    identity among module.named_parameters(); None when the call has no group."""
    groups = fsdp_param_groups(applied_state("fully_shard", module, "managed_parameters"))
    if not groups:
        return None
    # The module holds the sharded parameter, or the unsharded one between unshard and reshard.
    owned: set[int] = set()
    for group in groups:
        for fsdp_param in group.fsdp_params:
            owned.add(id(fsdp_param.sharded_param))
            # Between an integer reshard_after_forward's forward and backward the
            # module holds the k-way shard (_fsdp_param.py, _setattr_on_modules).
            for held in ("_unsharded_param", "_sharded_post_forward_param"):
                param = getattr(fsdp_param, held, None)
                if param is not None:
                    owned.add(id(param))
    return [n for n, p in module.named_parameters() if id(p) in owned]


def replicate_device_ids(module: nn.Module) -> Any:
    state = applied_state("replicate", module, "replicate_device_ids")
    if not hasattr(state, "_ddp_weakref"):
        raise RuntimeError("replicate_device_ids: the data-parallel engine exists once a forward has run")
    ddp = state._ddp_weakref()
    if ddp is None:
        raise RuntimeError("replicate_device_ids: the data-parallel engine is gone")
    return None if ddp.device_ids is None else list(ddp.device_ids)


def comm_hook(name: str) -> Any:
    """A DDP communication hook of spec/replicate.md: PyTorch's allreduce_hook, or
    `sum`, an all-reduce without the division by the group size."""
    import torch.distributed as dist

    if name == "allreduce":
        from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook
        return allreduce_hook

    def sum_hook(state, bucket):  # noqa: ANN001 - DDP rejects annotations other than GradBucket's
        group = state if state is not None else dist.group.WORLD
        return dist.all_reduce(bucket.buffer(), group=group, async_op=True).get_future().then(lambda f: f.value()[0])

    if name == "sum":
        return sum_hook
    raise ValueError(f"register_comm_hook: hook must be allreduce or sum, not '{name}'")
