"""Give modules another forward for the length of a ``with`` block.

The training speed-ups replace the forward of individual module *instances* (never their
class), so that saving, merging and evaluation after training see the modules unchanged.

Contract: ``nn.Module.__call__`` runs an instance attribute ``forward`` when there is one.
Other code may take that attribute away while we hold it — transformers ≥ 5.25 "kernelizes"
a model on ``model.train()`` and pops instance forwards as it does — so on exit only the
attribute this block set is removed, and one that was there before is put back.
:func:`swap_still_applied` tells a caller whether its swap survived.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterable

import torch

_MISSING = object()


@contextlib.contextmanager
def swapped_forwards(modules: Iterable[torch.nn.Module], forward: Callable):
    """Inside, each module's calls run ``forward(module, *args, **kwargs)``; on exit each
    module's own instance attribute (if any) is restored. Yields the number of modules."""
    modules = list(modules)
    previous = [vars(module).get("forward", _MISSING) for module in modules]
    ours = [functools.partial(forward, module) for module in modules]
    for module, swapped in zip(modules, ours):
        module.forward = swapped
    try:
        yield len(modules)
    finally:
        for module, swapped, before in zip(modules, ours, previous):
            if vars(module).get("forward") is not swapped:
                continue  # someone else replaced or removed it: leave theirs alone
            if before is _MISSING:
                del module.forward
            else:
                module.forward = before


def swap_still_applied(module: torch.nn.Module, forward: Callable) -> bool:
    """Whether ``module`` still runs ``forward`` from :func:`swapped_forwards`."""
    current = vars(module).get("forward")
    return isinstance(current, functools.partial) and current.func is forward
