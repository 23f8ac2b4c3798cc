"""The data stage: load → validate → format → tokenize, with a report of every count.

``reasondistill data`` prints this report; ``train`` runs the same stage first, so what the
report says is exactly what the trainer gets.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from reasondistill.config import DataConfig, FormatConfig
from reasondistill.data.format import DROP_SHORT_TRACE, FormatSpec
from reasondistill.errors import DataError
from reasondistill.tokenize import DROP_ANSWER_TRUNCATED, TokenizedSet, tokenize_examples


def format_spec(cfg: FormatConfig) -> FormatSpec:
    return FormatSpec(prompt_suffix=cfg.prompt_suffix, min_trace_chars=cfg.min_trace_chars,
                      answer_only=cfg.answer_only)


@dataclass
class PreparedData:
    tokenized: TokenizedSet
    report: dict

    @property
    def examples(self):
        return self.tokenized.examples


def _percentiles(values: list[int], points=(50, 90, 99, 100)) -> dict[str, int]:
    if not values:
        return {f"p{p}": 0 for p in points}
    ordered = sorted(values)
    return {f"p{p}": ordered[min(len(ordered) - 1, (len(ordered) * p + 99) // 100 - 1)]
            for p in points}


def prepare_data(data_cfg: DataConfig, format_cfg: FormatConfig, tokenizer,
                 *, progress: bool = True) -> PreparedData:
    from reasondistill.data.loaders import load_examples

    loaded = load_examples(data_cfg)
    tokenized = tokenize_examples(
        tokenizer, loaded.examples, format_spec(format_cfg), max_length=format_cfg.max_length,
        truncate=format_cfg.truncate, enable_thinking=format_cfg.enable_thinking,
        progress=progress,
    )
    if not tokenized.rows:
        raise _nothing_left(loaded, tokenized, format_cfg)
    drops = Counter(loaded.drops) + tokenized.drops
    trace_cut = sum(1 for r in tokenized.rows if r.trace_cut)
    report = {
        "source": loaded.source,
        "rows_read": loaded.rows_read,
        "rows_used": len(tokenized.rows),
        "warnings": list(loaded.warnings),
        "drops": dict(sorted(drops.items())),
        "per_type": dict(sorted(Counter(e.type for e in tokenized.examples).items())),
        "per_difficulty": dict(sorted(Counter(e.difficulty for e in tokenized.examples).items())),
        "max_length": format_cfg.max_length,
        "truncate": format_cfg.truncate,
        "token_length": _percentiles(tokenized.full_lengths),
        "supervised_tokens": sum(r.n_supervised for r in tokenized.rows),
        # With plain right-truncation these rows would lose their answer; the policy
        # either dropped them (counted under drops) or cut their trace instead.
        "rows_answer_past_max_length": tokenized.drops.get(DROP_ANSWER_TRUNCATED, 0) + trace_cut,
        "rows_trace_cut": trace_cut,
    }
    return PreparedData(tokenized, report)


def _nothing_left(loaded, tokenized: TokenizedSet, cfg: FormatConfig) -> DataError:
    """Every row the loader kept was dropped by the format stage: that is the ``format``
    section's doing (a ``max_length`` below every row, a ``min_trace_chars`` above every
    trace), so the error names those keys rather than leaving an empty data set to fail
    later with nothing to point at."""
    reasons = ", ".join(f"{reason}: {n}" for reason, n in tokenized.drops.most_common())
    fixes = []
    if DROP_ANSWER_TRUNCATED in tokenized.drops:
        fixes.append(f"raise format.max_length (now {cfg.max_length})"
                     + (" or set format.truncate: trace" if cfg.truncate == "drop" else ""))
    if DROP_SHORT_TRACE in tokenized.drops:
        fixes.append(f"lower format.min_trace_chars (now {cfg.min_trace_chars})")
    return DataError(f"no rows left after formatting: all {len(loaded.examples)} rows were "
                     f"dropped ({reasons}); " + ("; ".join(fixes) or "check the format section"),
                     file=loaded.source)
