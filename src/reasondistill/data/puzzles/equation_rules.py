"""The hidden rules behind ``equation_numeric`` and ``cryptarithm``: ``AB?CD = result``.

The operator symbol is noise: in each problem every operator symbol stands for one rule.
The laws of a problem, which the solvers rely on (and which decide *guess* problems):

1. A problem has one operator per rule group of its level, each group used exactly once:
   level 1 ``add, sub, mul``; level 2 adds ``concat``; level 3 adds ``absdiff``. So the
   number of distinct operator symbols (in the examples and the query) gives the level.
2. All operators of a problem read digits the same way: plain, or (level >= 2) every
   operand and the result written with its digits reversed.
3. A ``+1`` / ``-1`` offset on the result exists only at level 3, per operator.
4. Guess rule: when the query's operator appears in no example, it is the one group no
   example operator uses, in the problem's digit order, with no offset.

Operands are two-digit numbers without a zero digit, so reversing them loses nothing.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator
from dataclasses import dataclass

from reasondistill.data.puzzles.common import PromptError

GROUPS_BY_LEVEL = {
    1: ("add", "sub", "mul"),
    2: ("add", "sub", "mul", "concat"),
    3: ("add", "sub", "absdiff", "mul", "concat"),
}
LEVEL_BY_OPERATOR_COUNT = {len(groups): level for level, groups in GROUPS_BY_LEVEL.items()}
OPERAND_DIGITS = "123456789"

FORMULAS = {  # group -> (how the trace writes it, what it computes)
    "add": ("{a}+{b}", lambda a, b: a + b),
    "sub": ("{a}-{b}", lambda a, b: a - b),
    "absdiff": ("|{a}-{b}|", lambda a, b: abs(a - b)),
    "mul": ("{a}*{b}", lambda a, b: a * b),
    "concat": ("{a} joined {b}", lambda a, b: a * 100 + b),
}


def reverse_digits(n: int) -> int:
    """``-120`` -> ``-21``: the digits of ``|n|`` backwards, sign kept."""
    value = int(str(abs(n))[::-1])
    return -value if n < 0 else value


@dataclass(frozen=True)
class Rule:
    group: str
    reversed: bool = False
    offset: int = 0

    @property
    def name(self) -> str:
        offset = f"{self.offset:+d}" if self.offset else ""
        return self.group + offset + (" reversed" if self.reversed else "")

    def apply(self, a: int, b: int) -> int:
        if self.reversed:
            a, b = reverse_digits(a), reverse_digits(b)
        value = FORMULAS[self.group][1](a, b) + self.offset
        return reverse_digits(value) if self.reversed else value

    def show(self, a: int, b: int) -> str:
        """The computation as the trace writes it, e.g. ``21+43+1 = 65, reversed 56``."""
        if self.reversed:
            a, b = reverse_digits(a), reverse_digits(b)
        value = FORMULAS[self.group][1](a, b) + self.offset
        offset = f"{self.offset:+d}" if self.offset else ""
        text = FORMULAS[self.group][0].format(a=a, b=b) + f"{offset} = {value}"
        return text + (f", reversed {reverse_digits(value)}" if self.reversed else "")


    def steps(self, a: int, b: int) -> tuple[list[str], int]:
        """The computation as the ``stepwise`` style writes it: digit reversal spelled out,
        the arithmetic column by column (:mod:`.stepwise`), the offset, the reversal back."""
        from reasondistill.data.puzzles.stepwise import add_steps, mul_steps, sub_steps

        lines = []
        if self.reversed:
            lines.append(f"reverse the digits: {a} -> {reverse_digits(a)}, "
                         f"{b} -> {reverse_digits(b)}")
            a, b = reverse_digits(a), reverse_digits(b)
        if self.group == "add":
            work, value = add_steps(a, b)
        elif self.group == "sub":
            work, value = sub_steps(a, b)
        elif self.group == "absdiff":
            high, low = max(a, b), min(a, b)
            work, value = sub_steps(high, low)
            work = [f"|{a}-{b}| = {high} - {low}", *work]
        elif self.group == "mul":
            work, value = mul_steps(a, b)
        else:  # concat: the digits of a, then the digits of b
            work, value = [f"{a} joined {b} = {a}{b:02d}"], a * 100 + b
        lines += work
        if self.offset:
            lines.append(f"{value} {'+' if self.offset > 0 else '-'} 1 = {value + self.offset}")
            value += self.offset
        if self.reversed:
            lines.append(f"reverse the digits of the result: {value} -> {reverse_digits(value)}")
            value = reverse_digits(value)
        return lines, value


def rules_at_level(level: int) -> tuple[Rule, ...]:
    orders = (False, True) if level >= 2 else (False,)
    offsets = (0, 1, -1) if level >= 3 else (0,)
    return tuple(Rule(g, r, o) for r in orders for g in GROUPS_BY_LEVEL[level] for o in offsets)


def level_of(operators: set[str]) -> int:
    try:
        return LEVEL_BY_OPERATOR_COUNT[len(operators)]
    except KeyError:
        raise PromptError(f"{len(operators)} operators; a problem has "
                          f"{sorted(LEVEL_BY_OPERATOR_COUNT)}") from None


def guessed_rule(level: int, seen: dict[str, Rule]) -> Rule:
    """Law 4: the one group no seen operator uses, in their digit order, no offset."""
    missing = [g for g in GROUPS_BY_LEVEL[level] if g not in {r.group for r in seen.values()}]
    if len(missing) != 1:
        raise PromptError(f"the examples leave {len(missing)} rule groups unused, not one")
    return Rule(missing[0], any(r.reversed for r in seen.values()), 0)


def lawful(assignment: dict[str, Rule]) -> bool:
    """Laws 1 and 2: distinct groups, one digit order."""
    rules = list(assignment.values())
    return (len({r.group for r in rules}) == len(rules)
            and len({r.reversed for r in rules}) <= 1)


def lawful_assignments(candidates: dict[str, list[Rule]]) -> Iterator[dict[str, Rule]]:
    """Every choice of one candidate rule per operator that obeys laws 1 and 2."""
    operators = list(candidates)
    for choice in itertools.product(*(candidates[op] for op in operators)):
        assignment = dict(zip(operators, choice))
        if lawful(assignment):
            yield assignment


def draw_rules(rng: random.Random, level: int, operators: list[str]) -> dict[str, Rule]:
    """A lawful hidden rule for each operator symbol (one per group of the level)."""
    groups = list(GROUPS_BY_LEVEL[level])
    rng.shuffle(groups)
    reversed_digits = level >= 2 and rng.random() < 0.5
    offsets = (0, 1, -1) if level >= 3 else (0,)
    return {op: Rule(g, reversed_digits, rng.choice(offsets)) for op, g in zip(operators, groups)}


def draw_operand(rng: random.Random) -> int:
    return int(rng.choice(OPERAND_DIGITS) + rng.choice(OPERAND_DIGITS))


@dataclass(frozen=True)
class Equation:
    """``a op b`` (the left side of an example or the query)."""

    a: int
    op: str
    b: int


def draw_problem(rng: random.Random, level: int, variant: str, operator_pool: str,
                 per_operator: int) -> tuple[dict[str, Rule], list[Equation], Equation]:
    """Hidden rules, example left sides and the query for a *deduce* or *guess* problem.

    *deduce*: every operator has ``per_operator`` examples, the query's among them.
    *guess*: the query's operator has no example, and (law 4) no offset.
    """
    operators = rng.sample(operator_pool, len(GROUPS_BY_LEVEL[level]))
    rules = draw_rules(rng, level, operators)
    query_op = rng.choice(operators)
    shown = operators
    if variant == "guess":
        rules[query_op] = Rule(rules[query_op].group, rules[query_op].reversed, 0)
        shown = [op for op in operators if op != query_op]
    examples = [Equation(draw_operand(rng), op, draw_operand(rng))
                for op in shown for _ in range(per_operator)]
    rng.shuffle(examples)
    query = Equation(draw_operand(rng), query_op, draw_operand(rng))
    while query in examples:
        query = Equation(draw_operand(rng), query_op, draw_operand(rng))
    return rules, examples, query
