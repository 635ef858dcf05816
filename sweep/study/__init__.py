"""Study files: the frozen StudySpec (`spec`), the file rules (`parse`), where names are found (`files`),
and what a study runs (`plan`)."""

from sweep.study.files import list_studies, load_study, study_name
from sweep.study.parse import parse_study
from sweep.study.spec import Categorical, Dimension, FloatRange, IntRange, Resources, StudySpec, params_text

__all__ = [
    "Categorical",
    "Dimension",
    "FloatRange",
    "IntRange",
    "Resources",
    "StudySpec",
    "list_studies",
    "load_study",
    "params_text",
    "parse_study",
    "study_name",
]
