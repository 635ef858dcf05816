"""`sweep report`: read studies, render their table and page, then write every file at the end.

The parts: `source` reads the stored trials (one query per table), `data` turns them and the run
dirs' metrics into frames, `table` writes the markdown/CSV/JSON, `html` the plotly page, `readme`
replaces a study's block in a README.

Everything is computed before the first write, so an error (unknown study, bad README markers, a
broken storage) leaves no file half-done or changed; the files are then written all or none (`files`).
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path

import optuna
from optuna.storages import RDBStorage

from sweep import base as base_mod
from sweep.errors import SweepError
from sweep.report.data import ReportData, collect
from sweep.report.files import write_all
from sweep.report.html import html_page
from sweep.report.readme import read_readme, replace_block
from sweep.report.table import csv_text, json_text, markdown_block, markdown_document
from sweep.store import storage as storage_mod
from sweep.study.files import find_study, load_study
from sweep.study.spec import StudySpec

FORMATS = ("md", "csv", "json")


@dataclass(frozen=True)
class Rendered:
    """One study's report, ready to write."""

    data: ReportData
    markdown: str  # NAME.md
    page: str  # NAME.html


def report(
    *,
    study: str | None,
    all_studies: bool = False,
    results_dir: Path,
    storage_url: str | None = None,
    readme: Path | None = None,
    fmt: str = "md",
    studies_dir: Path | None = None,
    out_dir: Path | None = None,
    all_configs: bool = False,
) -> str:
    """Report one study (or all of them) and return what `sweep report` prints.

    Writes `results_dir/NAME.md` and `NAME.html` (and `NAME.csv` / `NAME.json` for those formats) and,
    with `readme`, that file's block of each study.

    Args:
        study: A stored study's name, or a study file (.toml) whose name is looked up in the storage.
        all_studies: Report every study in the storage instead.
        results_dir: Where the files go; holds the default storage.
        storage_url: Any SQLAlchemy URL; default `sqlite:///<results_dir>/sweep.db`.
        readme: A markdown file whose `<!-- sweep:NAME -->` block is replaced (or added at its end).
        fmt: What is printed: md, csv or json.
        studies_dir: Where study files are looked up for [resources] and the param order (default:
            ./studies, then the shipped ones).
        out_dir: Where the files go instead of `results_dir` (`--out`): the results may be read-only.
        all_configs: Show the rows of configurations the study file no longer has (`--all`); they are
            named under the table either way.

    Raises:
        SweepError: An unknown study or format, a missing storage, a bad README; nothing is written then.
    """
    if fmt not in FORMATS:
        raise SweepError(f"--format {fmt!r} is unknown; use one of {', '.join(FORMATS)}")
    if study is not None and all_studies:
        raise SweepError("give either --study NAME or --all")
    if study is None and not all_studies:
        raise SweepError("give --study NAME (with --all: every configuration of it) or --all")
    spec = load_study(study, studies_dir=studies_dir) if study and study.endswith(".toml") else None
    url = storage_mod.url_of(storage_url, results_dir)
    # read only: no alembic schema check (0.3 s of imports); an unknown schema falls back to get_trials
    storage = storage_mod.open_storage(url, create=False, check_schema=False)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with storage_mod.storage_errors(url):
        names = storage_mod.study_names(storage) if all_studies else [spec.name if spec else str(study)]
        datas = [_collect(name, storage, url, spec, studies_dir, all_configs) for name in names]
    rendered = [Rendered(data=data, markdown=markdown_document(data), page=html_page(data)) for data in datas]
    if not rendered:
        return f"no studies in {storage_mod.shown(url)}\n"
    target = Path(out_dir if out_dir is not None else results_dir)
    files = _files(target, rendered, fmt)
    if readme is not None:  # resolved: a symlinked README stays a link
        files.append((Path(readme).resolve(), _readme_text(readme, rendered)))
    _make_out_dir(target, "--out" if out_dir is not None else "--results-dir")
    write_all(files)
    return _stdout(rendered, fmt)


def _make_out_dir(folder: Path, option: str) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise SweepError(
            f"{option} {folder}: cannot create it ({err.strerror}); "
            "give a folder you can write to with --out DIR"
        ) from None


def _collect(
    name: str,
    storage: RDBStorage,
    url: str,
    spec: StudySpec | None,
    studies_dir: Path | None,
    all_configs: bool,
) -> ReportData:
    study = storage_mod.load_existing(name, storage, url=url)
    spec = base_mod.applied(spec or _find_spec(name, studies_dir), study)  # the values its trials ran
    inherited = base_mod.of(study)
    data = collect(study, spec, storage=storage, show_all=all_configs)
    return dataclasses.replace(data, base=inherited.source_line() if inherited is not None else None)


def _find_spec(name: str, studies_dir: Path | None) -> StudySpec | None:
    """The study file of a stored study, when one is found; else None (the storage alone)."""
    path = find_study(name, studies_dir)
    return load_study(path) if path is not None else None


def _readme_text(readme: Path, rendered: list[Rendered]) -> str:
    text = read_readme(readme)
    for item in rendered:
        text = replace_block(text, item.data.info.name, markdown_block(item.data), source=str(readme))
    return text


def _files(results_dir: Path, rendered: list[Rendered], fmt: str) -> list[tuple[Path, str]]:
    """Each file the report writes in `results_dir`, with its text."""
    files: list[tuple[Path, str]] = []
    for item in rendered:
        name = file_stem(item.data.info.name)
        files += [
            (Path(results_dir) / f"{name}.md", item.markdown),
            (Path(results_dir) / f"{name}.html", item.page),
        ]
        if fmt != "md":
            files.append((Path(results_dir) / f"{name}.{fmt}", _machine([item], fmt)))
    return files


def file_stem(name: str) -> str:
    """The study name as a file name: a storage-only study may be named anything, 'a/b' included."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name).lstrip(".") or "study"


def _machine(rendered: list[Rendered], fmt: str) -> str:
    datas = [item.data for item in rendered]
    return csv_text(datas) if fmt == "csv" else json_text(datas)


def _stdout(rendered: list[Rendered], fmt: str) -> str:
    if fmt == "md":
        return "\n".join(item.markdown for item in rendered)
    return _machine(rendered, fmt)
