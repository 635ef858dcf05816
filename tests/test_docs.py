"""The docs against the code: the study file reference lists exactly the keys the parser accepts (the old
names too), every TOML block in the docs is a study file the parser takes, the command reference names
every option, and every relative link and repository path points at a file that exists (a link's anchor
at a heading of it); no link leaves the repository."""

from __future__ import annotations

import argparse
import dataclasses
import re
import tomllib
from pathlib import Path

import pytest

from sweep.cli import build_parser as sweep_parser
from sweep.study import parse
from sweep.study.dimensions import RANGE_KEYS
from trainer.cli import build_parser as trainer_parser
from trainer.config import TrainConfig

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
REFERENCE = ROOT / "docs" / "reference" / "study-file.md"
FRAGMENT = "<!-- fragment -->"  # the line before a TOML block that is deliberately not a whole study file

_HEADING = re.compile(r"^## \[\[?([a-z_.]+)\]\]?\s*$")
_KEY_ROW = re.compile(r"^\| `([a-z_.]+)` \|")
_BLOCK = re.compile(r"^```toml\n(.*?)^```", re.M | re.S)
_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def _reference_sections() -> dict[str, list[str]]:
    """Each `## [table]` heading of the reference (and `## Old names still read`) -> the first-column keys
    of its table rows, `| `key` | ... |`."""
    sections: dict[str, list[str]] = {}
    current: str | None = None
    for line in REFERENCE.read_text().splitlines():
        if line.startswith("## "):
            match = _HEADING.match(line)
            current = match.group(1) if match else line[3:].strip()
            sections[current] = []
        elif current is not None and (row := _KEY_ROW.match(line)):
            sections[current].append(row.group(1))
    return sections


def _accepted() -> dict[str, set[str]]:
    """What the parser accepts, table by table."""
    tables = {table: set(keys) for table, keys in parse.TABLE_KEYS.items()}
    tables["train"] = {field.name for field in dataclasses.fields(TrainConfig)}
    tables["space"] = set(RANGE_KEYS)
    return tables


def test_every_key_the_parser_accepts_is_in_the_reference_under_its_table_and_no_other() -> None:
    sections = _reference_sections()
    for table, keys in _accepted().items():
        assert table in sections, f"{REFERENCE.name} has no '## [{table}]' section"
        listed = sections[table]
        assert len(listed) == len(set(listed)), f"[{table}] lists a key twice: {listed}"
        assert set(listed) == keys, (
            f"[{table}]: missing from the reference {sorted(keys - set(listed))}, "
            f"listed but not accepted {sorted(set(listed) - keys)}"
        )
    tables = set(_accepted()) | {"points", "resources.slurm"}
    for section, listed in sections.items():
        if section not in tables and not section.startswith("Old names"):
            assert not listed, f"'## {section}' lists keys of a table the parser does not have"


def test_every_old_name_the_parser_still_reads_is_in_the_reference_with_its_new_name() -> None:
    old_keys: dict[str, str] = parse.OLD_KEYS
    text = REFERENCE.read_text()
    section = text.split("\n## Old names still read\n", 1)[1].split("\n## ", 1)[0]
    rows = dict(re.findall(r"^\| `([a-z_.]+)` \| `([a-z_.]+)` \|", section, re.M))
    assert rows == old_keys
    accepted = _accepted()
    for new in old_keys.values():
        table, _, key = new.partition(".")
        assert key in accepted[table], new


def _toml_blocks() -> list[tuple[str, str]]:
    blocks = []
    for path in DOCS:
        text = path.read_text()
        for match in _BLOCK.finditer(text):
            before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1]
            if before.strip() == FRAGMENT:
                continue
            line = text[: match.start()].count("\n") + 1
            blocks.append((f"{path.relative_to(ROOT)}:{line}", match.group(1)))
    return blocks


BLOCKS = _toml_blocks()


def test_the_docs_show_toml_blocks_and_mark_few_as_fragments() -> None:
    assert len(BLOCKS) >= 10
    marked = sum(path.read_text().count(FRAGMENT) for path in DOCS)
    assert marked <= 3, f"{marked} TOML blocks are marked {FRAGMENT}: make them whole study files"


