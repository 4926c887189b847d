"""Fixture models (spec/fixtures.md) as real torch.nn modules, with the
portable generator's values (spec/values.md)."""
from __future__ import annotations

import math
from typing import Any, Callable, Optional

import torch
import torch.nn as nn

from ccts_common import portable_values as pv

Probe = Callable[[str], None]
Checkpoint = Callable[[nn.Module, list], Any]


def generated(shape: list[int], init: Any, seed: int, stream: str) -> torch.Tensor:
    s = pv.fnv1a64(stream)
    if init in (None, "normal"):
        flat = pv.normal(shape, seed, s)
    elif init == "zeros":
        return torch.zeros(shape)
    elif init == "ones":
        return torch.ones(shape)
    elif isinstance(init, dict) and "uniform" in init:
        flat = pv.uniform(shape, float(init["uniform"][0]), float(init["uniform"][1]), seed, s)
    else:
        return torch.full(shape, float(init["constant"]))
    return torch.tensor(flat, dtype=torch.float32).reshape(shape)


def join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


class FixtureModule(nn.Module):
    """A fixture class: members registered like the upstream model, forward interpreted."""

    definition: dict[str, Any] = {}

    def __init__(self, context: "Context") -> None:
        super().__init__()
        self._context = context

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self._call_program("forward", self.definition["forward"], args, kwargs)

    def _call_program(self, method: str, program: dict[str, Any], args: tuple, kwargs: dict[str, Any]) -> Any:
        params = program["params"]
        cls = type(self).__name__
        if len(args) > len(params):
            raise TypeError(f"{cls}.{method}() takes {len(params) + 1} positional arguments but {len(args) + 1} were given")
        env = dict(zip(params, args))
        for key, value in kwargs.items():
            if key not in params:
                raise TypeError(f"{cls}.{method}() got an unexpected keyword argument '{key}'")
            env[key] = value
        for p in params:
            if p not in env:
                raise TypeError(f"{cls}.{method}() missing 1 required positional argument: '{p}'")
        for op in program["body"]:
            self._run(op, env)
        return env[program["return"]]

    def _operand(self, o: Any, env: dict[str, Any]) -> Any:
        if isinstance(o, str):
            return getattr(self, o[5:]) if o.startswith("self.") else env[o]
        return o

    def _submodule(self, path: str) -> nn.Module:
        module: Any = self
        for part in path.split("."):
            module = module[int(part)] if isinstance(module, list) else getattr(module, part)
        return module

    def _run(self, op: dict[str, Any], env: dict[str, Any]) -> None:
        name = op["op"]
        with torch.no_grad() if op.get("no_grad") else _null():
            out = self._compute(name, op, env)
        if "as" in op:
            env[op["as"]] = out

    def _compute(self, name: str, op: dict[str, Any], env: dict[str, Any]) -> Any:
        get = lambda key: self._operand(op[key], env)  # noqa: E731
        if name in ("call", "checkpoint"):
            module = self._submodule(op["module"])
            args = [self._operand(a, env) for a in op["args"]]
            if name == "checkpoint":
                return self._context.checkpoint(module, args)
            kwargs = {k: self._operand(v, env) for k, v in (op.get("kwargs") or {}).items()}
            return module(*args, **kwargs)
        if name == "linear":
            return torch.nn.functional.linear(get("input"), get("weight"), get("bias") if "bias" in op else None)
        if name == "relu":
            return torch.relu(get("input"))
        if name == "relu_":
            return get("input").relu_()
        if name == "float":
            return get("input").float()
        if name == "mm":
            return torch.mm(get("a"), get("b"))
        if name == "add":
            total = None
            for o in op["inputs"]:
                v = self._operand(o, env)
                total = v if total is None else total + v
            return total
        if name == "sum":
            return get("input").sum()
        if name == "getitem":
            return get("of")[op["key"]]
        if name == "dict":
            return {k: self._operand(v, env) for k, v in (op.get("items") or {}).items()}
        if name == "tuple":
            return tuple(self._operand(v, env) for v in op["items"])
        if name == "no_grad_add_":
            with torch.no_grad():
                getattr(self, op["target"][5:]).add_(get("value"))
            return None
        if name == "assign_parameter":
            setattr(self, op["target"][5:], nn.Parameter(get("value").detach().clone()))
            return None
        if name == "probe":
            self._context.probe(op["name"])
            return None
        if name == "probe_grad":
            probe, label = self._context.probe, op["name"]
            get("of").register_hook(lambda grad: probe(label))
            return None
        if name == "chain":
            x = get("input")
            for module in getattr(self, op["modules"][5:]):
                x = module(x)
            return x
        raise ValueError(f"unknown op {name!r}")


class _null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: Any) -> None:
        return None


class Context:
    def __init__(self, seed: int, probe: Optional[Probe], checkpoint: Optional[Checkpoint],
                 device: torch.device = torch.device("cpu")) -> None:
        self.seed = seed
        self.device = device
        self.probe = probe or (lambda name: None)
        self.checkpoint = checkpoint or _no_checkpoint

    def __deepcopy__(self, memo: dict) -> "Context":
        # A deep copy of a model reports to the same case (as the reference's does).
        return self


def _no_checkpoint(module: nn.Module, args: list) -> Any:
    raise NotImplementedError("the checkpoint op needs an activation checkpoint implementation")


