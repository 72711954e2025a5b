"""`machine` in a one-node test whose node has another name: works, and warns once.

NixOS has always let a test with a single node call it `machine` whatever
its name; since 2026 (nixpkgs #511859) that still works but is deprecated,
and the driver says so the first time the script uses the alias.  The alias
is therefore not the node itself but a stand-in that forwards everything to
it and reports its first use.  Only a use by the script counts: `repr` (what
the debugger's variable view calls) and `isinstance` stay silent, so looking
at a paused script's globals never prints the warning.
"""

from __future__ import annotations

import threading
from typing import Any, Callable

__all__ = ["SingleNodeAlias", "alias_warning"]


def alias_warning(node: str) -> str:
    """The one line logged at the alias's first use."""
    return (
        f"the name `machine` for the only node is deprecated and will go away in a later NixOS release; "
        f"this test's node is called `{node}`: use `{node}` instead"
    )


class SingleNodeAlias:
    """Forwards every attribute to `target`; calls `warn` once, at the first use."""

    __slots__ = ("_alias_target", "_alias_warn", "_alias_lock", "_alias_warned")

    def __init__(self, target: Any, warn: Callable[[], None]) -> None:
        object.__setattr__(self, "_alias_target", target)
        object.__setattr__(self, "_alias_warn", warn)
        object.__setattr__(self, "_alias_lock", threading.Lock())
        object.__setattr__(self, "_alias_warned", False)

    def _alias_use(self) -> Any:
        # Scripts may use the alias from several threads (join_all, retry in a
        # thread pool): the warning still comes once.
        if not self._alias_warned:
            with self._alias_lock:
                if not self._alias_warned:
                    object.__setattr__(self, "_alias_warned", True)
                    self._alias_warn()
        return self._alias_target

    def __getattr__(self, name: str) -> Any:
        return getattr(self._alias_use(), name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._alias_use(), name, value)

    def __delattr__(self, name: str) -> None:
        delattr(self._alias_use(), name)

    def __dir__(self) -> list[str]:
        return dir(self._alias_target)

    @property  # type: ignore[misc]
    def __class__(self) -> type:
        # So that isinstance(machine, QemuMachine) holds, as it does for the node.
        return type(self._alias_target)

    def __repr__(self) -> str:
        return repr(self._alias_target)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, SingleNodeAlias):
            other = object.__getattribute__(other, "_alias_target")
        return bool(self._alias_target == other)

    def __hash__(self) -> int:
        return hash(self._alias_target)
