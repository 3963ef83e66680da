"""docs/api.md documents every command the bridge accepts, with an example each."""

from __future__ import annotations

import re
from pathlib import Path

from bridge.api import COMMANDS
from bridge.backends.tuya.actions import TUYA_COMMANDS

DOC = (Path(__file__).parents[2] / "docs" / "api.md").read_text()


def sections() -> dict[str, str]:
    """Section title → its text."""
    parts = re.split(r"^## |^### ", DOC, flags=re.MULTILINE)
    return {part.split("\n", 1)[0].strip(): part for part in parts[1:]}


def test_every_command_has_a_section_with_an_example() -> None:
    documented = sections()
    for command in [*COMMANDS, *TUYA_COMMANDS]:
        assert command in documented, f"docs/api.md has no section for {command}"
        assert f"rr {command} '" in documented[command], f"no example for {command}"


def test_no_section_documents_a_command_that_does_not_exist() -> None:
    known = {*COMMANDS, *TUYA_COMMANDS}
    commands = {t for t in sections() if re.fullmatch(r"[a-z_]+(/[a-z_]+)*", t)}
    assert commands - {"tuya"} <= known
