"""The built-in puzzle suite: seven families of ``input -> output`` problems, each with a
solver that writes a step-by-step teacher trace from the examples alone.

See ``PUZZLES.md`` for the families. Each family is one module (the interface is in
:mod:`.common`); this package holds the registry and the generator:

- :func:`generate_puzzles` — ``n`` problems dealt round-robin over the chosen families.
  Problem ``i`` of a family is drawn from its own random stream, keyed by
  (family, level, seed, i), so a run is reproducible, ids are stable, and asking for fewer
  families or fewer problems leaves the other problems unchanged.
- every problem is solved from its *prompt text* by the family's solver; draws the solver
  finds ambiguous are drawn again, and a solver answer that differs from the hidden rule's
  is a bug and raises.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from reasondistill.data.example import Example
from reasondistill.data.puzzles import (
    bit_manipulation,
    cipher,
    cryptarithm,
    equation_numeric,
    gravity,
    numeral,
    unit_conversion,
)
from reasondistill.data.puzzles.common import Ambiguous, PromptError, answer_in_trace
from reasondistill.errors import ConfigError, did_you_mean

FAMILY_MODULES = {module.NAME: module for module in (
    gravity, unit_conversion, numeral, cipher, bit_manipulation, equation_numeric, cryptarithm)}
FAMILIES = tuple(FAMILY_MODULES)
TYPES = tuple(f"{name}_{variant}" if variant else name
              for name, module in FAMILY_MODULES.items() for variant in module.VARIANTS)
HARD_TYPES = frozenset({"bit_manipulation", "equation_numeric_guess", "cryptarithm_deduce",
                        "cryptarithm_guess"})
# Chosen from benchmarks/puzzle_trace_lengths.py (results/puzzle_trace_lengths.json): the
# easy families at their shortest level (numeral at 2: still ~70 tokens, and it adds L and C);
# bit_manipulation at 2 (two combined copies) so the hard types stay hard; the equation
# families at 1, whose guess/cryptarithm traces are already 170-220 tokens.
DEFAULT_LEVELS = {
    "gravity": 1,
    "unit_conversion": 1,
    "numeral": 2,
    "cipher": 1,
    "bit_manipulation": 2,
    "equation_numeric": 1,
    "cryptarithm": 1,
}
MAX_DRAWS = 500  # ambiguous draws are redrawn; this many in a row means a broken family

__all__ = ["FAMILIES", "TYPES", "HARD_TYPES", "DEFAULT_LEVELS", "Ambiguous", "PromptError",
           "generate_puzzles", "make_puzzle", "solve", "solve_from_prompt", "answer_in_trace",
           "write_jsonl"]


def generate_puzzles(n: int, seed: int = 0, families: list[str] | None = None,
                     level: int | None = None, style: str = "compact") -> list[Example]:
    """``n`` problems spread evenly (round-robin, in :data:`FAMILIES` order) over ``families``
    (default: all), at ``level`` for every family or each family's :data:`DEFAULT_LEVELS`,
    with traces in ``style``. The problems do not depend on the style, only their traces."""
    if n < 0:
        raise ConfigError(f"the number of puzzles must be >= 0, got {n}")
    names = select_families(families)
    check_style(names, style)
    levels = {name: resolve_level(name, level) for name in names}
    dealt = [(names[i % len(names)], i // len(names)) for i in range(n)]
    return [make_puzzle(family, seed, index, levels[family], style) for family, index in dealt]


def check_style(families: list[str], style: str) -> None:
    missing = [name for name in families if style not in FAMILY_MODULES[name].STYLES]
    if missing:
        written = [name for name in FAMILIES if style in FAMILY_MODULES[name].STYLES]
        raise ConfigError(f"trace_style {style!r} is not written for {', '.join(missing)}; "
                          f"it is for: {', '.join(written) or 'no family'} (choose those "
                          "families, or trace_style: compact)")


def select_families(families: list[str] | None) -> list[str]:
    if families is None:
        return list(FAMILIES)
    unknown = [name for name in families if name not in FAMILY_MODULES]
    if unknown:
        raise unknown_family(unknown[0])
    if not families:
        raise ConfigError(f"no puzzle family selected; allowed: {', '.join(FAMILIES)}")
    return [name for name in FAMILIES if name in families]


def unknown_family(name: str) -> ConfigError:
    return ConfigError(f"unknown puzzle family {name!r}{did_you_mean(name, FAMILIES)}; "
                       f"allowed: {', '.join(FAMILIES)}")


def resolve_level(family: str, level: int | None) -> int:
    allowed = FAMILY_MODULES[family].LEVELS
    if level is None:
        return DEFAULT_LEVELS[family]
    if level not in allowed:
        raise ConfigError(f"puzzle level {level} does not exist for {family!r}; "
                          f"allowed: {', '.join(map(str, allowed))}")
    return level


def make_puzzle(family: str, seed: int, index: int, level: int,
                style: str = "compact") -> Example:
    """Problem ``index`` of ``family``: drawn from its own stream, solved from its prompt.
    Ambiguity is decided by the compact solver, so every style gets the same problems."""
    module = FAMILY_MODULES[family]
    variant = module.VARIANTS[index % len(module.VARIANTS)]
    rng = random.Random(f"reasondistill-puzzles:{family}:{level}:{seed}:{index}")
    for draws in range(1, MAX_DRAWS + 1):
        draft = module.draw(rng, level, variant)
        try:
            trace, answer = module.solve_from_prompt(draft.prompt)
        except Ambiguous:
            continue
        if style != "compact":
            trace, answer = module.solve_from_prompt(draft.prompt, style)
        if answer != draft.answer:
            raise RuntimeError(f"{family} solver answered {answer!r} but the hidden rule "
                               f"({draft.rule}) gives {draft.answer!r}:\n{draft.prompt}")
        return Example(
            id=f"puz-{family}-L{level}-{seed}-{index}",
            prompt=draft.prompt,
            answer=answer,
            trace=trace,
            type=f"{family}_{variant}" if variant else family,
            difficulty=str(level),
            meta={"family": family, "level": level, "seed": seed, "index": index,
                  "hidden_rule": draft.rule, "draws": draws, "trace_style": style},
        )
    raise RuntimeError(f"{family} level {level}: {MAX_DRAWS} ambiguous draws in a row")


def family_of(example: Example) -> str:
    """The family an example belongs to (from ``meta`` or its ``type``)."""
    family = example.meta.get("family")
    if family in FAMILY_MODULES:
        return family
    for name in FAMILIES:
        if example.type == name or example.type.startswith(name + "_"):
            return name
    raise ConfigError(f"example {example.id!r} of type {example.type!r} is not a puzzle; "
                      f"families: {', '.join(FAMILIES)}")


def solve_from_prompt(prompt: str, family: str, style: str = "compact") -> tuple[str, str]:
    """``(trace, answer)`` from the prompt text alone; raises :class:`Ambiguous`."""
    if family not in FAMILY_MODULES:
        raise unknown_family(family)
    check_style([family], style)
    return FAMILY_MODULES[family].solve_from_prompt(prompt, style)


def solve(example: Example, style: str | None = None) -> tuple[str, str]:
    """Re-solve a puzzle example from its prompt (ignores its stored trace and answer), in
    ``style`` (default: the style it was generated with)."""
    style = style or example.meta.get("trace_style", "compact")
    return solve_from_prompt(example.prompt, family_of(example), style)


def write_jsonl(examples, path: str | Path) -> Path:
    """One ``Example.to_dict()`` per line, written atomically."""
    from reasondistill.io import atomic_write_text

    lines = "".join(json.dumps(e.to_dict(), ensure_ascii=False) + "\n" for e in examples)
    return atomic_write_text(path, lines)
