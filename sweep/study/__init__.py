"""Study files: the frozen StudySpec (`spec`), the file rules (`parse`), where names are found (`files`),
and what a study runs (`plan`).

The names below are loaded on first use: a job process unpickling a `Program` imports `spec` alone,
not the parser.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sweep.study.files import list_studies, load_study, study_name
    from sweep.study.parse import parse_study
    from sweep.study.spec import (
        Categorical,
        Dimension,
        FloatRange,
        IntRange,
        Program,
        Resources,
        StudySpec,
        params_text,
    )

_HOMES = {
    "list_studies": "files",
    "load_study": "files",
    "study_name": "files",
    "parse_study": "parse",
    **dict.fromkeys(
        (
            "Categorical",
            "Dimension",
            "FloatRange",
            "IntRange",
            "Program",
            "Resources",
            "StudySpec",
            "params_text",
        ),
        "spec",
    ),
}

__all__ = [
    "Categorical",
    "Dimension",
    "FloatRange",
    "IntRange",
    "Program",
    "Resources",
    "StudySpec",
    "list_studies",
    "load_study",
    "params_text",
    "parse_study",
    "study_name",
]


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'sweep.study' has no attribute {name!r}")
    return getattr(importlib.import_module(f"sweep.study.{_HOMES[name]}"), name)
