"""Find the image files of a split and match them into (t1, t2, label) triples by name.

Files are matched by their stem (the name without extension), never by their position in a
sorted listing: one missing file must not shift every pair after it.

Example:
    >>> pairs = pair_split("data/SYSU-CD/train")  # doctest: +SKIP
    >>> pairs[0].stem, pairs[0].t1.name, pairs[0].label.name  # doctest: +SKIP
    ('00000', '00000.png', '00000.png')
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

from siamese_cd.errors import DatasetError, PairingError

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"})

# Folder names per date and for the label, for each layout we recognise in a split folder.
LAYOUTS: dict[str, tuple[str, str, str]] = {
    "SYSU-CD": ("time1", "time2", "label"),
}

ON_MISSING = ("error", "skip")
_MAX_NAMED = 10


@dataclass(frozen=True)
class Pair:
    """One sample: the two dates of a place and, when known, its change mask."""

    stem: str
    t1: Path
    t2: Path
    label: Path | None = None


def list_images(folder: str | Path) -> dict[str, Path]:
    """Map file stem to path for the images in `folder`.

    Hidden files and files whose extension is not an image format are not samples and are
    passed over. Two images with the same stem (``a.png`` and ``a.tif``) are ambiguous.

    Raises:
        DatasetError: if `folder` is not a directory.
        PairingError: if two files share a stem.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"{folder}: not a directory")
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or path.suffix.lower() not in IMAGE_EXTENSIONS:
            continue
        if path.stem in found:
            raise PairingError(
                f"{folder}: two files share the stem {path.stem!r} "
                f"({found[path.stem].name} and {path.name}); keep one"
            )
        found[path.stem] = path
    return found


def pair_by_stem(
    t1_dir: str | Path,
    t2_dir: str | Path,
    label_dir: str | Path | None = None,
    on_missing: str = "error",
) -> list[Pair]:
    """Match the files of two date folders, and optionally a label folder, by stem.

    Args:
        t1_dir: folder of first-date images.
        t2_dir: folder of second-date images.
        label_dir: folder of change masks, or None for unlabelled data.
        on_missing: what to do with a file whose counterparts are missing: ``"error"`` raises,
            ``"skip"`` leaves it out and warns once with the count and the first names.

    Returns:
        The pairs sorted by stem.

    Raises:
        PairingError: on orphans with ``on_missing="error"``, naming up to 10 of them and the
            total, or when no pair is found at all.
    """
    if on_missing not in ON_MISSING:
        raise DatasetError(f"on_missing must be one of {ON_MISSING}, got {on_missing!r}")
    folders = [Path(t1_dir), Path(t2_dir)] + ([Path(label_dir)] if label_dir is not None else [])
    listings = [list_images(folder) for folder in folders]
    common = set(listings[0]).intersection(*listings[1:])
    orphans = sorted(
        (listing[stem], [str(f) for f, other in zip(folders, listings) if stem not in other])
        for listing in listings
        for stem in listing
        if stem not in common
    )
    if orphans:
        named = "\n".join(
            f"  {path} has no counterpart in {', '.join(missing)}"
            for path, missing in orphans[:_MAX_NAMED]
        )
        more = f"\n  ... and {len(orphans) - _MAX_NAMED} more" if len(orphans) > _MAX_NAMED else ""
        if on_missing == "error":
            raise PairingError(
                f"{len(orphans)} file(s) without a counterpart of the same name:\n{named}{more}\n"
                "Add the missing files, or pass on_missing='skip' to leave them out."
            )
        warnings.warn(
            f"Skipping {len(orphans)} file(s) without a counterpart of the same name:\n"
            f"{named}{more}",
            stacklevel=2,
        )
    if not common:
        raise PairingError(f"no pairs found in {', '.join(str(f) for f in folders)}")
    t1s, t2s = listings[0], listings[1]
    labels = listings[2] if label_dir is not None else {}
    return [Pair(stem, t1s[stem], t2s[stem], labels.get(stem)) for stem in sorted(common)]


def find_layout(split_dir: str | Path) -> tuple[Path, Path, Path]:
    """Return the t1, t2 and label folders of a split folder, whichever known layout it uses.

    Raises:
        DatasetError: if the folder matches no layout; the message lists the layouts looked for.
    """
    split_dir = Path(split_dir)
    if not split_dir.is_dir():
        raise DatasetError(f"{split_dir}: not a directory")
    for names in LAYOUTS.values():
        folders = tuple(split_dir / name for name in names)
        if all(folder.is_dir() for folder in folders):
            return folders  # type: ignore[return-value]
    looked_for = "; ".join(f"{name}: {'/'.join(parts)}" for name, parts in LAYOUTS.items())
    present = sorted(p.name for p in split_dir.iterdir() if p.is_dir()) or ["no sub-folders"]
    raise DatasetError(
        f"{split_dir}: matches no known layout (looked for {looked_for}); "
        f"found {', '.join(present)}. Pass t1_dir=, t2_dir= and label_dir= explicitly instead."
    )


def pair_split(split_dir: str | Path, on_missing: str = "error") -> list[Pair]:
    """Find the layout of a split folder and pair its files by stem."""
    return pair_by_stem(*find_layout(split_dir), on_missing=on_missing)
