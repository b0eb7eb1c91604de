"""The package's layers import downward only, as docs/layout.md draws them."""

from __future__ import annotations

import ast
import dataclasses
import importlib
import re
from pathlib import Path

from dcgan_cli.config import HacksConfig

PACKAGE = Path(__file__).resolve().parents[1] / "dcgan_cli"
# Bottom to top; a module may import from its own layer or any layer below it.
LAYERS = [
    {"config", "files", "images", "signals", "machine", "backend"},
    {"data"},
    {"nets"},
    {"state"},
    {"evaluate"},
    {"training"},
    {"ablate"},
    {"tune"},
    {"cli", "__main__"},
]


# Inside the packages split along their seams, bottom to top: a room imports only from the rooms before it.
ROOMS = {
    "config": ["schema", "checks", "edit", "loader"],
    "nets.hacks": ["architecture", "optimisers", "pixels", "labels", "d_inputs", "memory", "penalties"],
    "training": ["monitor", "upkeep", "steps", "compiled", "loops", "duties", "train"],
}


def layer(name: str) -> int:
    """The layer of `dcgan_cli.<name>...`: its first component after the package."""
    head = name.split(".")[0]
    return next(i for i, members in enumerate(LAYERS) if head in members)


def imports(path: Path) -> set[str]:
    """The dcgan_cli modules a file imports, without the package prefix, lazy imports inside functions included."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("dcgan_cli"):
            base = node.module.removeprefix("dcgan_cli").lstrip(".")
            found |= {f"{base}.{alias.name}".lstrip(".") for alias in node.names} if not base else {base}
        elif isinstance(node, ast.Import):
            found |= {alias.name.removeprefix("dcgan_cli.") for alias in node.names
                      if alias.name.startswith("dcgan_cli.")}
    return found


def test_every_module_imports_only_from_its_layer_or_below():
    upward = []
    for path in sorted(PACKAGE.rglob("*.py")):
        own = path.relative_to(PACKAGE).with_suffix("").parts
        if own == ("__init__",):
            continue
        for target in imports(path):
            if layer(target) > layer(own[0]):
                upward.append(f"{'/'.join(own)} imports {target}")
    assert upward == []


def test_the_rooms_of_a_split_package_import_only_the_rooms_before_them():
    backward = []
    for package, rooms in ROOMS.items():
        folder = PACKAGE.joinpath(*package.split("."))
        assert {path.stem for path in folder.glob("*.py")} >= set(rooms), package
        for k, room in enumerate(rooms):
            for target in imports(folder / f"{room}.py"):
                head, _, rest = target.partition(package + ".")
                sibling = rest.split(".")[0] if not head and rest else None
                if sibling in rooms and rooms.index(sibling) >= k:
                    backward.append(f"{package}.{room} imports {target}")
    assert backward == []


def test_the_layers_name_every_module_and_package():
    tops = {path.stem if path.is_file() else path.name for path in PACKAGE.iterdir()
            if (path.suffix == ".py" or (path / "__init__.py").exists()) and path.name != "__init__.py"}
    assert tops == set().union(*LAYERS)


def test_an_upward_import_is_caught(tmp_path):
    module = tmp_path / "stats.py"
    module.write_text("def f():\n    from dcgan_cli.training import train\n")
    assert {layer(name) for name in imports(module)} == {layer("training")} and layer("training") > layer("evaluate")


def test_docs_hacks_names_each_hacks_function_where_it_is():
    """docs/hacks.md's "In the code" table: every hack 1-24 once, each function in the module it names."""
    text = (PACKAGE.parent / "docs" / "hacks.md").read_text()
    table = text[text.index("## In the code"):text.index("## What they did")]
    rows = re.findall(r"^\| (\d+) \| `(\w+)` \| (.+) \|$", table, flags=re.M)
    assert [int(number) for number, _, _ in rows] == list(range(1, 25))
    for number, key, functions in rows:
        for module, name in re.findall(r"`(\w+)\.(\w+)`", functions):
            assert callable(getattr(importlib.import_module(f"dcgan_cli.nets.hacks.{module}"), name)), number
        assert key in {f.name for f in dataclasses.fields(HacksConfig)}, key
