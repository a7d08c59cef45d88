"""The house follows the data: every import runs one way along the pipeline, from a
stage to a stage at or below it (docs/architecture.md draws the same map)."""

from __future__ import annotations

import ast
from pathlib import Path

import harness

ROOT = Path(harness.__file__).parent

# Each package or module of `harness`, by its stage, lowest first.
STAGES: dict[str, int] = {
    **dict.fromkeys(["errors", "times", "version", "progress", "files", "process",
                     "values", "dataflows"], 0),              # ground: no harness imports above
    **dict.fromkeys(["eventstreams", "store"], 1),           # the stream; object storage
    "recording": 2,                                          # recordings: made and read
    **dict.fromkeys(["serve", "source", "sink"], 3),         # playback; the flow's two ends
    "flows": 4,                                              # the flows and their one job
    "run": 5,                                                # running a job on any shape
    **dict.fromkeys(["check", "bench", "live", "report", "testing"], 6),  # built on runs
    **dict.fromkeys(["cli", "__main__", "__init__"], 7),     # the command line, the face
}


def stage(module: str) -> int:
    """The stage of a `harness.X...` module name."""
    parts = module.split(".")
    return STAGES[parts[1] if len(parts) > 1 else "__init__"]


def imports(path: Path) -> list[tuple[int, str]]:
    """Every `harness` module `path` imports, anywhere in it (a function's lazy import,
    a TYPE_CHECKING block), with its line."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] if node.module != "harness" else \
                [f"harness.{a.name}" for a in node.names]
            found.extend((node.lineno, name) for name in names if name.startswith("harness"))
        elif isinstance(node, ast.Import):
            found.extend((node.lineno, a.name) for a in node.names
                         if a.name.split(".")[0] == "harness")
    return found


def modules() -> list[tuple[str, Path]]:
    return [(".".join(("harness", *p.relative_to(ROOT).with_suffix("").parts)), p)
            for p in sorted(ROOT.rglob("*.py"))]


def test_every_module_has_a_stage() -> None:
    assert {m.split(".")[1] for m, _ in modules() if "." in m} <= set(STAGES)


def test_no_import_runs_from_a_lower_stage_to_a_higher_one() -> None:
    upward = [f"{path.relative_to(ROOT.parent)}:{line}: {module} (stage {stage(module)})"
              f" imports {target} (stage {stage(target)})"
              for module, path in modules() for line, target in imports(path)
              if stage(target) > stage(module)]
    assert not upward, "\n".join(upward)


def test_the_check_sees_an_upward_import(tmp_path: Path) -> None:
    low = tmp_path / "low.py"
    low.write_text("def f():\n    from harness.run.replay import replay\n")
    assert [stage(t) for _, t in imports(low)] == [5]
