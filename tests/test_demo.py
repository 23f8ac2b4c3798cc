"""The demo's before → after table: accuracy with its interval, and which gains are clear."""

from rich.console import Console

from reasondistill.demo import before_after_table, clear_gains


def summary(overall, by_type):
    return {"accuracy": overall[0], "accuracy_ci": overall[1], "parse_rate": 1.0,
            "by_type": {name: {"n": 45, "accuracy": acc, "ci": ci, "parse_rate": 1.0}
                        for name, (acc, ci) in by_type.items()}}


BEFORE = summary((0.01, [0.0, 0.05]), {"numeral": (0.0, [0.0, 0.08]),
                                       "cipher": (0.02, [0.004, 0.12])})
AFTER = summary((0.3, [0.2, 0.4]), {"numeral": (0.5, [0.36, 0.64]),
                                    "cipher": (0.09, [0.035, 0.21])})


def test_a_gain_is_clear_only_when_the_intervals_do_not_overlap():
    assert clear_gains(BEFORE, AFTER) == ["numeral"]  # cipher's 3.5% is inside [0.4%, 12%]
    assert clear_gains(AFTER, BEFORE) == []


def test_the_table_shows_each_accuracy_with_its_interval():
    console = Console(width=120, record=True)
    console.print(before_after_table(BEFORE, AFTER))
    text = console.export_text()
    assert "50% [36%, 64%]" in text and "0% [0%, 8%]" in text and "30% [20%, 40%]" in text


def test_a_family_of_several_types_is_judged_on_its_pooled_count():
    from reasondistill.demo import with_families

    summary = {"accuracy": 0.1, "accuracy_ci": [0.05, 0.2], "by_type": {
        "numeral": {"n": 60, "correct": 30, "accuracy": 0.5, "ci": [0.38, 0.62]},
        "equation_numeric_deduce": {"n": 30, "correct": 3, "accuracy": 0.1, "ci": [0.03, 0.26]},
        "equation_numeric_guess": {"n": 30, "correct": 5, "accuracy": 0.17, "ci": [0.07, 0.34]}}}
    pooled = with_families(summary, ["numeral", "equation_numeric"])["by_type"]
    family = pooled["equation_numeric (all types)"]
    assert (family["n"], family["correct"]) == (60, 8)
    assert 0.06 < family["ci"][0] < family["accuracy"] < family["ci"][1]
    assert "numeral (all types)" not in pooled  # one type: the type's own row says it
    assert with_families(summary, None) == summary
