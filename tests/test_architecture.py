"""The structure docs/architecture.md promises: who imports whom, one home for the stored schema and for
private API, and modules small enough to read."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = (
    "sweep.cli",
    "sweep.launcher",
    "sweep.commands",
    "sweep.report",
)
MAX_MODULE_LINES = 400
MAX_CLASS_LINES = 250
MAX_CLASS_LINES_ON_PURPOSE = 350  # a class larger "on purpose" still has a cap


def _modules(package: str) -> dict[str, Path]:
    """Module name -> file, for every module of a top-level package."""
    out = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def _imports(path: Path) -> set[str]:
    """Every module `path` imports, at the top or inside a function."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def _runtime_imports(path: Path) -> set[str]:
    """Every module `path` imports when it runs (at the top or inside a function), not those under
    `if TYPE_CHECKING:`; `from package import module` counts as the module."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                name = f"{node.module}.{alias.name}"
                found.add(name if name in ALL else node.module)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text()))
    return found


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import cycles of `graph` (module -> the modules it imports), each as the modules around it,
    one per strongly connected group (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                connect(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1 or node in graph.get(node, ()):
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return groups


def _starts(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == prefix or name.startswith(prefix + ".") for prefix in prefixes)


ALL = {**_modules("sweep"), **_modules("trainer")}


def test_no_module_of_sweep_or_the_trainer_imports_itself_through_others() -> None:
    # Imports inside functions count: they are how a cycle hides, and it bites when a module runs alone.
    graph = {module: {name for name in _runtime_imports(path) if name in ALL} for module, path in ALL.items()}
    cycles = import_cycles(graph)
    assert not cycles, "import cycles: " + "; ".join(" <-> ".join(cycle) for cycle in cycles)


def test_the_cycle_check_finds_a_cycle_through_a_function_level_import(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text("import b\n")
    (tmp_path / "b.py").write_text("def f():\n    from c import g\n")
    (tmp_path / "c.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import d\nimport a\n"
    )
    (tmp_path / "d.py").write_text("import c\n")
    names = {"a", "b", "c", "d"}
    graph = {p.stem: _runtime_imports(p) & names for p in tmp_path.glob("*.py")}
    assert graph["c"] == {"a"}, "an import under TYPE_CHECKING is not a runtime import"
    assert import_cycles(graph) == [["a", "b", "c"]]
    assert import_cycles({**graph, "b": set()}) == []


# The import rule of docs/architecture.md: each module imports only from its own layer or a lower one
# (the longest prefix names a module's layer).
LAYERS = {
    "trainer": 0,  # the model, the data, the training loop
    "sweep": 1,  # foundations: errors, _compat, polling, procs, log
    "sweep.store": 1,  # the study database: storage, records, claims, owners, outage, tables, trial_frames
    "sweep.study": 2,  # study files: plain data and rules
    "sweep.executors": 3,  # where jobs run
    "sweep.store.configs": 4,  # a configuration's number and values (reads study files' plans)
    "sweep.gpu_hours": 4,  # what several commands read: GPU-hours, a detached launcher, a base study's
    "sweep.detached": 4,  # winner, a trial's row, the live view
    "sweep.base": 4,
    "sweep.views": 4,
    "sweep.launcher": 5,  # the commands
    "sweep.report": 5,
    "sweep.commands": 5,
    "sweep.cli": 6,  # a thin dispatcher over the commands
    "sweep.__main__": 7,
}


def _layer(module: str) -> int:
    prefix = max((p for p in LAYERS if _starts(module, (p,))), key=len)
    return LAYERS[prefix]


@pytest.mark.parametrize("module", sorted(ALL))
def test_each_module_imports_only_its_own_layer_or_below(module: str) -> None:
    up = [name for name in _runtime_imports(ALL[module]) if name in ALL and _layer(name) > _layer(module)]
    assert not up, f"{module} (layer {_layer(module)}) imports {[(n, _layer(n)) for n in up]}"


@pytest.mark.parametrize("module", sorted(_modules("trainer")))
def test_the_trainer_never_imports_sweep_optuna_or_submitit(module: str) -> None:
    bad = [name for name in _imports(ALL[module]) if _starts(name, ("sweep", "optuna", "submitit"))]
    assert not bad, f"{module} imports {bad}"


@pytest.mark.parametrize("module", sorted(m for m in ALL if _starts(m, ("sweep.report",))))
def test_the_report_reads_what_was_stored_and_never_imports_the_launcher(module: str) -> None:
    bad = [
        n for n in _imports(ALL[module]) if _starts(n, ("sweep.launch", "sweep.launcher", "sweep.executors"))
    ]
    assert not bad, f"{module} imports {bad}"


@pytest.mark.parametrize("module", sorted(m for m in ALL if _starts(m, ("sweep.executors", "sweep.study"))))
def test_backends_and_study_files_never_import_commands(module: str) -> None:
    bad = [name for name in _imports(ALL[module]) if _starts(name, (*COMMANDS, "sweep.launcher"))]
    if _starts(module, ("sweep.study",)):
        bad += [n for n in _imports(ALL[module]) if _starts(n, ("sweep.executors", "sweep.store.storage"))]
    assert not bad, f"{module} imports {bad}"


# Trial and study user attributes: where Optuna keeps what sweep stores (the schema of sweep.store.records).
STORED_ATTRS = ("user_attrs", "set_user_attr")
# Private API of Optuna and submitit that sweep uses (sweep._compat says why, each).
PRIVATE = (
    "_trial_id", "_storage", "_study_id", "_process", "_valid_parameters", "_make_sbatch_string", "_rdb",
    "_studies",  # Optuna's storage cache (sweep._compat.SharedDistributions)
    "system_attrs",  # Optuna's own bookkeeping of a trial (the params it was enqueued with)
)  # fmt: skip


def _attributes(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Attribute):
            names.add(node.attr)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.update(node.module.split("."))
            names.update(alias.name for alias in node.names)
    return names


@pytest.mark.parametrize("module", sorted(m for m in ALL if m.startswith("sweep")))
def test_only_records_touches_stored_attributes_and_only_compat_private_api(module: str) -> None:
    used = _attributes(ALL[module])
    if module != "sweep.store.records":
        assert not used & set(STORED_ATTRS), f"{module} reads or writes user attributes itself"
    if not _starts(module, ("sweep._compat",)):
        assert not used & set(PRIVATE), f"{module} uses private API {sorted(used & set(PRIVATE))}"


def test_every_stored_attribute_key_is_a_constant_of_records() -> None:
    # With the attribute rule above, the keys are spelled only here: no other module can reach them.
    from sweep.store import records

    keys = {value for name, value in vars(records).items() if name.isupper() and isinstance(value, str)}
    stored = {"config", "repeat", "executor", "launcher", "heartbeat", "run_dir", "submissions", "job_id"}
    others = {
        "traceback",
        "diverged",
        "waiting",
        "stalled",
        "confirm",
        "rung",
        "paused",
        "metric",
        "plan",
        "gpus",
        "detached",
        "budget",
        "base",
    }
    assert stored | others == keys


def _reason_to_be_large(docstring: str) -> str | None:
    """The sentence after "on purpose:" when it says what splitting the class would lose, else None."""
    found = re.search(r"\bon purpose:\s*(?P<reason>[^.]+)", docstring)
    if found is None:
        return None
    reason = " ".join(found["reason"].split())
    return reason if re.search(r"\bsplit", reason) and len(reason.split()) >= 8 else None


@pytest.mark.parametrize(
    "docstring",
    [
        "Runs one study. Large on purpose.",  # no reason
        "Runs one study; large on purpose: it is simpler.",  # says nothing of splitting
        "Runs one study; on purpose: split, it breaks.",  # too short to name what would be lost
    ],
)
def test_a_large_class_must_say_what_splitting_it_would_lose(docstring: str) -> None:
    assert _reason_to_be_large(docstring) is None
    reason = "its steps share one running set, and split over classes they would pass it at every call."
    assert _reason_to_be_large(f"Runs one study. About 300 lines, on purpose: {reason}") == reason[:-1]


@pytest.mark.parametrize("module", sorted(ALL))
def test_modules_and_classes_are_small_or_say_why(module: str) -> None:
    text = ALL[module].read_text()
    tree = ast.parse(text)
    assert len(text.splitlines()) <= MAX_MODULE_LINES, f"{module} has {len(text.splitlines())} lines"
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            size = (node.end_lineno or node.lineno) - node.lineno + 1
            name = f"{module}.{node.name}"
            assert size <= MAX_CLASS_LINES_ON_PURPOSE, f"{name} has {size} lines, a reason or not"
            if size > MAX_CLASS_LINES:
                reason = _reason_to_be_large(ast.get_docstring(node) or "")
                assert reason is not None, (
                    f"{name} has {size} lines (over {MAX_CLASS_LINES}) and its docstring does not say, after "
                    "'on purpose:', what splitting it would lose"
                )


def test_the_package_top_holds_at_most_twelve_flat_modules() -> None:
    # the rest lives in packages that say what they hold: store, commands, views, launcher, report, ...
    flat = sorted(path.name for path in (ROOT / "sweep").glob("*.py"))
    assert len(flat) <= 12, flat


def test_the_cli_is_a_thin_dispatcher() -> None:
    lines = len((ROOT / "sweep" / "cli.py").read_text().splitlines())
    assert lines <= 150, f"sweep/cli.py has {lines} lines: a command's parser belongs beside its handler"


def test_sweeps_own_tables_share_one_metadata() -> None:
    made = [module for module in ALL if module.startswith("sweep") and "MetaData(" in ALL[module].read_text()]
    assert made == ["sweep.store.tables"], made
