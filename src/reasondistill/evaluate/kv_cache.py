"""The preallocated, compacted KV cache of CPU generation: the part of generation that
reaches into transformers' cache internals (its contract and self-check are in
:mod:`reasondistill.speedups`, under ``kv_cache``).

On CPU the default cache grows by ``torch.cat`` every step, copying the whole cache per
token; a ``StaticCache`` is written in place, rows that have stopped can be dropped from it
between ``generate`` calls, and prompts can be prefilled in groups of similar length.
"""

from __future__ import annotations

import torch
from transformers import StaticCache
from transformers.cache_utils import StaticLayer


def compactable_cache(model, max_cache_len: int) -> StaticCache | None:
    """A preallocated KV cache for a CPU model whose layers are all plain attention, else None.

    On CPU the default cache grows by ``torch.cat`` every step, copying (and freshly
    allocating) the whole cache per token, which dominates large-batch decoding. A static
    cache is written in place, and rows can be dropped from it between ``generate`` calls
    (``reorder_cache`` with the rows to keep).
    """
    if model.device.type != "cpu" or not getattr(model, "_can_compile_fullgraph", False):
        return None
    try:
        cache = StaticCache(config=model.config, max_cache_len=max_cache_len)
    except (KeyError, ValueError, TypeError):
        return None
    return cache if all(type(layer) is StaticLayer for layer in cache.layers) else None


def cache_argument(model) -> str:
    """The keyword that hands a KV cache to ``model`` and its ``generate``: transformers 5.25
    renamed ``past_key_values`` to ``cache`` (the old name warns until 6.0)."""
    import inspect

    forward = type(model).forward
    return "cache" if "cache" in inspect.signature(forward).parameters else "past_key_values"


def prefill_in_groups(model, cache: StaticCache, input_ids: torch.Tensor, mask: torch.Tensor,
                      group_rows: int) -> None:
    """Fill ``cache`` with every prompt token but the last, ``group_rows`` rows at a time.

    One left-padded prefill of the whole batch computes every row at the width of the
    longest prompt; rows sorted by length and prefilled in small groups are each padded only
    to their group's longest, which on GSM8K prompts saves much of the prefill work. Each
    group's keys and values land in the same left-aligned slots a whole-batch prefill would
    write (positions come from the attention mask, as in ``generate``), and ``generate``
    then runs the last prompt token of every row, so its first logits come from the batch.
    """
    from transformers import DynamicCache

    width = input_ids.shape[1]
    if width < 2:
        return
    filled = width - 1
    lengths = mask.sum(dim=1)
    for start in range(0, input_ids.shape[0], group_rows):
        rows = slice(start, start + group_rows)
        group_width = int(lengths[rows].max())
        left = width - group_width  # the group's own padding starts here
        ids, group_mask = input_ids[rows, left:filled], mask[rows, left:filled]
        if ids.shape[1] == 0:
            continue
        positions = (group_mask.cumsum(-1) - 1).clamp(min=0)
        group_cache = DynamicCache()
        with torch.no_grad():
            model(input_ids=ids, attention_mask=group_mask, position_ids=positions,
                  use_cache=True, logits_to_keep=1, **{cache_argument(model): group_cache})
        for layer, group_layer in zip(cache.layers, group_cache.layers):
            if not layer.is_initialized:
                shape = (input_ids.shape[0], *group_layer.keys.shape[1:2], 1)
                layer.lazy_initialization(
                    group_layer.keys.new_zeros((*shape, group_layer.keys.shape[-1])),
                    group_layer.values.new_zeros((*shape, group_layer.values.shape[-1])))
            layer.keys[rows, :, left:filled] = group_layer.keys
            layer.values[rows, :, left:filled] = group_layer.values
    for layer in cache.layers:
        layer.cumulative_length.fill_(filled)
