"""Print the committed benchmark results as Markdown tables (what the README shows).

    python bench/table.py            # every bench/results/*.json
"""

from __future__ import annotations

import json
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
QUALITY = ["NDCG@10", "HR@10", "NDCG@20", "HR@20", "MRR", "Coverage@10", "NDCG@10-tail-users",
           "NDCG@10-tail-items"]
COST = ["epochs_run", "epoch_s", "train_s", "peak_rss_mb"]


def markdown_table(records: list[dict], columns: list[str]) -> str:
    """One row per record; columns missing from every record are dropped."""
    columns = [c for c in columns if any(c in r["metrics"] for r in records)]
    lines = ["| dataset | model | " + " | ".join(columns) + " |", "|---|---|" + "---|" * len(columns)]
    for record in records:
        cells = [_cell(record["metrics"].get(c)) for c in columns]
        lines.append(f"| {record['dataset']} | {record['model']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _cell(value) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 10 else f"{value:.1f}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)


def main() -> None:
    for path in sorted(RESULTS.glob("*.json")):
        data = json.loads(path.read_text())
        if not isinstance(data, list) or not data or "metrics" not in data[0]:
            continue
        print(f"### {path.name}\n")
        metric_names = list(dict.fromkeys(k for r in data for k in r["metrics"]))
        if any(c in metric_names for c in QUALITY):
            print(markdown_table(data, QUALITY + COST), "\n")
        else:
            print(markdown_table(data, metric_names), "\n")


if __name__ == "__main__":
    main()
