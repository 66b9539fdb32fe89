"""The house's rules, checked on the code itself: the core imports without the heavy extras, no module imports in a
circle, and nothing imports upward (the CLI sits on top and is imported by nothing in the library; the comparison
harness and the training code sit above the core, which never imports them)."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import secondnature

PACKAGE = Path(secondnature.__file__).parent
HEAVY = ("gepa", "matplotlib", "torch", "transformers", "peft", "trl", "llama_cpp", "starlette", "uvicorn", "jinja2",
         "mcp", "psycopg", "ray")
# the layers above the core: the CLI, the comparison harness, training, and what speaks HTTP or MCP
UPPER = ("secondnature.cli", "secondnature.bench", "secondnature.train", "secondnature.serve", "secondnature.web",
         "secondnature.mcp_server")


def modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def imports(name: str, path: Path) -> set[str]:
    """The package's modules that `name` imports, at any depth of its code (imports inside functions count)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = package.split(".")[:len(package.split(".")) - node.level + 1] if node.level else []
            target = ".".join(base + ([node.module] if node.module else []))
            found |= {target} | {f"{target}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
    known = modules()
    return {m for m in found if m in known and m != name}


def graph() -> dict[str, set[str]]:
    return {name: imports(name, path) for name, path in modules().items()}


def test_the_core_imports_without_the_heavy_extras():
    core = [m for m in modules() if not m.startswith(UPPER)]
    blocker = ("import sys, importlib.abc\n"
               "class Block(importlib.abc.MetaPathFinder):\n"
               "    def find_spec(self, name, path=None, target=None):\n"
               f"        if name.split('.')[0] in {HEAVY!r}: raise ImportError('blocked: ' + name)\n"
               "sys.meta_path.insert(0, Block())\n"
               f"import importlib\nfor m in {sorted(core)!r}: importlib.import_module(m)\n"
               "import secondnature.cli\nprint('ok')\n")
    done = subprocess.run([sys.executable, "-c", blocker], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]


def test_no_module_imports_in_a_circle():
    g = graph()
    seen: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(m: str, path: list[str]) -> None:
        seen[m] = 1
        for n in sorted(g[m]):
            if seen.get(n) == 1 and n != m and not m.startswith(n + "."):  # a package importing its own child is fine
                raise AssertionError(" -> ".join(path + [m, n]))
            if n not in seen:
                visit(n, path + [m])
        seen[m] = 2
    for m in sorted(g):
        if m not in seen:
            visit(m, [])


def test_nothing_imports_upward():
    for name, deps in graph().items():
        if not name.startswith("secondnature.cli"):
            assert not {d for d in deps if d.startswith("secondnature.cli")}, f"{name} imports the CLI"
        if not name.startswith(UPPER):
            upward = {d for d in deps if d.startswith(UPPER)}
            assert not upward, f"the core module {name} imports {upward}"
        if name.startswith("secondnature.train"):
            assert not {d for d in deps if d.startswith("secondnature.bench")}, f"{name} imports bench"


def test_the_public_api_is_documented_and_typed():
    import inspect
    assert secondnature.__doc__ and len(secondnature.__all__) >= 20
    for name in secondnature.__all__:
        obj = getattr(secondnature, name)
        if inspect.isfunction(obj):
            assert obj.__doc__, f"{name} has no docstring"
            sig = inspect.signature(obj)
            assert sig.return_annotation is not inspect.Signature.empty, f"{name} has no return type"


def test_benchmarks_md_is_generated_from_the_records():
    root = PACKAGE.parent.parent
    done = subprocess.run([sys.executable, str(root / "benchmarks" / "report.py"), "--check"], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, "BENCHMARKS.md is stale: run python benchmarks/report.py\n" + done.stdout[-500:]
