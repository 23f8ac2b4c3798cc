"""Arithmetic written as steps a small model can carry out one line at a time.

The ``stepwise`` trace style never states a multi-digit result in one leap: a sum or a
difference goes column by column with its carry or borrow, a product goes digit by digit
of the second factor (each partial product column by column) and then adds the partial
products the same way. Every line reads at most two one-digit numbers and a carry, so a
135M student can compute it locally instead of copying a number it cannot produce.

Each function returns ``(lines, value)``; ``value`` is exact and equals Python's.
"""

from __future__ import annotations

PLACE_NAMES = ("ones", "tens", "hundreds", "thousands", "ten-thousands", "hundred-thousands")


def _place(index: int) -> str:
    return PLACE_NAMES[index] if index < len(PLACE_NAMES) else f"10^{index}"


def _digits(n: int) -> list[int]:
    """Least significant first."""
    return [int(d) for d in str(n)[::-1]]


def add_steps(a: int, b: int) -> tuple[list[str], int]:
    """``a + b`` for ``a, b >= 0``, column by column with the carry."""
    if a < 0 or b < 0:
        raise ValueError("add_steps takes non-negative numbers")
    da, db = _digits(a), _digits(b)
    lines, carry, out = [f"{a} + {b}, column by column:"], 0, []
    for i in range(max(len(da), len(db))):
        x = da[i] if i < len(da) else 0
        y = db[i] if i < len(db) else 0
        total = x + y + carry
        carried = f" + carry {carry}" if carry else ""
        digit, new_carry = total % 10, total // 10
        keep = f", write {digit} carry {new_carry}" if new_carry else ""
        lines.append(f"{_place(i)}: {x} + {y}{carried} = {total}{keep}")
        out.append(digit)
        carry = new_carry
    if carry:
        lines.append(f"{_place(len(out))}: carry {carry}")
        out.append(carry)
    value = int("".join(map(str, out[::-1])))
    lines.append(f"{a} + {b} = {value}")
    return lines, value


def sub_steps(a: int, b: int) -> tuple[list[str], int]:
    """``a − b`` for ``a, b >= 0``; when ``b > a`` it computes ``b − a`` and negates."""
    if a < 0 or b < 0:
        raise ValueError("sub_steps takes non-negative numbers")
    if b > a:
        lines, value = sub_steps(b, a)
        return ([f"{b} is larger than {a}, so {a} - {b} = -({b} - {a})", *lines[:-1],
                 f"{a} - {b} = -{value}"], -value)
    da, db = _digits(a), _digits(b)
    lines, borrow, out = [f"{a} - {b}, column by column:"], 0, []
    for i in range(len(da)):
        x, y = da[i], db[i] if i < len(db) else 0
        top = x - borrow
        borrowed = f" (after lending 1: {top})" if borrow else ""
        if top < y:
            lines.append(f"{_place(i)}: {x}{borrowed} < {y}, borrow 1: {top + 10} - {y} = "
                         f"{top + 10 - y}")
            out.append(top + 10 - y)
            borrow = 1
        else:
            lines.append(f"{_place(i)}: {x}{borrowed} - {y} = {top - y}")
            out.append(top - y)
            borrow = 0
    value = int("".join(map(str, out[::-1])))
    lines.append(f"{a} - {b} = {value}")
    return lines, value


def mul_steps(a: int, b: int) -> tuple[list[str], int]:
    """``a × b`` for ``a, b >= 0``: ``a`` times each digit of ``b`` (digit by digit with the
    carry), shifted to its place, then the partial products added column by column."""
    if a < 0 or b < 0:
        raise ValueError("mul_steps takes non-negative numbers")
    lines = [f"{a} * {b}, one digit of {b} at a time:"]
    partials = []
    for place, d in enumerate(_digits(b)):
        row, carry, out = [], 0, []
        for x in _digits(a):
            total = x * d + carry
            carried = f" + carry {carry}" if carry else ""
            keep = f", write {total % 10} carry {total // 10}" if total >= 10 else ""
            row.append(f"{x}*{d}{carried} = {total}{keep}")
            out.append(total % 10)
            carry = total // 10
        if carry:
            out.extend(_digits(carry))
        partial = int("".join(map(str, out[::-1]))) * 10 ** place
        shifted = f", shifted to the {_place(place)}: {partial}" if place else ""
        lines.append(f"{a} * {d} ({_place(place)} digit): " + "; ".join(row)
                     + f" -> {partial // 10 ** place}{shifted}")
        partials.append(partial)
    value = partials[0]
    for partial in partials[1:]:
        added, value = add_steps(value, partial)
        lines += added[:-1]  # the columns; the product's line follows below
    lines.append(f"{a} * {b} = {value}")
    return lines, value
