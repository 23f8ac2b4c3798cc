"""Terminal rendering of stage reports (rich tables); the JSON form is the same dict."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table


def _counts_table(title: str, counts: dict, total: int) -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column("value")
    table.add_column("rows", justify="right")
    table.add_column("share", justify="right")
    for key, count in counts.items():
        table.add_row(str(key), str(count), f"{count / max(total, 1):.1%}")
    return table


def print_data_report(report: dict, console: Console) -> None:
    used, read = report["rows_used"], report["rows_read"]
    console.print(f"[bold]data[/]: {report['source']}")
    console.print(f"rows read {read}, rows used {used}, dropped {read - used}")
    for warning in report.get("warnings", []):
        console.print(f"[yellow]warning:[/] {warning}")
    if report["drops"]:
        drops = Table(title="drops by reason", title_justify="left")
        drops.add_column("reason")
        drops.add_column("rows", justify="right")
        for reason, count in report["drops"].items():
            drops.add_row(reason, str(count))
        console.print(drops)
    console.print(_counts_table("rows per type", report["per_type"], used))
    console.print(_counts_table("rows per difficulty", report["per_difficulty"], used))
    lengths = report["token_length"]
    console.print(
        "token length (prompt + completion): "
        + ", ".join(f"{k} {v}" for k, v in lengths.items())
        + f"  vs max_length {report['max_length']}"
    )
    console.print(
        f"rows whose answer lies past max_length: {report['rows_answer_past_max_length']} "
        f"(truncate={report['truncate']}: {report['rows_trace_cut']} kept with a cut trace, "
        "the rest dropped)"
    )
    console.print(f"supervised (completion) tokens: {report['supervised_tokens']}")
