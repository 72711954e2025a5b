"""User key remapping: a TOML file mapping binding ids to keys.

```toml
# ~/.config/vmtui/keymap.toml
"vmtui.step_over" = "n,f10"
"vmtui.continue" = "f8"
"console.search" = "ctrl+s"
```

Every binding of vmtui and its widgets carries an id (listed on the help
screen, F1).  A value replaces all default keys of that binding; several
keys are separated by commas.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

from driver.errors import ConfigError

KEYMAP_ENV = "VMTUI_KEYMAP"


def default_keymap_path() -> Path:
    """`$VMTUI_KEYMAP`, else `$XDG_CONFIG_HOME/vmtui/keymap.toml` (`~/.config` by default)."""
    explicit = os.environ.get(KEYMAP_ENV)
    if explicit:
        return Path(explicit)
    config_home = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config_home) / "vmtui" / "keymap.toml"


def load_keymap(path: Path, known_ids: set[str]) -> dict[str, str]:
    """Read a keymap file; a missing file is an empty keymap.

    Raises ConfigError (one line, shown before the UI starts) for a file that
    is not TOML, a value that is not a key string, or an unknown binding id.
    """
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the keymap: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    keymap: dict[str, str] = {}
    for binding_id, keys in data.items():
        if binding_id not in known_ids:
            raise ConfigError(f"{path}: unknown binding id {binding_id!r} (the help screen, F1, lists them)")
        if not isinstance(keys, str) or not keys.strip():
            raise ConfigError(f"{path}: {binding_id!r} must be a string of keys such as \"n,f10\"")
        keymap[binding_id] = ",".join(key.strip() for key in keys.split(",") if key.strip())
    return keymap
