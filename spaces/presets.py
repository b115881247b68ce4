"""Named spaces shipped with cxrtune (presets/*.yaml beside this file) and `load_space` for any space."""
from __future__ import annotations

from pathlib import Path

from spaces.errors import SpaceError
from spaces.space import Space, parse_space

PRESETS_DIR = Path(__file__).resolve().parent / "presets"


def preset_names() -> list[str]:
    return sorted(path.stem for path in PRESETS_DIR.glob("*.yaml"))


def load_space(name_or_path) -> Space:
    """A Space from a preset name (`paper`, `demo`), a YAML file path, a mapping, or a Space (returned as is)."""
    if isinstance(name_or_path, Space):
        return name_or_path
    if isinstance(name_or_path, dict):
        return parse_space(name_or_path)
    if not isinstance(name_or_path, (str, Path)):
        raise SpaceError(
            f"space: {type(name_or_path).__name__} is not accepted; give a preset name, a YAML path or a mapping"
        )
    text = str(name_or_path)
    if text in preset_names() and not Path(text).is_file():
        return _read_yaml(PRESETS_DIR / f"{text}.yaml", name=text)
    path = Path(text).expanduser()
    if path.is_file():
        return _read_yaml(path, name=path.stem)
    raise SpaceError(
        f"space {text!r}: not a preset ({', '.join(preset_names())}) and no such file"
        + (f" ({path.resolve()})" if path.suffix in (".yaml", ".yml") else "")
    )


def _read_yaml(path: Path, *, name: str) -> Space:
    import yaml

    try:
        mapping = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        where = getattr(error, "problem_mark", None)
        line = f" line {where.line + 1}" if where is not None else ""
        raise SpaceError(f"{path}:{line} not valid YAML ({getattr(error, 'problem', None) or error})") from None
    except (OSError, UnicodeDecodeError) as error:
        raise SpaceError(f"{path}: cannot be read ({error})") from None
    try:
        return parse_space(mapping, name=name)
    except SpaceError as error:
        raise SpaceError(f"{path}: {error}") from None
