"""Equation (numeric): ``AB?CD = result`` where each operator symbol hides one rule.

The rules and the laws a problem obeys are in :mod:`.equation_rules`.

- *deduce* (medium): the query's operator appears in the examples. The solver keeps every
  rule of the level that fits all of that operator's examples; they must agree on the query.
- *guess* (hard): the query's operator appears in no example. The solver finds every lawful
  way to explain all the examples (distinct groups, one digit order) and applies law 4 —
  the query's operator is the one unused group, in the problem's digit order, no offset.
  Every explanation must give the same answer.
"""

from __future__ import annotations

import random
import re

from reasondistill.data.puzzles.common import (
    Ambiguous,
    Draft,
    PromptError,
    check_line,
    render_prompt,
    split_prompt,
)
from reasondistill.data.puzzles.equation_rules import (
    Equation,
    Rule,
    draw_problem,
    guessed_rule,
    lawful_assignments,
    level_of,
    rules_at_level,
)

NAME = "equation_numeric"
LEVELS = (1, 2, 3)
STYLES = ("compact", "stepwise")
VARIANTS = ("deduce", "guess")
OPERATORS = "+-*/%^&|#@!~<>?$"
EXAMPLES_PER_OPERATOR = 2
STORY = "a secret set of transformation rules is applied to equations."
ASK = "determine the result for"
EXAMPLE_LINE = re.compile(r"(\d\d)(\S)(\d\d) = (-?\d+)")
QUERY = re.compile(r"(\d\d)(\S)(\d\d)")


def write(eq: Equation) -> str:
    return f"{eq.a}{eq.op}{eq.b}"


def draw(rng: random.Random, level: int, variant: str) -> Draft:
    rules, examples, query = draw_problem(rng, level, variant, OPERATORS, EXAMPLES_PER_OPERATOR)
    lines = [f"{write(eq)} = {rules[eq.op].apply(eq.a, eq.b)}" for eq in examples]
    prompt = render_prompt(rng, STORY, lines, ASK, write(query))
    hidden = {op: rule.name for op, rule in rules.items()}
    return Draft(prompt, str(rules[query.op].apply(query.a, query.b)), hidden)


def parse(prompt: str) -> tuple[list[tuple[Equation, int]], Equation]:
    parts = split_prompt(prompt)
    examples = []
    for line in parts.example_lines:
        match = EXAMPLE_LINE.fullmatch(line)
        if match is None:
            raise PromptError(f"not an equation example: {line!r}")
        examples.append((Equation(int(match[1]), match[2], int(match[3])), int(match[4])))
    query = QUERY.fullmatch(parts.query)
    if query is None:
        raise PromptError(f"not an equation query: {parts.query!r}")
    return examples, Equation(int(query[1]), query[2], int(query[3]))


def fitting_rules(examples: list[tuple[Equation, int]], rules: tuple[Rule, ...]
                  ) -> dict[str, list[Rule]]:
    """For each operator of the examples, the rules that fit all of its examples."""
    operators = dict.fromkeys(eq.op for eq, _ in examples)
    return {op: [r for r in rules if all(r.apply(eq.a, eq.b) == result
                                         for eq, result in examples if eq.op == op)]
            for op in operators}


def explain(op: str, rule: Rule, examples: list[tuple[Equation, int]]) -> list[str]:
    lines = [f"{write(eq)} = {result}: {rule.show(eq.a, eq.b)}"
             for eq, result in examples if eq.op == op]
    return lines + [f"So '{op}' is {rule.name}"]


def identify_stepwise(op: str, rule: Rule, examples: list[tuple[Equation, int]],
                      level: int) -> list[str]:
    """How the ``stepwise`` style finds ``op``'s rule: each candidate of the level, in order,
    computed step by step on ``op``'s examples until one differs (rejected) or all match;
    ``rule`` (the one the solution uses) is the first candidate that matches all of them
    and is not left to another operator."""
    own = [(eq, result) for eq, result in examples if eq.op == op]
    lines = [f"Examples with '{op}': " + ", ".join(f"{write(eq)} = {r}" for eq, r in own)]
    for candidate in rules_at_level(level):
        fits_all = True
        for eq, result in own:
            work, value = candidate.steps(eq.a, eq.b)
            lines += [f"Try {candidate.name} on {write(eq)}:", *work]
            if value != result:
                lines.append(f"{value} is not {result}, so '{op}' is not {candidate.name}")
                fits_all = False
                break
            lines.append(f"{value} = {result}, fits")
        if candidate == rule:
            return lines + [f"So '{op}' is {rule.name}"]
        if fits_all:
            lines.append(f"{candidate.name} fits too, but each rule group is used once: "
                         f"it belongs to another operator")
    raise AssertionError(f"{rule.name} is not a candidate at level {level}")


def query_lines(query: Equation, rule: Rule, style: str) -> list[str]:
    if style == "stepwise":
        work, _ = rule.steps(query.a, query.b)
        return [f"Query {write(query)} with {rule.name}:", *work]
    return [f"Query {write(query)}: {rule.show(query.a, query.b)}"]


def solve_from_prompt(prompt: str, style: str = "compact") -> tuple[str, str]:
    examples, query = parse(prompt)
    seen_ops = {eq.op for eq, _ in examples}
    level = level_of(seen_ops | {query.op})
    if query.op in seen_ops:
        return solve_deduce(examples, query, level, style)
    return solve_guess(examples, query, level, style)


def solve_deduce(examples, query: Equation, level: int, style: str = "compact"
                 ) -> tuple[str, str]:
    own = [(eq, result) for eq, result in examples if eq.op == query.op]
    candidates = fitting_rules(own, rules_at_level(level))[query.op]
    if len({r.apply(query.a, query.b) for r in candidates}) != 1:
        raise Ambiguous(f"{len(candidates)} rules fit '{query.op}' and disagree on the query")
    rule = candidates[0]
    answer = str(rule.apply(query.a, query.b))
    if style == "stepwise":
        found = identify_stepwise(query.op, rule, examples, level)
    else:
        found = [f"Examples with '{query.op}':", *explain(query.op, rule, examples)]
    trace = [*found, *query_lines(query, rule, style),
             check_line(f"'{query.op}' is {rule.name} in all {len(own)} examples", answer)]
    return "\n".join(trace), answer


def solve_guess(examples, query: Equation, level: int, style: str = "compact"
                ) -> tuple[str, str]:
    candidates = fitting_rules(examples, rules_at_level(level))
    explanations = [(seen, guessed_rule(level, seen))
                    for seen in lawful_assignments(candidates)]
    if len({rule.apply(query.a, query.b) for _, rule in explanations}) != 1:
        raise Ambiguous(f"{len(explanations)} explanations disagree on the query")
    seen, rule = explanations[0]
    answer = str(rule.apply(query.a, query.b))
    identify = ((lambda op, r: identify_stepwise(op, r, examples, level)) if style == "stepwise"
                else (lambda op, r: explain(op, r, examples)))
    trace = [line for op, seen_rule in seen.items() for line in identify(op, seen_rule)]
    used = ", ".join(r.group for r in seen.values())
    trace += [f"Used: {used}. Unused: {rule.group}.",
              f"So '{query.op}' is {rule.name}",
              *query_lines(query, rule, style),
              check_line(f"each rule once, '{query.op}' is the unused {rule.group}", answer)]
    return "\n".join(trace), answer
