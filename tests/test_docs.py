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


MACHINE_PATH = re.compile(r"(?<![\w.~])/(?:work|root|home|Users|mnt|scratch)/[\w.-]+|[A-Z]:\\\\Users")


def committed_text_files() -> list[Path]:
    """Every file git tracks that reads as UTF-8 text (images and archives skipped)."""
    import subprocess

    names = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True,
                           check=True).stdout.split("\0")
    found = []
    for name in filter(None, names):
        path = ROOT / name
        try:
            path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, IsADirectoryError, FileNotFoundError):
            continue
        found.append(path)
    return found


def test_no_committed_file_names_a_path_of_the_machine_that_wrote_it():
    """Study state, reports and pages name their files relative to the repository (a study restored from
    docs/studies/ resumes anywhere); a path of one machine's disk in them is a leak and breaks elsewhere."""
    leaks = [f"{path.relative_to(ROOT)}: {match.group(0)}" for path in committed_text_files()
             for match in MACHINE_PATH.finditer(path.read_text(encoding="utf-8"))
             if path.name != "test_docs.py"]
    assert leaks == []


def test_a_machine_path_is_caught():
    assert MACHINE_PATH.search('"storage": "journal:/root/runs/mnist-tune/journal.log"')
    assert MACHINE_PATH.search("see /home/me/pictures") and not MACHINE_PATH.search("~/pictures or data/cifar10")


def opening_comment(text: str) -> list[str]:
    """The comment lines a config opens with, before its first key."""
    lines = []
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        lines.append(line)
    return lines


def test_every_shipped_config_opens_with_at_most_eight_lines_of_comment():
    """A config's comment says what it is for, how to run it, its headline figure and a link; the tables live on
    docs/results.md, so a config never carries a figure's history."""
    long = {path.name: len(opening_comment(path.read_text())) for path in sorted((ROOT / "configs").glob("*.yaml"))}
    assert {name: count for name, count in long.items() if count > 8} == {}
    assert all(count >= 1 for count in long.values()), long


def test_a_long_config_comment_is_caught():
    assert len(opening_comment("# one\n" * 9 + "data:\n  name: digits  # two\n")) == 9