@pytest.mark.parametrize(("where", "block"), BLOCKS, ids=[where for where, _ in BLOCKS])
def test_every_toml_block_in_the_docs_parses_as_a_study_file(
    where: str, block: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)  # a [program]'s workdir is relative to the current folder for a text's source
    data = tomllib.loads(block)
    parse.parse_study(data, source=where, default_name="example")


def _slug(heading: str) -> str:
    """A heading's anchor as GitHub makes it: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    text = re.sub(r"^```.*?^```", "", path.read_text(), flags=re.M | re.S)
    return {_slug(line.lstrip("#")) for line in text.splitlines() if re.match(r"#{1,6} ", line)}


def test_every_relative_link_in_the_docs_points_at_a_file_that_exists() -> None:
    broken = []
    for path in DOCS:
        text = re.sub(r"^```.*?^```", "", path.read_text(), flags=re.M | re.S)
        for target in _LINK.findall(text):
            if re.match(r"[a-z]+:", target):
                broken.append(f"{path.relative_to(ROOT)}: {target} points outside the repository")
                continue
            file, _, anchor = target.partition("#")
            linked = (path.parent / file).resolve() if file else path
            if not linked.exists() or not linked.is_relative_to(ROOT):
                broken.append(f"{path.relative_to(ROOT)}: {target} is not a file of the repository")
            elif anchor and linked.suffix == ".md" and anchor not in _anchors(linked):
                broken.append(f"{path.relative_to(ROOT)}: {target} names no heading of {file or path.name}")
    assert not broken, "\n".join(broken)


def test_no_doc_points_outside_the_repository() -> None:
    urls = [
        f"{path.relative_to(ROOT)}: {url}"
        for path in DOCS
        for url in re.findall(r"https?://[^\s)`>]+", path.read_text())
        if not re.match(r"https?://(127\.0\.0\.1|localhost)[:/]", url)
    ]
    assert not urls, "\n".join(urls)


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))  # noqa: SLF001
    return dict(action.choices)


def _long_options(parser: argparse.ArgumentParser) -> set[str]:
    return {
        option
        for action in parser._actions  # noqa: SLF001
        for option in action.option_strings
        if option.startswith("--") and option != "--help"
    }


def _names(text: str, option: str) -> bool:
    """Whether `text` shows `option` in code: `--follow`, `--parallel N`."""
    return re.search(rf"`{re.escape(option)}[` ]", text) is not None


def test_the_command_reference_names_every_option_of_every_command() -> None:
    text = (ROOT / "docs" / "reference" / "commands.md").read_text()
    shared = text.split("\n## ", 1)[0]  # the options every sweep command takes
    missing = []
    for name, sub in _subparsers(sweep_parser()).items():
        section = shared + text.split(f"\n## sweep {name}\n", 1)[1].split("\n## ", 1)[0]
        missing += [f"sweep {name} {o}" for o in sorted(_long_options(sub)) if not _names(section, o)]
    section = text.split("\n## python -m trainer\n", 1)[1].split("\n## ", 1)[0]
    fields = {field.name for field in dataclasses.fields(TrainConfig)}  # the [train] reference has them
    for option in sorted(_long_options(trainer_parser())):
        if option.removeprefix("--").removeprefix("no-").replace("-", "_") in fields:
            continue
        if not _names(section, option):
            missing.append(f"python -m trainer {option}")
    assert not missing, missing


def test_every_repository_path_the_docs_name_exists() -> None:
    """`sweep/...`, `scripts/...` and the like in code spans: a moved or renamed file shows here."""
    tops = "sweep|trainer|tests|scripts|benchmarks|slurm_templates|examples|docs|studies|\\.ci"
    missing = [
        f"{path.relative_to(ROOT)}: {name}"
        for path in DOCS
        for name in re.findall(rf"`((?:{tops})/[\w./-]*)`", path.read_text())
        if not (ROOT / name).exists()
    ]
    assert not missing, "\n".join(missing)
