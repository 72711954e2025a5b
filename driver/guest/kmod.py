"""Kernel module dependency resolution for the tiny guest.

Debian's kernel package ships no `modules.dep` (depmod writes it at install
time), and the host may have no `depmod`: so dependencies are read from each
module's own `.modinfo` (`depends=`) and resolved here into a load order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from driver.guest.elf import modinfo


def module_name(path: Path | str) -> str:
    """The kernel's name of a module file: 'virtio-rng.ko' -> 'virtio_rng'."""
    name = Path(path).name
    for suffix in (".xz", ".zst", ".gz"):
        name = name.removesuffix(suffix)
    return name.removesuffix(".ko").replace("-", "_")


def index_modules(modules_dir: Path) -> dict[str, Path]:
    """Map module name -> file for every module below `modules_dir`."""
    return {module_name(path): path for path in sorted(modules_dir.rglob("*.ko"))}


def read_depends(path: Path) -> list[str]:
    """The modules `path` needs loaded first, as named in its `.modinfo`."""
    values = modinfo(path.read_bytes()).get("depends", [""])
    return [name.replace("-", "_") for value in values for name in value.split(",") if name]


def load_order(
    wanted: Iterable[str],
    depends_of: Callable[[str], list[str]] | Mapping[str, list[str]],
) -> list[str]:
    """Every wanted module and its dependencies, each after everything it needs.

    `depends_of` gives a module's direct dependencies (a mapping or a
    function).  Raises KeyError for an unknown module and ValueError for a
    dependency cycle (the kernel could not load such a set either).
    """
    lookup = depends_of.__getitem__ if isinstance(depends_of, Mapping) else depends_of
    order: list[str] = []
    done: set[str] = set()
    in_progress: list[str] = []

    def visit(name: str) -> None:
        if name in done:
            return
        if name in in_progress:
            cycle = " -> ".join([*in_progress[in_progress.index(name) :], name])
            raise ValueError(f"module dependency cycle: {cycle}")
        in_progress.append(name)
        for dependency in lookup(name):
            visit(dependency)
        in_progress.pop()
        done.add(name)
        order.append(name)

    for name in wanted:
        visit(name.replace("-", "_"))
    return order


def resolve_modules(modules_dir: Path, wanted: Iterable[str]) -> list[Path]:
    """Files of `wanted` and their dependencies, in an order `insmod` accepts."""
    index = index_modules(modules_dir)

    def depends_of(name: str) -> list[str]:
        if name not in index:
            raise KeyError(f"kernel module {name!r} not found below {modules_dir}")
        return read_depends(index[name])

    return [index[name] for name in load_order(wanted, depends_of)]
