"""Rewrite the settings table of docs/user-guide.md from the settings model (run after changing a field).

    python scripts/update-settings-reference.py

``tests/controller/test_controller_settings.py`` fails while the table and the model disagree.
"""

from __future__ import annotations

from pathlib import Path

from controller.settings import settings_reference

GUIDE = Path(__file__).resolve().parents[1] / "docs" / "user-guide.md"
HEADER = "| key | default | allowed | meaning |"


def main() -> None:
    lines = GUIDE.read_text(encoding="utf-8").splitlines()
    start = lines.index(HEADER) + 2
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("|")), len(lines))
    rows = [f"| `{key}` | `{default}` | {allowed or '–'} | {meaning} |"
            for key, default, allowed, meaning in settings_reference()]
    GUIDE.write_text("\n".join([*lines[:start], *rows, *lines[end:]]) + "\n", encoding="utf-8")
    print(f"{GUIDE}: {len(rows)} settings")


if __name__ == "__main__":
    main()
