"""The registry of processes a job can run.

A process is a module with an entry function `main(pc, params)` whose docstring
documents it (served by `GET /processes/{name}`), optionally a `Params` model of
its params (`tasks/processes/_params.py`: validated at submit, published as JSON
Schema) and a module-level `QUEUE = "gpu"` naming its default queue (one of the
operator's `queue_resources`; `cpu` otherwise). Built-in processes are the
modules of this package; operators add more by dropping `<name>.py` files into
the folder named by the `process_path` setting.

Listing reads modules with `ast`; `params_model` imports a module for its
`Params` (process modules import geometry libraries inside `main` only, so the
API never loads them); the runner imports the one module a job needs.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import logging
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

logger = logging.getLogger(__name__)

BUILTIN_DIR = Path(__file__).parent
CUSTOM = "custom"

CUSTOM_DOC = """Run an uploaded Python script.

Send the script as the `script` form field; its entry function (default `main`,
or `config.entrypoint`) is called as `main(pc, params)` in a child process under
the job's time limit. `pc` is the same ProgramContext built-in processes get
(`pc.get_input_file()`, `pc.get_output_dir()`, `pc.progress_next(...)`, ...) and
the geometry toolbox is importable as `tasks.steps`. Return a JSON object: it
becomes the job's `result`.
"""


@dataclass(frozen=True)
class ProcessSpec:
    """Where a process lives and what it says about itself."""

    name: str
    path: str
    """Its source file."""
    module: str | None
    """Import name for built-ins; None for operator files (loaded by path)."""
    doc: str
    queue: str = "cpu"


def discover(process_path: str = "", allow_scripts: bool = False) -> dict[str, ProcessSpec]:
    """Every process available: built-ins, then operator files (which may not shadow built-ins)."""
    found: dict[str, ProcessSpec] = {}
    for file in sorted(BUILTIN_DIR.glob("*.py")):
        if file.stem.startswith("_"):
            continue
        found[file.stem] = _describe(file, module=f"{__name__}.{file.stem}")
    if process_path:
        for file in sorted(Path(process_path).expanduser().glob("*.py")):
            if file.stem.startswith("_"):
                continue
            if file.stem in found or file.stem == CUSTOM:
                logger.warning("operator process %s ignored: the name is taken by a built-in", file)
                continue
            try:
                found[file.stem] = _describe(file, module=None)
            except (SyntaxError, ValueError) as exc:
                logger.warning("operator process %s ignored: %s", file, exc)
    if allow_scripts:
        found[CUSTOM] = ProcessSpec(CUSTOM, "", None, CUSTOM_DOC, "cpu")
    return found


def _describe(file: Path, module: str | None) -> ProcessSpec:
    tree = ast.parse(file.read_text(encoding="utf-8"), filename=str(file))
    doc = None
    queue = "cpu"
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == "main":
            doc = ast.get_docstring(node) or ""
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "QUEUE" for t in node.targets
        ):
            queue = ast.literal_eval(node.value)
    if doc is None:
        raise ValueError("no main(pc, params) function")
    if not isinstance(queue, str) or not queue.isidentifier():
        raise ValueError(f"QUEUE must name a queue such as 'gpu', not {queue!r}")
    return ProcessSpec(file.stem, str(file), module, doc, queue)


_MODELS: dict[tuple[str, str], type | None] = {}


def params_model(spec: ProcessSpec):
    """The process's `Params` model (a pydantic model), or None when it declares none."""
    from tasks.processes._params import as_params_model

    if spec.name == CUSTOM:
        return None  # a script's own Params is checked where it runs, in its sandbox
    key = (spec.name, spec.path)
    if key not in _MODELS:
        _MODELS[key] = as_params_model(getattr(load_module(spec), "Params", None))
    return _MODELS[key]


def load_module(spec: ProcessSpec) -> ModuleType:
    """Import the process's module (in the worker that runs the job)."""
    if spec.module:
        return importlib.import_module(spec.module)
    module_spec = importlib.util.spec_from_file_location(f"pixyz_process_{spec.name}", spec.path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


def script_entry_error(source: bytes, entrypoint: str) -> str | None:
    """Why a script cannot be run with `entrypoint`, or None when it can."""
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        where = f"line {exc.lineno}: " if exc.lineno else ""
        return f"script is not valid Python: {where}{exc.msg}"
    except ValueError as exc:
        return f"script is not valid Python: {exc}"
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == entrypoint:
            return None
    return f"script has no top-level function '{entrypoint}' (the entry point)"
