"""The documentation stays true: generated pages equal what their generators write, the README stays a short
door with the two commands on top, and every relative link in README.md and docs/ leads somewhere."""

from __future__ import annotations

import dataclasses
import importlib.util
import re
import struct
import typing
from pathlib import Path

import pytest

from llmrec import config as C
from llmrec.docs import CONFIGURATION, configuration_markdown, field_doc

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
COMMANDS = ["./scripts/demo.sh", "./scripts/test.sh"]


@pytest.fixture(scope="module")
def table():
    spec = importlib.util.spec_from_file_location("bench_table", ROOT / "bench" / "table.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_configuration_reference_is_generated_from_the_config_dataclasses():
    assert CONFIGURATION.read_text(encoding="utf-8") == configuration_markdown(), \
        "docs/configuration.md is out of date: run python -m llmrec.docs"


def test_every_config_key_is_documented():
    undocumented = []
    for section in dataclasses.fields(C.RunConfig):
        hint = typing.get_type_hints(C.RunConfig)[section.name]
        cls, prefix = (hint, f"{section.name}.") if dataclasses.is_dataclass(hint) else (C.RunConfig, "")
        names = [f.name for f in dataclasses.fields(cls)] if cls is not C.RunConfig else [section.name]
        undocumented += [prefix + name for name in names if not field_doc(cls, name)]
    assert not undocumented, f"give these fields a docstring in llmrec/config.py: {undocumented}"
    text = CONFIGURATION.read_text(encoding="utf-8")
    for key in ("`interest.short_term`", "`profile.adapter`", "`eval.seed`", "`run_dir`", "`online.hybrid_mix`"):
        assert key in text


def test_benchmark_page_is_generated_from_the_results(table):
    assert (DOCS / "benchmarks.md").read_text(encoding="utf-8") == table.benchmarks_markdown(), \
        "docs/benchmarks.md is out of date: run python bench/table.py"


def test_readme_headline_table_is_generated_from_the_results(table):
    readme = README.read_text(encoding="utf-8")
    assert readme == table.readme_with_blocks(readme), "README's generated blocks are stale: run python bench/table.py"
    assert "| SASRec | 0.1520 | 0.2735 | 0.0540 | 0.0899 |" in readme  # the committed baselines records


def test_headline_plot_is_what_table_py_draws(table, tmp_path):
    fresh = tmp_path / "headline.png"
    table.plot_headline(fresh)
    assert png_size(DOCS / "headline.png") == png_size(fresh)
    assert "docs/headline.png" in README.read_text(encoding="utf-8")


def test_readme_is_a_short_door_with_the_two_commands_on_top():
    readme = README.read_text(encoding="utf-8")
    assert len(readme.encode("utf-8")) <= 16 * 1024
    first_block = readme.split("```bash\n", 1)[1].split("```", 1)[0]
    assert [line.split()[0] for line in first_block.splitlines()] == COMMANDS
    for command in COMMANDS:
        assert (ROOT / command).is_file()
    assert "exec scripts/test.sh" in (ROOT / ".ci" / "run").read_text(encoding="utf-8")  # CI runs the test command
    for section in ("## How it works", "## Quickstart", "## Benchmarks", "## Limitations", "## License"):
        assert section in readme


def test_relative_links_lead_to_files_and_headings():
    broken = []
    for page in [README, *sorted(DOCS.glob("*.md"))]:
        text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+://", target):
                continue
            path, _, fragment = target.partition("#")
            linked = (page.parent / path).resolve() if path else page
            if not linked.exists():
                broken.append(f"{page.name}: {target} (no such file)")
            elif fragment and linked.suffix == ".md" and fragment not in heading_anchors(linked):
                broken.append(f"{page.name}: {target} (no such heading)")
    assert not broken, broken


def heading_anchors(page: Path) -> set[str]:
    """The anchors GitHub gives a page's headings."""
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)
    anchors = set()
    for heading in re.findall(r"^#+ (.+)$", text, flags=re.M):
        kept = "".join(c for c in heading.lower() if c.isalnum() or c in " -_")
        anchors.add(kept.replace(" ", "-"))
    return anchors


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()[:24]
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", data[16:24])
