"""Where `--study NAME` is found: `./studies/NAME.toml` of the current folder first, then the studies
shipped with sweep (package data, so a plain `pip install` has them too)."""

from __future__ import annotations

import importlib.resources
from pathlib import Path

from sweep.errors import SweepError
from sweep.study.parse import load_toml
from sweep.study.spec import StudySpec

LOCAL_DIR = Path("studies")  # relative to the current folder


def shipped_dir() -> Path:
    """The folder of the study files that come with sweep."""
    return Path(str(importlib.resources.files("sweep") / "shipped" / "studies"))


def search_dirs(studies_dir: Path | None = None) -> list[Path]:
    """Where study names are looked up, first match wins: `studies_dir` alone when given, else
    ./studies and then the shipped folder."""
    if studies_dir is not None:
        return [Path(studies_dir)]
    return [LOCAL_DIR.absolute(), shipped_dir()]


def find_study(name: str, studies_dir: Path | None = None) -> Path | None:
    """The file of study `name`, None when no folder has one."""
    if "/" in name:
        return None
    for folder in search_dirs(studies_dir):
        path = folder / f"{name}.toml"
        if path.is_file():
            return path
    return None


def list_studies(studies_dir: Path | None = None) -> list[str]:
    """The names of the studies that `--study NAME` finds, sorted."""
    return sorted({path.stem for folder in search_dirs(studies_dir) for path in folder.glob("*.toml")})


def load_study(name_or_path: str | Path, *, studies_dir: Path | None = None) -> StudySpec:
    """Load a study by name ("optimizers" -> ./studies/optimizers.toml, else the shipped one) or by a
    path ending in .toml (used as is).

    Raises:
        SweepError: The study does not exist (listing the available ones) or the file is invalid.
    """
    text = str(name_or_path)
    if text.endswith(".toml"):
        path = Path(text)
        if not path.is_file():
            raise SweepError(f"{path}: study file not found; check the path")
        return load_toml(path)
    found = find_study(text, studies_dir)
    if found is None:
        folders = " and ".join(str(folder) for folder in search_dirs(studies_dir))
        available = ", ".join(list_studies(studies_dir)) or "none"
        raise SweepError(
            f"no study named '{text}' in {folders}; available studies: {available} "
            "(or give a path ending in .toml)"
        )
    return load_toml(found)


def study_name(name_or_path: str) -> str:
    """The stored study a `--study` argument means: a .toml file's study name, else the argument itself.

    Raises:
        SweepError: A .toml file that is missing or invalid.
    """
    return load_study(name_or_path).name if name_or_path.endswith(".toml") else name_or_path