class Builder:
    def __init__(self, fixture: dict[str, Any], context: Context) -> None:
        self.classes = fixture.get("classes") or {}
        self.context = context
        self.types: dict[str, type] = {}

    def build(self, spec: Any, fqn: str) -> nn.Module:
        cls = spec if isinstance(spec, str) else spec["class"]
        items = spec.get("items", []) if isinstance(spec, dict) else []
        seed = self.context.seed
        if cls == "Linear":
            linear = nn.Linear(spec["in"], spec["out"], bias=spec.get("bias", True))
            bound = 1.0 / math.sqrt(spec["in"]) if spec["in"] > 0 else 0.0
            with torch.no_grad():
                for name, p in linear.named_parameters(recurse=False):
                    p.copy_(generated(list(p.shape), {"uniform": [-bound, bound]}, seed, join(fqn, name)))
            return linear.to(self.context.device)
        if cls == "ReLU":
            return nn.ReLU(inplace=isinstance(spec, dict) and spec.get("inplace", False))
        if cls == "LayerNorm":
            return nn.LayerNorm(spec["features"]).to(self.context.device)
        if cls == "BatchNorm1d":
            return nn.BatchNorm1d(spec["features"]).to(self.context.device)
        if cls in ("Sequential", "ModuleList"):
            children = [self.build(item, join(fqn, str(i))) for i, item in enumerate(items)]
            return nn.Sequential(*children) if cls == "Sequential" else nn.ModuleList(children)
        if cls == "ModuleDict":
            return nn.ModuleDict({item["key"]: self.build(item["module"], join(fqn, item["key"])) for item in items})
        return self.build_class(cls, items, fqn)

    def build_class(self, cls: str, items: list, fqn: str) -> nn.Module:
        definition = self.classes[cls]
        if cls not in self.types:
            # type(module).__name__ is the class name, as ModTracker and repr() need.
            # Other methods (`methods`) are methods of the class, as upstream's are.
            methods = {name: _method(name, program) for name, program in (definition.get("methods") or {}).items()}
            # `base`: a ModuleList or ModuleDict subclass that defines forward.
            base = {"ModuleList": (nn.ModuleList,), "ModuleDict": (nn.ModuleDict,)}.get(definition.get("base"), ())
            self.types[cls] = type(cls, (FixtureModule, *base), {"definition": definition, **methods})
        module = self.types[cls](self.context)
        seed = self.context.seed

        def tensor(spec: dict[str, Any], path: str) -> torch.Tensor:
            # Generated on the CPU (the same bits everywhere), then placed; plain
            # attributes and plain-list modules too, which Module.to() would miss.
            return generated(spec["shape"], spec.get("init"), seed, path).to(self.context.device)
        for member in definition.get("members") or []:
            name = member["name"]
            path = join(fqn, name)
            if "module" in member:
                setattr(module, name, self.build(member["module"], path))
            elif "parameter" in member:
                spec = member["parameter"]
                data = tensor(spec, path)
                if spec.get("transposed"):  # same values, column-major strides
                    data = data.t().contiguous().t()
                module.register_parameter(name, nn.Parameter(data, requires_grad=spec.get("requires_grad", True)))
            elif "buffer" in member:
                spec = member["buffer"]
                module.register_buffer(name, tensor(spec, path),
                                       persistent=spec.get("persistent", True))
            elif "tensor_attribute" in member:
                spec = member["tensor_attribute"]
                object.__setattr__(module, name, tensor(spec, path))
            else:
                specs = member["module_list_attribute"]
                specs = items if specs == "$items" else specs
                # A plain list: not registered, like FakeSequential._module_sequence.
                object.__setattr__(module, name, [self.build(s, join(path, str(i))) for i, s in enumerate(specs)])
        for tie in definition.get("ties") or []:  # `a.weight = b.weight`: one object in two places
            kind = next(k for k in ("parameter", "buffer", "module") if k in tie)
            owner, _, attr = tie[kind].rpartition(".")
            owner = module.get_submodule(owner) if owner else module
            if kind == "buffer":
                owner.register_buffer(attr, module.get_buffer(tie["to"]), persistent=attr not in owner._non_persistent_buffers_set)
            else:
                target = module.get_parameter(tie["to"]) if kind == "parameter" else module.get_submodule(tie["to"])
                setattr(owner, attr, target)
        return module


def _method(name: str, program: dict[str, Any]) -> Callable[..., Any]:
    def method(self: FixtureModule, *args: Any, **kwargs: Any) -> Any:
        return self._call_program(name, program, args, kwargs)
    method.__name__ = name
    return method


def build_module(fixture: dict[str, Any], seed: int = 0, probe: Optional[Probe] = None,
                 checkpoint: Optional[Checkpoint] = None, device: torch.device = torch.device("cpu")) -> nn.Module:
    return Builder(fixture, Context(seed, probe, checkpoint, device)).build(fixture["root"], "")


def make_input(fixture: dict[str, Any], seed: int, device: torch.device = torch.device("cpu")) -> tuple[list, dict]:
    """The fixture's example input, generated on the CPU, then placed on `device`."""
    def value(spec: Any, path: str) -> Any:
        if "dict" in spec:
            return {k: value(v, f"{path}.{k}") for k, v in spec["dict"].items()}
        for kind in ("tuple", "list"):
            if kind in spec:
                seq = [value(v, f"{path}.{i}") for i, v in enumerate(spec[kind])]
                return tuple(seq) if kind == "tuple" else seq
        t = generated(spec["shape"], spec.get("init"), seed, "input:" + path).to(device)
        if spec.get("requires_grad"):
            t.requires_grad_(True)
        if spec.get("clone"):
            t = t.clone()
        return t
    spec = fixture.get("input") or {}
    args = [value(a, str(i)) for i, a in enumerate(spec.get("args") or [])]
    kwargs = {k: value(v, k) for k, v in (spec.get("kwargs") or {}).items()}
    return args, kwargs
