"""The manual's generated config reference covers every key the loader knows, and its pages exist."""

from __future__ import annotations

import fnmatch
import importlib.util
import re
import sys
from pathlib import Path

import yaml

from dcgan_cli.config import Config, flatten

ROOT = Path(__file__).resolve().parents[1]


def reference_module():
    spec = importlib.util.spec_from_file_location("config_reference", ROOT / "docs/hooks/config_reference.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_every_key_the_loader_knows_has_a_comment_in_default_yaml():
    reference = reference_module()
    documented = reference.documented(reference.parse((ROOT / "configs/default.yaml").read_text()))
    keys = set(flatten(Config()))
    assert sorted(keys - set(documented)) == [], "keys the loader knows that configs/default.yaml does not document"
    assert sorted(set(documented) - keys) == [], "keys configs/default.yaml documents that the loader does not know"
    assert [key for key, text in documented.items() if not text] == [], "keys without a comment"


def test_an_undocumented_key_is_caught():
    reference = reference_module()
    text = re.sub(r"^  limit: null .*$", "  limit: null", (ROOT / "configs/default.yaml").read_text(), flags=re.M)
    documented = reference.documented(reference.parse(text))
    assert documented["data.limit"] == ""


def test_the_reference_page_has_a_row_per_key_with_its_default():
    """One row per key, showing the value default.yaml holds (which test_config checks is the loader's default)."""
    reference = reference_module()
    page = reference.on_page_markdown(f"# Config\n\n{reference.MARKER}\n", None, None, None)
    raw = yaml.safe_load((ROOT / "configs/default.yaml").read_text())
    for key in flatten(Config()):
        row = next((line for line in page.splitlines() if line.startswith(f"| `{key}` |")), None)
        assert row is not None, key
        section, name = key.split(".")
        assert yaml.safe_load(row.split("|")[2].strip().strip("`")) == raw[section][name], row


def test_every_page_in_the_navigation_exists_and_every_docs_page_is_in_it():
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text().replace("!!python", "python"))

    def pages(items):
        for item in items:
            value = next(iter(item.values())) if isinstance(item, dict) else item
            yield from pages(value) if isinstance(value, list) else [value]

    listed = set(pages(config["nav"]))
    # exclude_docs' folders (a study's state and report, kept as files, not as pages) are not pages
    folders = [line.strip().rstrip("/") for line in config["exclude_docs"].splitlines() if line.strip()]
    on_disk = {str(path.relative_to(ROOT / "docs")) for path in (ROOT / "docs").rglob("*.md")
               if not any(fnmatch.fnmatch(str(path.parent.relative_to(ROOT / "docs")), folder)
                          for folder in folders)}
    assert listed == on_disk
