"""`vmtui`: the command line.

    vmtui TARGET [--headless]          open a test (TUI), or run it headless
    vmtui demo [--headless]            the embedded todos example
    vmtui run --headless TARGET        same, NixOS style: log on stderr, exit 0/1
    vmtui driver ARGS...               a drop-in for `nixos-test-driver`
    vmtui replay PATH [--script FILE]  a run record or a NixOS driver log, read-only

Without a TARGET, the nixos-test-driver contract is honoured: its flags
(`--config`, `--start-scripts`, `--vm-names`, ...) or environment
(`startScripts`, `vmNames`, `testScript`, ...) describe the test.  So does
running vmtui under the name `nixos-test-driver`.

Every kind of bad input ends with one line on stderr and exit status 2,
never a traceback.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import sys
from pathlib import Path
from typing import NoReturn, Sequence

from driver.config import TestConfig
from driver.errors import ConfigError, MachineError
from driver.terminal_text import plain_text
from vmtui.frame_cap import raise_textual_frame_cap
from vmtui.options import LOG_LEVELS, RunOptions

EXIT_BAD_INPUT = 2

# nixos-test-driver flags that describe the test itself; seeing one means
# the command line is the driver contract, not a vmtui TARGET.
_DRIVER_TEST_FLAGS = (
    "-c",
    "--config",
    "--start-scripts",
    "--vm-names",
    "--vm-start-scripts",
    "--container-names",
    "--container-start-scripts",
    "--vlans",
)
_DRIVER_ENV = ("startScripts", "vmNames", "vmStartScripts", "testScript")


def _version() -> str:
    try:
        return importlib.metadata.version("vmtui")
    except importlib.metadata.PackageNotFoundError:  # run from a checkout, not installed
        return "(not installed)"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One line, exit 2: the usage text is one `--help` away.
        raise ConfigError(f"{message} (see vmtui --help)")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="vmtui",
        usage="vmtui [run] TARGET [--headless] [options]\n       vmtui driver NIXOS-TEST-DRIVER-ARGUMENTS...\n       vmtui replay PATH [--script FILE]",
        description="Debug NixOS-style VM integration tests: consoles, script, step debugger.",
        epilog="TARGET: demo, a .toml spec, a .nix file or flake#attr, or a built test driver (./result).",
    )
    parser.add_argument("target", nargs="?", help="what to open (see below)")
    parser.add_argument("--version", action="version", version=f"vmtui {_version()}")
    parser.add_argument("--headless", action="store_true", help="no UI: NixOS-style log on stderr, exit 0/1")
    parser.add_argument("-A", "--attr", help="the attribute of a .nix file to build")
    parser.add_argument(
        "-o", "--output_directory", "--output-directory", dest="out_dir", type=Path,
        help="where screenshots, copied files and the JUnit report go (default: the current directory)",
    )
    parser.add_argument("--junit-xml", type=Path, help="write a JUnit report (relative to the output directory)")
    parser.add_argument(
        "-K", "--keep-vm-state", "--keep-machine-state", dest="keep_state", action="store_true",
        help="reuse machine state (disks) from an earlier run",
    )
    parser.add_argument("--global-timeout", type=float, help="end the test after this many seconds")
    parser.add_argument(
        "--log-level", choices=LOG_LEVELS, default=os.environ.get("logLevel", "info"),
        help="hide log messages below this level (headless)",
    )
    parser.add_argument(
        "-I", "--interactive", action=argparse.BooleanOptionalAction, default=False,
        help="accepted for nixos-test-driver compatibility (the TUI is the interactive mode)",
    )
    # Accepted and ignored: vmtui has its own debugger and shell panes.
    parser.add_argument("--debug-hook-attach", help=argparse.SUPPRESS)
    parser.add_argument("--dump-vsocks", help=argparse.SUPPRESS)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    program = sys.argv[0] if argv is None else "vmtui"
    try:
        from driver.processes import install_exit_handlers

        install_exit_handlers()
        return _main(program, args)
    except ConfigError as exc:
        _say(str(exc))
        return EXIT_BAD_INPUT
    except MachineError as exc:
        # Setting the test up failed before the script ran (failures inside
        # the script are test failures, reported by the runner).
        _say(f"cannot set the test up: {exc}")
        return EXIT_BAD_INPUT


def _main(program: str, args: list[str]) -> int:
    if _invoked_as_driver(program):
        return _run_driver_contract(args, force_headless=False)
    if args[:1] == ["driver"]:
        return _run_driver_contract(args[1:], force_headless=False)
    if args[:1] == ["replay"]:
        return _run_replay(args[1:])
    verb_run = args[:1] == ["run"]
    rest = args[1:] if verb_run else args
    if _looks_like_driver_contract(rest):
        headless = "--headless" in rest
        return _run_driver_contract([a for a in rest if a != "--headless"], force_headless=headless)

    parsed = _parser().parse_args(rest)
    if parsed.target is None:
        raise ConfigError("no test given: vmtui TARGET (demo, a .toml spec, a .nix file, or ./result)")
    options = _options(parsed)
    from vmtui.targets import resolve_target

    config = resolve_target(parsed.target, options, progress=_progress)
    return _run(config, options)


def _options(parsed: argparse.Namespace) -> RunOptions:
    out_dir = _output_directory(parsed.out_dir)
    junit = parsed.junit_xml
    return RunOptions(
        keep_state=parsed.keep_state,
        out_dir=out_dir,
        junit_xml=(out_dir / junit) if junit is not None else None,
        global_timeout=_positive(parsed.global_timeout, "--global-timeout"),
        log_level=parsed.log_level,
        headless=parsed.headless,
        interactive=bool(parsed.interactive),
        attr=parsed.attr,
    )


def _output_directory(path: Path | None) -> Path:
    out_dir = (path or Path.cwd()).absolute()
    if not out_dir.is_dir():
        raise ConfigError(f"output directory {out_dir} does not exist")
    if not os.access(out_dir, os.W_OK):
        raise ConfigError(f"output directory {out_dir} is not writable")
    return out_dir


def _positive(value: float | None, flag: str) -> float | None:
    if value is not None and value <= 0:
        raise ConfigError(f"{flag} must be a positive number of seconds")
    return value


def _run(config: TestConfig, options: RunOptions) -> int:
    if options.headless:
        from vmtui.headless import run_headless

        return run_headless(config, options)
    raise_textual_frame_cap()
    try:
        from vmtui.app import run_tui
    except ImportError as exc:
        _say(f"the TUI is not available ({exc}); running headless")
        from vmtui.headless import run_headless

        return run_headless(config, options)
    return run_tui(config, options)


def _run_replay(args: list[str]) -> int:
    parser = _Parser(
        prog="vmtui replay",
        description="Open a past run read-only: a vmtui run record, a NixOS driver log (nix log, Hydra) or its XML LOGFILE.",
    )
    parser.add_argument("path", type=Path, help="a vmtui-run/ directory, a saved log, or the XML log")
    parser.add_argument("--script", type=Path, help="the test script, to mark the failing statement in it")
    parsed = parser.parse_args(args)
    raise_textual_frame_cap()
    from vmtui.replay.app import run_replay

    return run_replay(parsed.path, parsed.script)


# -- the nixos-test-driver contract --------------------------------------------


def _invoked_as_driver(program: str) -> bool:
    from driver.wrapper import is_driver_program_name

    return is_driver_program_name(program)


def _looks_like_driver_contract(args: list[str]) -> bool:
    for arg in args:
        flag = arg.split("=", 1)[0]
        if flag in _DRIVER_TEST_FLAGS:
            return True
    # Positionals other than a script path mean a vmtui TARGET.
    has_target = any(not arg.startswith("-") for arg in args)
    return not has_target and any(os.environ.get(name) for name in _DRIVER_ENV)


def _run_driver_contract(args: list[str], *, force_headless: bool) -> int:
    from driver.wrapper import parse_driver_args

    invocation = parse_driver_args(args, os.environ)
    if invocation is None:
        raise ConfigError(
            "no test given: pass --config, --start-scripts or --vm-names (or their environment variables)"
        )
    out_dir = _output_directory(invocation.output_dir)
    options = RunOptions(
        keep_state=invocation.keep_state,
        out_dir=out_dir,
        junit_xml=(out_dir / invocation.junit_xml) if invocation.junit_xml is not None else None,
        global_timeout=None,
        log_level=invocation.log_level or "info",
        interactive=invocation.interactive,
    )
    # Like nixos-test-driver: interactive only when asked and a person is there.
    options.headless = force_headless or not (invocation.interactive and sys.stdin.isatty())
    return _run(invocation.config, options)


def _progress(line: str) -> None:
    _say(line)


def _say(message: str) -> None:
    # Errors can quote a guest's console (a machine that died at boot).
    print(f"vmtui: {plain_text(message)}", file=sys.stderr, flush=True)
