"""Screen panes: a node's screen in the TUI, kept fresh while it is visible.

`ScreenFeed` is the loop (no Textual in it): while its pane is visible it
takes a QMP screendump every `FRAME_INTERVAL`, and hands on a frame only
when its digest differs from the last one, so an idle screen costs one
dump and one hash per tick and nothing on the UI thread.  `ScreenPanes` is
the app's glue: opens a pane for a node, runs its feed in a thread worker,
scales each new frame there, and offers it to the pane, which draws the
newest offered picture on the UI thread.

Real pixels (Kitty's graphics protocol, Sixel) need `textual-image` to ask
the terminal what it supports before Textual starts; `pixel_image_class`
does that once, only where the terminal is known to speak one of them or
`VMTUI_SCREEN_PIXELS=on` says so (`off` never asks).
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from PIL import Image

from driver.errors import ConfigError, MachineError
from driver.screen import Frame

# 4 frames a second: above the 2 the screen pane promises, and a dump of an
# unchanged 1280x800 screen costs a few milliseconds (benchmarks/bench_screen.py).
FRAME_INTERVAL = 0.25
# When the machine is not running or has no screen, ask again this often.
RETRY_INTERVAL = 1.0


class ScreenFeed:
    """Polls one screen while visible; calls `deliver(frame)` for each changed frame.

    `grab()` takes a frame (raising MachineError when there is none);
    `report(message)` is told why there is no picture.  Runs in its own
    thread (`run`) until `stop()`.
    """

    def __init__(
        self,
        grab: Callable[[], Frame],
        deliver: Callable[[Frame], None],
        report: Callable[[str], None],
        *,
        interval: float = FRAME_INTERVAL,
    ) -> None:
        self._grab = grab
        self._deliver = deliver
        self._report = report
        self.interval = interval
        self.visible = threading.Event()
        self._stopped = threading.Event()
        self._last_digest: str | None = None
        self._last_problem: str | None = None
        self.frames_grabbed = 0
        self.frames_delivered = 0

    def stop(self) -> None:
        self._stopped.set()
        self.visible.set()  # wake a loop waiting to become visible

    @property
    def stopped(self) -> bool:
        return self._stopped.is_set()

    def redraw(self) -> None:
        """Deliver the next frame even if it did not change (the pane was resized)."""
        self._last_digest = None

    def run(self) -> None:
        while not self._stopped.is_set():
            if not self.visible.wait(timeout=RETRY_INTERVAL):
                continue
            if self._stopped.is_set():
                return
            started = time.monotonic()
            pause = self.interval
            try:
                frame = self._grab()
            except MachineError as error:
                problem = str(error)
                if problem != self._last_problem:
                    self._last_problem = problem
                    self._report(problem)
                self._last_digest = None
                pause = RETRY_INTERVAL
            else:
                self._last_problem = None
                self.frames_grabbed += 1
                if frame.digest != self._last_digest:
                    self._last_digest = frame.digest
                    self.frames_delivered += 1
                    self._deliver(frame)
            self._stopped.wait(max(0.0, pause - (time.monotonic() - started)))


def scaled_picture(frame: Frame, size: tuple[int, int]) -> Image.Image:
    """The frame as a picture of `size` pixels (for half-blocks or real pixels)."""
    image = Image.frombytes("RGB", (frame.width, frame.height), frame.pixels)
    if size == (frame.width, frame.height) or size[0] <= 0 or size[1] <= 0:
        return image
    # BOX averages every source pixel: thin console glyphs stay visible.
    return image.resize(size, Image.Resampling.BOX)


# Terminals known to show Kitty graphics or Sixel: asking others could hang
# on a terminal that never answers, or print the query.
_PIXEL_TERMINALS = ("kitty", "wezterm", "ghostty", "foot", "mlterm", "contour", "konsole", "iterm")


def pixel_image_class() -> type[Any] | None:
    """textual-image's widget for real pixels, or None for half-blocks; call before the app runs."""
    choice = os.environ.get("VMTUI_SCREEN_PIXELS", "auto").lower()
    if choice in ("off", "0", "no") or not (sys.__stdout__ and sys.__stdout__.isatty()):
        return None
    if choice == "auto":
        names = " ".join(os.environ.get(v, "") for v in ("TERM", "TERM_PROGRAM", "LC_TERMINAL")).lower()
        if "KITTY_WINDOW_ID" not in os.environ and not any(name in names for name in _PIXEL_TERMINALS):
            return None
    try:
        from textual_image import renderable
        from textual_image.widget import HalfcellImage, Image as AutoImage, UnicodeImage
    except Exception:  # noqa: BLE001 - any failure means half-blocks
        return None
    # textual-image picks its classes at import time from what the terminal
    # answered; when it settled on cells, there are no pixels to gain.
    fallbacks: tuple[object, ...] = (HalfcellImage, UnicodeImage)
    if renderable.Image in (renderable.HalfcellImage, renderable.UnicodeImage) or AutoImage in fallbacks:
        return None
    return AutoImage


