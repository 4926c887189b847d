"""Test APIs of `define_api` (spec/contract.md) on PyTorch's real contract."""
from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn


class ModelWrapper(nn.Module):
    """test_contract.py's wrapper: a new parent around the module."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.module(*args, **kwargs)


def identity_hooks(module: nn.Module, kinds: list[str]) -> None:
    for kind in kinds:
        if kind == "forward_pre":
            module.register_forward_pre_hook(lambda m, inp: inp)
        elif kind == "forward":
            module.register_forward_hook(lambda m, inp, out: out)
        elif kind == "backward_pre":
            module.register_full_backward_pre_hook(lambda m, grad_output: grad_output)
        elif kind == "backward":
            module.register_full_backward_hook(lambda m, grad_input, grad_output: grad_input)
        else:
            raise ValueError(f"define_api.add_hooks: unknown hook kind {kind!r}")


def make_test_api(definition: dict[str, Any], observations: dict[str, Any]) -> Any:
    from torch.distributed._composable import contract

    from .composable import get_registry

    actions = definition.get("do") or []
    returns = definition.get("returns", "input")

    def body(module: Any) -> Any:
        modules = module if isinstance(module, list) else [module]
        for m in modules:
            for action in actions:
                (verb, arg), = action.items()
                if verb == "add_hooks":
                    identity_hooks(m, arg)
                elif verb == "set_state":
                    setattr(api.state(m), arg["key"], arg["value"])
                elif verb == "add_state_check_hook":
                    key, expect, new = arg["key"], arg["expect"], arg["set"]

                    def check(mod: nn.Module, inp: Any, key=key, expect=expect, new=new) -> Any:
                        value = getattr(api.state(mod), key, None)
                        if value != expect:
                            raise AssertionError(f"state {key} is {value!r}, expected {expect!r}")
                        setattr(api.state(mod), key, new)
                        return inp
                    m.register_forward_pre_hook(check)
                elif verb == "add_parameter":
                    m.register_parameter(arg["name"], nn.Parameter(torch.zeros(arg["shape"])))
                elif verb == "add_buffer":
                    m.register_buffer(arg["name"], torch.zeros(arg["shape"]))
                elif verb == "add_module":
                    setattr(m, arg["name"], nn.ReLU())
                elif verb == "reregister_parameter":
                    tensor = getattr(m, arg["name"])
                    delattr(m, arg["name"])
                    setattr(m, arg["name"], tensor)
                elif verb == "record_registry":
                    registry = get_registry(m)
                    observations[arg["as"]] = {"kind": "json", "value": None if registry is None else list(registry)}
                else:
                    raise ValueError(f"define_api.do: unknown action {verb!r}")
        if returns == "none":
            return None
        if returns == "first":
            return modules[0]
        if returns == "wrapper":
            return ModelWrapper(module)
        if returns == "shorter":
            if not isinstance(module, list):
                raise ValueError("define_api.returns: shorter takes a list of modules")
            return modules[:-1]
        return module

    # The function's name is the API's name in registries and messages.
    body.__name__ = body.__qualname__ = definition.get("function_name", definition["name"])
    api = contract(state_cls=state_class(definition.get("state_class")))(body)
    return api


def state_class(name: Any) -> type:
    """contract(state_cls=...): a subclass of _State of that name, or _State itself."""
    from torch.distributed._composable_state import _State

    return _State if name is None else type(name, (_State,), {})
