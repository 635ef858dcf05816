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
    if name in __all__:  # the first of the modules below that defines it (spec is the cheap one)
        for module in ("spec", "files", "parse"):
            found = importlib.import_module(f"sweep.study.{module}")
            if hasattr(found, name):
                return getattr(found, name)
    raise AttributeError(f"module 'sweep.study' has no attribute {name!r}")