class ScreenPanes:
    """Open screen panes of one app: which machine, which feed, which worker."""

    def __init__(self, app: Any, find_machine: Callable[[str], Any], pixel_class: type[Any] | None = None) -> None:
        self._app = app
        self._find_machine = find_machine
        self.pixel_class = pixel_class
        self.feeds: dict[str, ScreenFeed] = {}

    def open(self, machine_name: str, parent: Any) -> Any:
        """Mount a pane for the node in `parent` (or focus the open one); returns it."""
        from widgets.screen_view import ScreenPane

        for pane in self._app.query(ScreenPane):
            if pane.machine == machine_name:
                pane.view.focus()
                return pane
        pane = ScreenPane(machine_name, pixel_class=self.pixel_class)
        parent.mount(pane)
        # The machine is looked up for every dump and key: a node restarted
        # after a rebuild is a new Machine object under the same name.
        def grab() -> Frame:
            return self._machine(machine_name).screen_frame()  # type: ignore[no-any-return]

        pane.view.target = _KeySender(lambda key: self._machine(machine_name).press_key(key), pane.offer_message)
        feed = ScreenFeed(
            grab,
            lambda frame: self._deliver(pane, frame),
            pane.offer_message,
        )
        self.feeds[machine_name] = feed
        # Frames only while the pane is on screen (not behind a maximised
        # pane, not removed); a resize asks for a redraw at the new size.
        pane.view.visibility_changed = lambda shown: feed.visible.set() if shown else feed.visible.clear()
        pane.view.resized = feed.redraw
        feed.visible.set()
        self._app.run_worker(feed.run, thread=True, group="screen", name=f"screen {machine_name}", exit_on_error=False)
        self._app.call_after_refresh(pane.view.focus)
        return pane

    def _machine(self, name: str) -> Any:
        try:
            return self._find_machine(name)
        except (ConfigError, LookupError, AttributeError) as error:
            raise MachineError(f"{name}: no such machine in this session") from error

    def close(self, pane: Any) -> None:
        """Stop the pane's feed and remove it."""
        feed = self.feeds.pop(pane.machine, None)
        if feed is not None:
            feed.stop()
        pane.remove()

    def close_all(self) -> None:
        for feed in self.feeds.values():
            feed.stop()
        self.feeds.clear()

    def _deliver(self, pane: Any, frame: Frame) -> None:
        # In the feed's thread: scaling is the costly part, kept off the UI thread.
        if pane.uses_pixels:
            size = (frame.width, frame.height)
        else:
            size = pane.view.cell_pixels(frame.width, frame.height)
        # Never waits for the UI (so no feed can hang an exiting app); a busy
        # UI draws only the newest picture.
        pane.offer((frame.width, frame.height), scaled_picture(frame, size))


class _KeySender:
    """Sends typed keys to the machine in order, off the UI thread."""

    def __init__(self, press: Callable[[str], None], on_error: Callable[[str], None]) -> None:
        self._press = press
        self._on_error = on_error
        self._lock = threading.Lock()
        self._queue: list[str] = []
        self._worker: threading.Thread | None = None

    def press_key(self, key: str) -> None:
        with self._lock:
            self._queue.append(key)
            if self._worker is None:
                self._worker = threading.Thread(target=self._drain, name="screen-keys", daemon=True)
                self._worker.start()

    def _drain(self) -> None:
        while True:
            with self._lock:
                if not self._queue:
                    self._worker = None
                    return
                key = self._queue.pop(0)
            try:
                self._press(key)
            except MachineError as error:
                self._on_error(str(error))
