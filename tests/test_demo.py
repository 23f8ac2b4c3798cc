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
