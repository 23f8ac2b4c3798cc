"""Arithmetic written as steps a small model can carry out one line at a time.

The ``stepwise`` trace style never states a multi-digit result in one leap: a sum or a
difference goes column by column with its carry or borrow, a product goes digit by digit
of the second factor (each partial product column by column) and then adds the partial
products the same way. Every line reads at most two one-digit numbers and a carry, so a
135M student can compute it locally instead of copying a number it cannot produce.

Each function returns ``(lines, value)``; ``value`` is exact and equals Python's.
"""

from __future__ import annotations

from decimal import Decimal

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


def _digit_row(a: int, d: int) -> tuple[str, int]:
    """``a × d`` for one digit ``d``, digit by digit of ``a`` with the carry, as one line."""
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
    return "; ".join(row), int("".join(map(str, out[::-1])))


def mul_steps(a: int, b: int) -> tuple[list[str], int]:
    """``a × b`` for ``a, b >= 0``: ``a`` times each digit of ``b`` (digit by digit with the
    carry), shifted to its place, then the partial products added column by column."""
    if a < 0 or b < 0:
        raise ValueError("mul_steps takes non-negative numbers")
    lines = [f"{a} * {b}, one digit of {b} at a time:"]
    partials = []
    for place, d in enumerate(_digits(b)):
        row, product = _digit_row(a, d)
        partial = product * 10 ** place
        shifted = f", shifted to the {_place(place)}: {partial}" if place else ""
        lines.append(f"{a} * {d} ({_place(place)} digit): {row} -> {product}{shifted}")
        partials.append(partial)
    value = partials[0]
    for partial in partials[1:]:
        added, value = add_steps(value, partial)
        lines += added[:-1]  # the columns; the product's line follows below
    lines.append(f"{a} * {b} = {value}")
    return lines, value


# --------------------------------------------------------------------------- decimals
# Gravity and unit conversion work on decimals: a decimal is an integer with a count of
# decimal places, so every step below is the integer steps above plus where the point goes.


def decimals(x: Decimal) -> int:
    """Decimal places as written: ``150.80`` has 2."""
    return max(0, -x.as_tuple().exponent)


def _scaled(x: Decimal, places: int) -> int:
    return int(x.scaleb(places))


def decimal_mul_steps(a: Decimal, b: Decimal) -> tuple[list[str], Decimal]:
    """``a × b`` exactly: the product of the digits without the points, then the point put
    back as many places from the right as ``a`` and ``b`` have together."""
    da, db = decimals(a), decimals(b)
    lines, product = mul_steps(_scaled(a, da), _scaled(b, db))
    value = Decimal(product).scaleb(-(da + db))
    if da + db:
        lines = [f"{a} * {b}: multiply without the points, then {da} + {db} = {da + db} "
                 f"decimal places", *lines, f"{product} with {da + db} decimal places: {value}"]
    return lines, value


def round_steps(x: Decimal, places: int) -> tuple[list[str], Decimal]:
    """``x`` (>= 0) rounded half-up to ``places`` decimals, read off the next digit (rounding
    up adds 1 in the last kept place, column by column)."""
    if decimals(x) <= places:
        return [], x.quantize(Decimal(1).scaleb(-places))
    kept = int(x.scaleb(places))  # cut after `places` decimals
    next_digit = int(x.scaleb(places + 1)) % 10
    if next_digit < 5:
        value = Decimal(kept).scaleb(-places)
        return [f"round {x} to {places} decimals: next digit {next_digit} < 5, keep "
                f"{value}"], value
    lines, up = add_steps(kept, 1)
    value = Decimal(up).scaleb(-places)
    return [f"round {x} to {places} decimals: next digit {next_digit} >= 5, add 1 to the last "
            f"kept digit", *lines[1:-1], f"rounded: {value}"], value


def div_steps(a: Decimal, b: Decimal, places: int) -> tuple[list[str], Decimal]:
    """``a ÷ b`` (both > 0) by long division, cut after ``places`` decimals or after the
    last decimal of ``a`` once ``b`` is shifted to a whole number, whichever is later (a cut
    value rounds half-up exactly as the full quotient does). One quotient digit at a time:
    the digit found by trying it and the next one (a one-digit product each), the remainder
    by column subtraction."""
    if a <= 0 or b <= 0:
        raise ValueError("div_steps takes positive numbers")
    shift = decimals(b)
    top, bottom = a.scaleb(shift), _scaled(b, shift)
    top_places = decimals(top)
    lines = [f"{a} / {b} = {top} / {bottom} (both times 10^{shift}), long division:" if shift
             else f"{a} / {b}, long division:"]
    written = str(_scaled(top, top_places)).zfill(top_places + 1)
    places = max(places, top_places)
    dividend = [*map(int, written), *[0] * (places - top_places)]
    whole_digits = len(written) - top_places
    quotient, remainder = [], 0
    for index, digit in enumerate(dividend):
        remainder = remainder * 10 + digit
        decimal_place = index - whole_digits + 1
        where = f" (decimal {decimal_place})" if decimal_place > 0 else ""
        if remainder < bottom:
            if any(quotient):  # the quotient's leading zeros are not written
                lines.append(f"bring down {digit}{where}: {remainder} < {bottom}, digit 0")
            quotient.append(0)
            continue
        q = max(d for d in range(1, 10) if bottom * d <= remainder)
        row, product = _digit_row(bottom, q)
        trial = f"{bottom}*{q}: {row} -> {product} <= {remainder}"
        if q < 9:
            next_row, next_product = _digit_row(bottom, q + 1)
            trial += f"; {bottom}*{q + 1}: {next_row} -> {next_product} > {remainder}"
        subtracted, left = sub_steps(remainder, product)
        step = f"bring down {digit}{where}" if any(quotient) else \
            f"first {index + 1} digits{where}"
        lines += [f"{step}: {remainder}; digit {q}", trial,
                  *subtracted[1:-1], f"remainder {left}"]
        quotient.append(q)
        remainder = left
    value = Decimal(int("".join(map(str, quotient)))).scaleb(-places)
    lines.append(f"quotient digits {''.join(map(str, quotient)).lstrip('0') or '0'}, the last "
                 f"{places} after the point: {value}")
    return lines, value
