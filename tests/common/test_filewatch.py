"""FileWatcher: the one poll/hash loop behind routing, API key and certificate reloads."""

from __future__ import annotations

from pathlib import Path

import pytest

from predmesh.common.filewatch import FileWatcher


async def test_reload_applies_changes_and_keeps_last_good_on_bad_or_empty(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    path.write_text('{"a": 1}')
    applied: list[dict[str, int]] = []
    results: list[str] = []

    def load(contents: list[bytes]) -> dict[str, int]:
        import json

        value = json.loads(contents[0])
        if not isinstance(value, dict):
            raise ValueError("not a mapping")
        return value

    watcher = FileWatcher([path], load, applied.append, interval_s=0, on_result=results.append)
    await watcher.start()
    assert applied == [{"a": 1}] and results == ["applied"]

    path.write_text("")  # a non-atomic writer between truncate and write
    assert not await watcher.check_now()
    path.write_text("  \n")
    assert not await watcher.check_now()
    path.write_text("[1]")
    assert not await watcher.check_now()
    assert applied == [{"a": 1}] and results[1:] == ["rejected"] * 3 and watcher.rejected == 3

    assert not await watcher.check_now()  # the same bad content is reported once
    assert watcher.rejected == 3

    path.write_text("{}")  # clearing on purpose is an explicit empty document
    assert await watcher.check_now()
    assert applied[-1] == {} and results[-1] == "applied" and watcher.reloads == 1

    path.unlink()
    assert not await watcher.check_now()
    assert results[-1] == "unreadable" and applied[-1] == {}


async def test_empty_file_at_start_goes_to_load(tmp_path: Path) -> None:
    """At start there is no last good value to keep: `load` decides (and may raise)."""
    path = tmp_path / "f"
    path.write_text("")
    seen: list[list[bytes]] = []

    def record(contents: list[bytes]) -> int:
        seen.append(contents)
        return 0

    watcher = FileWatcher([path], record, lambda _: None, interval_s=0)
    await watcher.start()
    assert seen == [[b""]]

    def refuse(contents: list[bytes]) -> int:
        raise ValueError("empty")

    with pytest.raises(ValueError):
        await FileWatcher([path], refuse, lambda _: None, interval_s=0).start()
