"""MkDocs hook: the config reference page, generated from configs/default.yaml's own comments at every build.

The page can never drift from the loader: tests/test_docs.py checks that every key the loader knows has a comment
here, and the page is rebuilt from the file each time the manual is built.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_YAML = Path(__file__).resolve().parents[2] / "configs" / "default.yaml"
MARKER = "<!-- config-reference -->"
_SECTION = re.compile(r"^(\w+):\s*(?:#\s?(.*))?$")
_KEY = re.compile(r"^  (\w+):\s*(.*?)\s*(?:#\s*(.*))?$")
_MORE = re.compile(r"^\s+#\s*(.*)$")


@dataclass
class Key:
    """One documented key: its name, its default as written in the file, and its comment."""
    name: str
    default: str
    comment: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        """The comment's lines joined into one, continuation lines included."""
        return " ".join(part.strip() for part in self.comment if part.strip())


@dataclass
class Section:
    """One top-level section of the config, with its own comment and its keys in file order."""
    name: str
    comment: str
    keys: list[Key] = field(default_factory=list)


def parse(text: str) -> list[Section]:
    """Sections and keys of default.yaml, each key with its comment lines joined, continuation lines included."""
    sections: list[Section] = []
    for line in text.splitlines():
        if not line.strip() or (line.startswith("#") and not sections):
            continue
        if (match := _SECTION.match(line)) and not line.startswith(" "):
            sections.append(Section(match.group(1), (match.group(2) or "").strip()))
        elif (match := _KEY.match(line)) and sections:
            sections[-1].keys.append(Key(match.group(1), match.group(2), [match.group(3) or ""]))
        elif (match := _MORE.match(line)) and sections and sections[-1].keys:
            sections[-1].keys[-1].comment.append(match.group(1))
    return sections


def documented(sections: list[Section]) -> dict[str, str]:
    """{"section.key": comment} for every key, the comment's lines joined into one."""
    return {f"{s.name}.{k.name}": k.text for s in sections for k in s.keys}


def markdown(sections: list[Section]) -> str:
    """One table per section: key, default, what it does."""
    out = []
    for section in sections:
        out += [f"## `{section.name}`", ""]
        if section.comment:
            out += [section.comment[0].upper() + section.comment[1:] + ".", ""]
        out += ["| key | default | what it does |", "|---|---|---|"]
        for key in section.keys:
            text = key.text.replace("|", "\\|")
            out.append(f"| `{section.name}.{key.name}` | `{key.default}` | {text} |")
        out.append("")
    return "\n".join(out)


def on_page_markdown(text: str, page, config, files) -> str:
    """MkDocs hook: fill the marker on the reference page with the tables."""
    if MARKER not in text:
        return text
    return text.replace(MARKER, markdown(parse(DEFAULT_YAML.read_text())))
