"""FileWatcher: editor-style saves of watched files, on a real file system."""

from __future__ import annotations

import os
import queue
import time
from pathlib import Path

import pytest

from vmtui.watch import FileWatcher


class Calls:
    def __init__(self) -> None:
        self.queue: queue.Queue[set[Path]] = queue.Queue()
        self.all: list[set[Path]] = []

    def __call__(self, paths: set[Path]) -> None:
        self.all.append(paths)
        self.queue.put(paths)

    def next(self) -> set[Path]:
        # The timeout only guards against a hang; it is no speed check.
        return self.queue.get(timeout=30)


@pytest.fixture
def script(tmp_path: Path) -> Path:
    path = tmp_path / "test.py"
    path.write_text("start_all()\n")
    return path


def save_like_vim(path: Path, text: str) -> None:
    """Backup, write a temporary file, rename it over the original, fix the mode."""
    backup = path.with_name(path.name + "~")
    backup.write_text(path.read_text())
    temp = path.with_name(f".{path.name}.swp-tmp")
    temp.write_text(text)
    os.replace(temp, path)
    os.chmod(path, 0o644)
    backup.unlink()


def test_in_place_write_is_reported(script: Path) -> None:
    calls = Calls()
    with FileWatcher([script], calls):
        script.write_text("start_all()\nmachine.succeed('true')\n")
        assert calls.next() == {script.resolve()}


def test_rename_over_the_file_is_one_change(script: Path) -> None:
    calls = Calls()
    with FileWatcher([script], calls):
        save_like_vim(script, "start_all()\n# edit 1\n")
        assert calls.next() == {script.resolve()}
        # A second save keeps being seen after the first rename replaced the inode.
        script.with_name("sentinel").write_text("x")  # an unrelated file in the same directory
        save_like_vim(script, "start_all()\n# edit 2\n")
        assert calls.next() == {script.resolve()}
    assert calls.all == [{script.resolve()}, {script.resolve()}]


def test_several_files_and_directories(tmp_path: Path, script: Path) -> None:
    other_dir = tmp_path / "spec"
    other_dir.mkdir()
    spec = other_dir / "test.toml"
    spec.write_text("name = 'x'\n")
    calls = Calls()
    with FileWatcher([script, spec], calls):
        spec.write_text("name = 'y'\n")
        assert calls.next() == {spec.resolve()}
        script.write_text("pass\n")
        assert calls.next() == {script.resolve()}


def test_a_deleted_file_is_reported_when_it_comes_back(script: Path) -> None:
    calls = Calls()
    with FileWatcher([script], calls):
        script.unlink()
        script.write_text("start_all()\n# back\n")
        assert calls.next() == {script.resolve()}


def test_stop_ends_the_thread(script: Path) -> None:
    watcher = FileWatcher([script], lambda paths: None)
    watcher.start()
    thread = watcher._thread
    watcher.stop()
    assert thread is not None and not thread.is_alive()
    assert watcher.error is None


def test_nothing_to_watch_is_an_error() -> None:
    with pytest.raises(ValueError):
        FileWatcher([], lambda paths: None)


def test_a_burst_of_writes_is_coalesced(script: Path) -> None:
    calls = Calls()
    with FileWatcher([script], calls, step_ms=200, debounce_ms=2000):
        for n in range(5):
            script.write_text(f"start_all()\n# {n}\n")
            time.sleep(0.01)  # an editor writing in pieces, well inside one step
        assert calls.next() == {script.resolve()}
        save_like_vim(script, "start_all()\n# final\n")
        assert calls.next() == {script.resolve()}
    assert len(calls.all) == 2


def test_a_stop_racing_the_start_from_another_thread_never_fails(script: Path) -> None:
    # The app starts its watcher from a worker and stops it on unmount: a
    # stop landing between the thread's creation and its start used to raise
    # "cannot join thread before it is started".
    import threading

    errors: list[BaseException] = []
    for _ in range(200):
        watcher = FileWatcher([script], lambda paths: None)

        def start(w: FileWatcher = watcher) -> None:
            try:
                w.start(wait=False)
            except BaseException as error:  # noqa: BLE001 - collected for the assertion
                errors.append(error)

        starter = threading.Thread(target=start)
        starter.start()
        try:
            watcher.stop()
        except BaseException as error:  # noqa: BLE001
            errors.append(error)
        starter.join()
        watcher.stop()  # a start that won the race is stopped here
    assert errors == []
    assert not [t for t in threading.enumerate() if t.name == "vmtui-watch"]


def test_a_watcher_stopped_before_it_started_does_not_start(script: Path) -> None:
    import threading

    watcher = FileWatcher([script], lambda paths: None)
    watcher.stop()
    watcher.start()
    assert not [t for t in threading.enumerate() if t.name == "vmtui-watch"]
