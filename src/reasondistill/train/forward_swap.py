"""Give modules another forward for the length of a ``with`` block.

The training speed-ups replace the forward of individual module *instances* (never their
class), so that saving, merging and evaluation after training see the modules unchanged.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterable

import torch


@contextlib.contextmanager
def swapped_forwards(modules: Iterable[torch.nn.Module], forward: Callable):
    """Inside, each module's calls run ``forward(module, *args, **kwargs)``; the instance
    attribute is removed on exit. Yields the number of modules swapped."""
    modules = list(modules)
    for module in modules:
        module.forward = functools.partial(forward, module)
    try:
        yield len(modules)
    finally:
        for module in modules:
            del module.forward
