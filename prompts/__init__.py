"""Prompt templates shipped with tfvtg, loaded by name (installed as the package ``tfvtg.prompts``)."""

from __future__ import annotations

from importlib import resources

__all__ = ["load_prompt", "list_prompts"]


def load_prompt(name: str) -> str:
    """Return the text of a shipped prompt.

    Args:
        name: ``"<group>/<name>"`` without the ``.txt`` suffix, e.g. ``"tfvtg/decompose"``.

    Raises:
        tfvtg.errors.InputError: No prompt of that name is shipped.
    """
    from tfvtg.errors import InputError

    group, _, stem = name.partition("/")
    path = resources.files(__name__).joinpath(group, f"{stem}.txt")
    if not stem or not path.is_file():
        raise InputError(f"no prompt named {name!r}; shipped prompts: {', '.join(list_prompts()) or 'none'}")
    return path.read_text(encoding="utf-8")


def list_prompts() -> list[str]:
    """Names of all shipped prompts, ``"<group>/<name>"``."""
    root = resources.files(__name__)
    return sorted(
        f"{group.name}/{item.name[:-4]}"
        for group in root.iterdir()
        if group.is_dir() and not group.name.startswith("_")
        for item in group.iterdir()
        if item.name.endswith(".txt")
    )
