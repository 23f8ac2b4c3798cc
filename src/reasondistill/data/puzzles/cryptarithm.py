"""Cryptarithm: ``equation_numeric`` with every digit also replaced by a secret symbol.

The rules and the laws a problem obeys are in :mod:`.equation_rules`; the digit -> symbol
map is one-to-one and the operator symbols are not digit symbols. ``-`` is only ever the
sign of a negative result.

The solver searches every lawful explanation of all the examples at once: a digit for each
symbol and a rule for each operator. It goes example by example, joining each example's
possible digit strings (looked up by their pattern of repeated symbols, see
:func:`digit_strings`) on the symbols already decided. Then it answers the query under
every explanation — *deduce*: the query operator's own rule; *guess*: law 4, the one unused
group in the problem's digit order with no offset — and refuses (:class:`Ambiguous`) unless
all answers agree and every digit of the answer has a symbol the examples show.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from functools import cache, lru_cache

from reasondistill.data.puzzles.common import (
    Ambiguous,
    Draft,
    PromptError,
    check_line,
    render_prompt,
    split_prompt,
)
from reasondistill.data.puzzles.equation_rules import (
    GROUPS_BY_LEVEL,
    OPERAND_DIGITS,
    Equation,
    Rule,
    draw_problem,
    guessed_rule,
    lawful,
    level_of,
    rules_at_level,
)

NAME = "cryptarithm"
LEVELS = (1, 2, 3)
STYLES = ("compact",)  # no stepwise trace: the digit map comes from a search (README)
VARIANTS = ("deduce", "guess")
SYMBOLS = "!\"#$%&'()*+,./:;<>?@[]^_`|~"  # no braces, backslash, '-', '=' or space
EXAMPLES_PER_OPERATOR = 2
MAX_EXPLANATIONS = 5000  # more partial explanations than this: too ambiguous to trace
STORY = "secret symbols stand for the digits and the operations of these equations."
ASK = "determine the result for"
EXAMPLE_LINE = re.compile(r"(\S\S)(\S)(\S\S) = (-?)(\S+)")
QUERY = re.compile(r"(\S\S)(\S)(\S\S)")


@dataclass(frozen=True)
class SymbolEquation:
    left: str  # the four digit symbols of both operands
    op: str
    negative: bool = False
    result: str = ""  # digit symbols of |result|; empty for the query

    @property
    def symbols(self) -> str:
        return self.left + self.result

    @property
    def pattern(self) -> tuple:
        return self.negative, shape(self.symbols)

    def line(self) -> str:
        return f"{self.left[:2]}{self.op}{self.left[2:]}"


def shape(items) -> tuple[int, ...]:
    """Which positions repeat: ``"!*!#"`` and ``(3, 1, 3, 5)`` both give ``(0, 1, 0, 2)``."""
    first: dict = {}
    return tuple(first.setdefault(item, len(first)) for item in items)


def encode(number: int, digit_symbol: dict[int, str]) -> str:
    return ("-" if number < 0 else "") + "".join(digit_symbol[int(d)] for d in str(abs(number)))


def encode_left(eq: Equation, digit_symbol: dict[int, str]) -> str:
    return encode(eq.a, digit_symbol) + eq.op + encode(eq.b, digit_symbol)


def draw(rng: random.Random, level: int, variant: str) -> Draft:
    symbols = rng.sample(SYMBOLS, 10 + max(len(g) for g in GROUPS_BY_LEVEL.values()))
    digit_symbol = dict(enumerate(symbols[:10]))
    rules, examples, query = draw_problem(rng, level, variant, "".join(symbols[10:]),
                                          EXAMPLES_PER_OPERATOR)
    lines = [f"{encode_left(eq, digit_symbol)} = "
             f"{encode(rules[eq.op].apply(eq.a, eq.b), digit_symbol)}" for eq in examples]
    prompt = render_prompt(rng, STORY, lines, ASK, encode_left(query, digit_symbol))
    hidden = {"operators": {op: rule.name for op, rule in rules.items()},
              "digits": {str(d): s for d, s in digit_symbol.items()}}
    answer = encode(rules[query.op].apply(query.a, query.b), digit_symbol)
    return Draft(prompt, answer, hidden)


def parse(prompt: str) -> tuple[list[SymbolEquation], SymbolEquation]:
    parts = split_prompt(prompt)
    examples = []
    for line in parts.example_lines:
        match = EXAMPLE_LINE.fullmatch(line)
        if match is None:
            raise PromptError(f"not a cryptarithm example: {line!r}")
        examples.append(SymbolEquation(match[1] + match[3], match[2], bool(match[4]), match[5]))
    query = QUERY.fullmatch(parts.query)
    if query is None:
        raise PromptError(f"not a cryptarithm query: {parts.query!r}")
    return examples, SymbolEquation(query[1] + query[3], query[2])


@cache
def digit_strings(rule: Rule) -> dict[tuple, list[tuple[int, ...]]]:
    """Every ``a, b, |result|`` digit string of ``rule``, keyed by sign and shape."""
    table: dict[tuple, list[tuple[int, ...]]] = {}
    operands = [int(x + y) for x in OPERAND_DIGITS for y in OPERAND_DIGITS]
    for a in operands:
        for b in operands:
            value = rule.apply(a, b)
            digits = tuple(int(d) for d in f"{a}{b}{abs(value)}")
            table.setdefault((value < 0, shape(digits)), []).append(digits)
    return table


@lru_cache(maxsize=50_000)
def joined(rule: Rule, pattern: tuple, known: tuple[int, ...]) -> dict[tuple, list[tuple]]:
    """:func:`digit_strings` of one pattern, grouped by the digits at positions ``known``."""
    groups: dict[tuple, list[tuple]] = {}
    for digits in digit_strings(rule).get(pattern, ()):
        groups.setdefault(tuple(digits[i] for i in known), []).append(digits)
    return groups


@dataclass
class Explanation:
    digits: dict[str, int]  # symbol -> digit
    rules: dict[str, Rule]  # operator -> rule


def search_order(examples: list[SymbolEquation], rules: tuple[Rule, ...]) -> list:
    """Fewest possible digit strings first, then always the example sharing most symbols."""
    size = {eq: sum(len(digit_strings(r).get(eq.pattern, ())) for r in rules) for eq in examples}
    order, known, left = [], set(), list(examples)
    while left:
        best = min(left, key=lambda eq: (-len(set(eq.symbols) & known), size[eq]))
        order.append(best)
        known |= set(best.symbols)
        left.remove(best)
    return order


def explanations(examples: list[SymbolEquation], level: int) -> list[Explanation]:
    """Every lawful digit map + operator rules under which all examples hold."""
    rules = rules_at_level(level)
    states = [Explanation({}, {})]
    for eq in search_order(examples, rules):
        symbols = eq.symbols
        first_at = {s: symbols.index(s) for s in symbols}
        known_syms = [s for s in first_at if s in states[0].digits]
        known = tuple(first_at[s] for s in known_syms)
        fresh = [(s, first_at[s]) for s in first_at if s not in states[0].digits]
        grown = []
        for state in states:
            if eq.op in state.rules:
                choices = [state.rules[eq.op]]
            else:
                choices = [r for r in rules if lawful({**state.rules, eq.op: r})]
            key = tuple(state.digits[s] for s in known_syms)
            used = set(state.digits.values())
            for rule in choices:
                for digits in joined(rule, eq.pattern, known).get(key, ()):
                    if any(digits[i] in used for _, i in fresh):
                        continue
                    grown.append(Explanation({**state.digits, **{s: digits[i] for s, i in fresh}},
                                             {**state.rules, eq.op: rule}))
        states = grown
        if not states:
            raise PromptError("no lawful explanation fits the examples")
        if len(states) > MAX_EXPLANATIONS:
            raise Ambiguous(f"more than {MAX_EXPLANATIONS} explanations fit the examples")
    return states


def answer_under(explanation: Explanation, query: SymbolEquation, level: int
                 ) -> tuple[Rule, int, int, int, str]:
    """(rule, a, b, value, answer symbols) of the query under one explanation."""
    if not set(query.left) <= explanation.digits.keys():
        raise Ambiguous("the query uses a symbol no example shows")
    a, b = (int("".join(str(explanation.digits[s]) for s in pair))
            for pair in (query.left[:2], query.left[2:]))
    rule = explanation.rules.get(query.op) or guessed_rule(level, explanation.rules)
    value = rule.apply(a, b)
    digit_symbol = {d: s for s, d in explanation.digits.items()}
    if not {int(d) for d in str(abs(value))} <= digit_symbol.keys():
        raise Ambiguous("the answer needs a digit whose symbol no example shows")
    return rule, a, b, value, encode(value, digit_symbol)


def solve_from_prompt(prompt: str, style: str = "compact") -> tuple[str, str]:
    examples, query = parse(prompt)
    seen_ops = {eq.op for eq in examples}
    level = level_of(seen_ops | {query.op})
    found = explanations(examples, level)
    if len({answer_under(e, query, level)[-1] for e in found}) != 1:
        raise Ambiguous(f"{len(found)} explanations disagree on the query")
    best = found[0]
    rule, a, b, value, answer = answer_under(best, query, level)
    return "\n".join(write_trace(examples, query, best, rule, a, b, value, answer)), answer


def write_trace(examples, query, best: Explanation, rule: Rule, a: int, b: int, value: int,
                answer: str) -> list[str]:
    by_digit = sorted(best.digits.items(), key=lambda item: item[1])
    trace = ["Digits: " + " ".join(f"{s}={d}" for s, d in by_digit),
             "Rules: " + ", ".join(f"'{op}' {r.name}" for op, r in best.rules.items())]
    for eq in examples:
        x, y = (int("".join(str(best.digits[s]) for s in pair))
                for pair in (eq.left[:2], eq.left[2:]))
        trace.append(f"{eq.line()} is {best.rules[eq.op].show(x, y)}")
    if query.op not in best.rules:
        used = ", ".join(r.group for r in best.rules.values())
        trace.append(f"Used: {used}. So '{query.op}' is {rule.name}")
    trace.append(f"Query {query.line()} is {rule.show(a, b)}")
    spelled = " ".join(f"{d}={best_symbol}" for d, best_symbol in
                       zip(str(abs(value)), answer.lstrip("-")))
    trace.append(check_line(f"{value} in symbols: {spelled}", answer))
    return trace
