"""What ``mmnerd clean`` (and ``make clean``) may delete, and what it must not.

Derived outputs (stage folders and their side folders of state and reports, the export,
reports, the hash index, predictions, the generated sample) are rebuilt by rerunning the
pipeline: ``clean`` removes them.  Human and irreplaceable data stays unless asked for
explicitly *and* confirmed:

* Label Studio's data dir (its database holds every annotation and the admin token);
* collection journals and cursors (``state/``: posts an API no longer serves);
* downloaded images (``images/``: origins purge media);
* the corpus key (``secrets/``: without it new pseudonyms no longer match old ones) and
  the private id mapping (``private/``: the real post URLs, for takedowns).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

from mmnerd.config import PipelineConfig
from mmnerd.errors import ConfigError

DERIVED = ("stages", "side", "export", "reports", "index", "predict", "raw")
"""Folders under a pipeline's data dir that a rerun rebuilds."""
KEPT = {
    "images": "downloaded images (origins purge media)",
    "state": "collection journals and cursors",
    "secrets": "the corpus key (pseudonyms)",
    "private": "real post ids and URLs behind the pseudonyms (takedowns)",
}
"""Folders under a pipeline's data dir that only ``--all`` removes, and why they stay."""


@dataclass
class CleanPlan:
    """Paths a clean would remove, and those it keeps with the reason."""

    remove: list[Path] = field(default_factory=list)
    keep: list[tuple[Path, str]] = field(default_factory=list)


def plan(config: PipelineConfig, everything: bool = False, labelstudio: bool = False) -> CleanPlan:
    """What to remove for ``config``: derived outputs; with ``everything`` the whole data dir;
    with ``labelstudio`` the Label Studio data dir (annotations) too."""
    root = config.root
    out = CleanPlan()
    derived = [root / d for d in DERIVED] + [config.export_dir]
    derived.append(config.report_dir)
    for path in dict.fromkeys(derived):
        if path.exists():
            out.remove.append(path)
    for name, why in KEPT.items():
        path = root / name
        if path.exists():
            (out.remove.append(path) if everything else out.keep.append((path, why)))
    if everything and root.exists():
        out.remove.append(root)
    ls_dir = Path(config.labelstudio.data_dir)
    if ls_dir.exists():
        if labelstudio:
            out.remove.append(ls_dir)
        else:
            out.keep.append((ls_dir, "Label Studio data: every annotation, the admin token"))
    return out


def execute(config: PipelineConfig, todo: CleanPlan) -> list[Path]:
    """Remove the planned paths (refusing while a Label Studio server uses its data dir);
    returns what was removed."""
    ls_dir = Path(config.labelstudio.data_dir)
    if any(p.resolve() == ls_dir.resolve() for p in todo.remove):
        from mmnerd.labelstudio import database, server

        if server.running(config) is not None or (
            database.embedded(config.labelstudio) and database.cluster_running(config.labelstudio)
        ):
            raise ConfigError(
                f"Label Studio (or its PostgreSQL) is running on {ls_dir}: stop it first "
                f"(mmnerd ls down -p ...)"
            )
    removed = []
    for path in todo.remove:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()
        else:
            continue
        removed.append(path)
    return removed
