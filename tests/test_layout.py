"""The project's shape: the import graph of its own modules has no cycle and points one way,
and the package installs with pip as a console command."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import venv
from pathlib import Path

import pytest
from conftest import ROOT, feed
from feedserver import FeedServer

TOP_LEVEL = ("main", "webhook_server", "rss_poller", "event_handler")
PACKAGE = "status_monitor"
# Modules that parse: bytes or JSON in, events out. They never do I/O.
PURE = (
    "status_monitor.model",
    "status_monitor.sources.feeds",
    "status_monitor.sources.apis",
    "status_monitor.sources.kinds",
    "status_monitor.webhooks.payloads",
    "status_monitor.webhooks.signatures",
)
IO_MODULES = ("asyncio", "socket", "sqlite3", "httpx", "aiohttp", "fastapi", "starlette", "uvicorn", "apprise")
IO_OURS = ("status_monitor.storage", "status_monitor.sources.transport", "status_monitor.sources.detect", "status_monitor.outputs")


def own_modules(root: Path) -> dict[str, Path]:
    """Module name -> file, for the four top-level modules and every module of the package."""
    found = {name: root / f"{name}.py" for name in TOP_LEVEL}
    for path in (root / PACKAGE).rglob("*.py"):
        parts = path.relative_to(root).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports_of(path: Path, modules: dict[str, Path]) -> dict[str, set[str]]:
    """Every import in a file, at any depth (functions and `if TYPE_CHECKING:` included):
    our modules it names -> the set, and external top-level names under "external"."""
    ours: set[str] = set()
    external: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [f"{node.module}.{alias.name}" for alias in node.names] + [node.module]
        else:
            continue
        for name in names:
            # "from a.b import c": a.b.c where c is a module, else a.b
            target = next((name[:i] for i in _prefix_ends(name) if name[:i] in modules), None)
            if target is not None:
                ours.add(target)
            elif node.__class__ is ast.Import or name == getattr(node, "module", None):
                external.add(name.split(".")[0])
    return {"ours": ours, "external": external}


def _prefix_ends(name: str) -> list[int]:
    ends = [i for i, char in enumerate(name) if char == "."] + [len(name)]
    return sorted(ends, reverse=True)


def graph(root: Path) -> dict[str, dict[str, set[str]]]:
    modules = own_modules(root)
    return {name: imports_of(path, modules) for name, path in modules.items()}


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """A cycle of the directed graph as a list of nodes (first repeated last), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_cycle_finder_finds_a_cycle_and_only_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_the_import_graph_has_no_cycle():
    edges = {name: found["ours"] - {name} for name, found in graph(ROOT).items()}
    assert find_cycle(edges) is None


def test_dependencies_point_one_way():
    found = graph(ROOT)
    for name, imports in found.items():
        if name.startswith(PACKAGE):
            assert not imports["ours"] & set(TOP_LEVEL), f"{name} imports a top-level module"
    assert found["status_monitor.model"]["ours"] == set(), "the event model imports nothing of ours"
    for name in PURE:
        ours, external = found[name]["ours"], found[name]["external"]
        assert not external & set(IO_MODULES), f"{name} (pure parsing) imports {external & set(IO_MODULES)}"
        assert not [m for m in ours if m.startswith(IO_OURS)], f"{name} (pure parsing) imports I/O of ours"


def test_the_root_holds_the_four_modules_and_the_package():
    python_files = sorted(path.name for path in ROOT.glob("*.py"))
    assert python_files == sorted(f"{name}.py" for name in TOP_LEVEL)
    assert (ROOT / PACKAGE / "__init__.py").exists()


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The project installed by pip into a fresh venv, outside the source tree; its
    dependencies and build backend are read from this environment's site-packages (a .pth
    file), so nothing is downloaded: pip and setuptools too. Returns the venv's bin folder."""
    folder = tmp_path_factory.mktemp("venv")
    venv.EnvBuilder(with_pip=False).create(folder)
    [site] = folder.glob("lib/python*/site-packages")
    (site / "test_dependencies.pth").write_text("\n".join(site_packages()) + "\n")
    source = tmp_path_factory.mktemp("source")  # a copy, so the build leaves nothing in the tree
    for name in ("pyproject.toml", "README.md", *(f"{module}.py" for module in TOP_LEVEL)):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / PACKAGE, source / PACKAGE, ignore=shutil.ignore_patterns("__pycache__"))
    python = folder / "bin" / "python"
    result = subprocess.run(
        [str(python), "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--disable-pip-version-check", str(source)],
        capture_output=True, text=True, timeout=300, cwd=folder,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return folder / "bin"


def site_packages() -> list[str]:
    import site

    return [path for path in site.getsitepackages() if Path(path).is_dir()]


def run_installed(command: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    return subprocess.run([str(command), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def test_the_installed_copy_is_what_runs(installed, tmp_path):
    where = run_installed(installed / "python", "-c", "import main, status_monitor; print(main.__file__, status_monitor.__file__)", cwd=tmp_path)
    assert where.returncode == 0 and "site-packages" in where.stdout and str(ROOT) not in where.stdout
    catalogue = run_installed(installed / "python", "-c", "from status_monitor.sources.catalogue import CATALOGUE_PATH as p; print(p.exists())", cwd=tmp_path)
    assert catalogue.stdout.strip() == "True"


def test_installed_command_shows_help_and_the_catalogue(installed, tmp_path):
    command = installed / "status-monitor"
    help_text = run_installed(command, "--help", cwd=tmp_path)
    assert help_text.returncode == 0 and "--once" in help_text.stdout
    providers = run_installed(command, "--list-providers", cwd=tmp_path)
    assert providers.returncode == 0 and "github" in providers.stdout and "anthropic" in providers.stdout


def test_installed_command_polls_a_loopback_feed_once(installed, tmp_path):
    server = FeedServer()
    try:
        server.set("/history.atom", feed("statuspage_github_history.atom"))
        config = tmp_path / "monitor.toml"
        config.write_text(f'[[feeds]]\nname = "GitHub"\nurl = "{server.url("/history.atom")}"\nkind = "statuspage"\n')
        result = run_installed(installed / "status-monitor", "--config", str(config), "--once", "--replay", "--json", "--state", ":memory:", cwd=tmp_path)
    finally:
        server.close()
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) > 10 and all('"provider":"GitHub"' in line for line in lines)


def test_pyproject_pins_what_requirements_txt_pins():
    import tomllib

    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    pinned = [
        line.split("#")[0].strip() for line in (ROOT / "requirements.txt").read_text().splitlines()
        if line.split("#")[0].strip()
    ]
    assert sorted(declared) == sorted(pinned)
