"""Match the image files of a split into (t1, t2, label) triples by name.

Files are matched by their stem (the name without extension), never by their position in a
sorted listing: one missing file must not shift every pair after it. The three folders are
given explicitly (`pair_by_stem`; which folders a split folder holds is its layout's business,
`siamese_cd.data.layouts.registry`), or the triples are listed in a CSV (`pairs_from_csv`).

Example:
    >>> import tempfile
    >>> split = Path(tempfile.mkdtemp())  # LEVIR-CD layout: A/ B/ label/
    >>> for folder, name in (("A", "train_1.png"), ("B", "train_1.png"), ("label", "train_1.tif")):
    ...     (split / folder).mkdir()
    ...     (split / folder / name).touch()  # pairing looks at names only
    >>> pairs = pair_by_stem(split / "A", split / "B", split / "label")
    >>> pairs[0].stem, pairs[0].t1.name, pairs[0].label.name
    ('train_1', 'train_1.png', 'train_1.tif')
"""

from __future__ import annotations

import csv
import os
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from siamese_cd.errors import DatasetError, PairingError
from siamese_cd.hints import option_hint

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"})

ON_MISSING = ("error", "skip")
CSV_COLUMNS = ("t1", "t2", "label")
_MAX_NAMED = 10


@dataclass(frozen=True)
class Pair:
    """One scene: the two dates of a place and, when known, its change mask."""

    stem: str
    t1: Path
    t2: Path
    label: Path | None = None

    def files(self) -> list[tuple[str, Path]]:
        """``[("t1", path), ("t2", path), ("label", path)]``, without the label if None."""
        roles = [("t1", self.t1), ("t2", self.t2)]
        return roles + ([("label", self.label)] if self.label is not None else [])


@dataclass(frozen=True)
class Orphan:
    """A file whose counterparts are missing, and the folders they are missing from."""

    path: Path
    missing_from: tuple[Path, ...]

    def describe(self) -> str:
        return f"{self.path} has no counterpart in {', '.join(map(str, self.missing_from))}"


@dataclass(frozen=True)
class BrokenLink:
    """A symbolic link among a split's files whose target does not exist.

    It is not a missing file (its counterparts are not orphans) but a fault of its own:
    pairing always refuses it, whatever `on_missing` says, and ``siamese-cd check`` reports
    it as ``broken_link``.
    """

    path: Path
    target: str
    missing_from: tuple[Path, ...] = ()

    def describe(self) -> str:
        return f"{self.path}: broken symbolic link to {self.target}"


def broken_link(path: str | Path) -> BrokenLink | None:
    """A `BrokenLink` if `path` is a symbolic link whose target is missing, else None."""
    path = Path(path)
    if not path.is_symlink() or path.exists():
        return None
    try:
        target = os.readlink(path)
    except OSError as error:  # pragma: no cover - removed between the two calls
        target = f"an unreadable target ({error})"
    return BrokenLink(path, target)


def _refuse_broken(links: Sequence[str], where: str) -> None:
    """Raise a `PairingError` naming the broken links (up to 10) and the total, if any."""
    if not links:
        return
    named = "\n".join(f"  {link}" for link in links[:_MAX_NAMED])
    extra = len(links) - _MAX_NAMED
    more = f"\n  ... and {extra} more" if extra > 0 else ""
    raise PairingError(
        f"{len(links)} broken symbolic link(s) in {where}:\n{named}{more}\n"
        "Point each link at an existing file, or remove it."
    )


class PairList(Sequence[Pair]):
    """The pairs of a split, stored compactly and handed out as `Pair` objects on access.

    A list of `Pair` objects costs about 1 KB per pair in `pathlib.Path` objects; this keeps
    the folder paths once and the file names per pair (once, when they are the same in every
    folder), so that a split of 100,000 pairs costs a few MB. It behaves like a read-only
    list of `Pair`.

    Example:
        >>> pairs = PairList(["time1", "time2", "label"], [["a.png", "b.png"]] * 3)
        >>> len(pairs), pairs[1].stem, str(pairs[1].label)
        (2, 'b', 'label/b.png')
    """

    def __init__(self, folders: Sequence[Path], names: Sequence[Sequence[str]]):
        self.folders = tuple(Path(f) for f in folders)
        # names[k][i]: file name of pair i in folder k; a pair's stem is its t1 name's stem.
        self._names = [list(column) for column in names]
        for k in range(1, len(self._names)):
            if self._names[k] == self._names[0]:
                self._names[k] = self._names[0]  # same names in every folder: store them once

    @classmethod
    def from_pairs(cls, pairs: Sequence[Pair]) -> PairList:
        """Store arbitrary pairs (e.g. from a CSV), each path in full."""
        roles = ("t1", "t2", "label") if pairs and pairs[0].label is not None else ("t1", "t2")
        return cls([Path()] * len(roles), [[str(getattr(p, r)) for p in pairs] for r in roles])

    def __len__(self) -> int:
        return len(self._names[0])

    def _pair(self, index: int) -> Pair:
        paths = [folder / column[index] for folder, column in zip(self.folders, self._names)]
        return Pair(paths[0].stem, *paths)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self._pair(i) for i in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"pair {index} out of range for {len(self)} pairs")
        return self._pair(index)

    def __iter__(self) -> Iterator[Pair]:
        return (self._pair(i) for i in range(len(self)))

    def __eq__(self, other) -> bool:
        return isinstance(other, Sequence) and list(self) == list(other)

    def __repr__(self) -> str:
        return f"PairList({len(self)} pairs in {', '.join(map(str, self.folders))})"

    def paths(self, role: str) -> list[str]:
        """Every path of one role (``"t1"``, ``"t2"`` or ``"label"``) as strings."""
        k = ("t1", "t2", "label").index(role)
        return [str(self.folders[k] / name) for name in self._names[k]]


def _is_file(entry: os.DirEntry) -> bool:
    """Whether a folder entry is a file, following links. A link to a missing file is none
    (`_scan` tells it apart, rather than reporting the counterparts of a missing file), nor
    is a link to itself, which raises instead of answering."""
    try:
        return entry.is_file()
    except OSError:
        return False


def _scan(folder: Path) -> tuple[dict[str, str], dict[str, BrokenLink]]:
    """Stem -> file name of the images in `folder` (names as plain strings, to stay small),
    and stem -> `BrokenLink` of the image names that are broken symbolic links."""
    if not folder.is_dir():
        raise DatasetError(f"{folder}: not a directory")
    found: dict[str, str] = {}
    broken: dict[str, BrokenLink] = {}
    with os.scandir(folder) as entries:
        listed = [(entry.name, _is_file(entry)) for entry in entries]
    for name, is_file in sorted(listed):
        stem, ext = os.path.splitext(name)
        if name.startswith(".") or ext.lower() not in IMAGE_EXTENSIONS:
            continue
        if stem in found or stem in broken:
            other = found[stem] if stem in found else broken[stem].path.name
            raise PairingError(
                f"{folder}: two files share the stem {stem!r} ({other} and {name}); keep one"
            )
        link = None if is_file else broken_link(folder / name)
        if is_file:
            found[stem] = name
        elif link is not None:
            broken[stem] = link
    return found, broken


def list_images(folder: str | Path) -> dict[str, Path]:
    """Map file stem to path for the images in `folder`.

    Hidden files and files whose extension is not an image format are not samples and are
    passed over. Two images with the same stem (``a.png`` and ``a.tif``) are ambiguous.

    Raises:
        DatasetError: if `folder` is not a directory.
        PairingError: if two files share a stem, or an image is a broken symbolic link.
    """
    folder = Path(folder)
    found, broken = _scan(folder)
    _refuse_broken([link.describe() for link in broken.values()], str(folder))
    return {stem: folder / name for stem, name in found.items()}


def match_stems(folders: list[Path]) -> tuple[PairList, list[Orphan | BrokenLink]]:
    """Pair the files of two or three folders by stem, returning pairs and the files left out.

    Unlike `pair_by_stem` this never raises on them, for reports such as ``siamese-cd
    check``. A third folder, when given, is the label folder. The files left out are
    orphans (`Orphan`, counterparts missing) and broken symbolic links (`BrokenLink`); a
    broken link's stem is not paired, and its counterparts are not orphans (the link is the
    fault).
    """
    folders = [Path(f) for f in folders]
    scans = [_scan(folder) for folder in folders]
    listings = [found for found, _ in scans]
    present = [found.keys() | broken.keys() for found, broken in scans]
    shared = set(listings[0]).intersection(*listings[1:])
    everywhere = set(present[0]).intersection(*present[1:])
    left_out: list[Orphan | BrokenLink] = [
        Orphan(
            folder / listing[stem],
            tuple(f for f, there in zip(folders, present) if stem not in there),
        )
        for folder, listing in zip(folders, listings)
        for stem in listing
        if stem not in everywhere
    ]
    left_out += [link for _, broken in scans for link in broken.values()]
    names = [[listing[stem] for stem in sorted(shared)] for listing in listings]
    return PairList(folders, names), sorted(left_out, key=lambda item: item.path)


def _report_missing(problems: list[str], what: str, on_missing: str) -> None:
    """Raise or warn once about files without counterparts, naming up to 10 and the total."""
    named = "\n".join(f"  {problem}" for problem in problems[:_MAX_NAMED])
    extra = len(problems) - _MAX_NAMED
    more = f"\n  ... and {extra} more" if extra > 0 else ""
    if on_missing == "error":
        raise PairingError(
            f"{len(problems)} {what}:\n{named}{more}\n"
            "Add the missing files, or leave them out: "
            + option_hint("on_missing='skip'", "--on-missing skip")
            + "."
        )
    warnings.warn(f"Skipping {len(problems)} {what}:\n{named}{more}", stacklevel=3)


def _check_on_missing(on_missing: str) -> None:
    if on_missing not in ON_MISSING:
        raise DatasetError(f"on_missing must be one of {ON_MISSING}, got {on_missing!r}")


def pair_by_stem(
    t1_dir: str | Path,
    t2_dir: str | Path,
    label_dir: str | Path | None = None,
    on_missing: str = "error",
) -> PairList:
    """Match the files of two date folders, and optionally a label folder, by stem.

    The stem ignores the extension, so ``time1/7.png`` pairs with ``label/7.tif``.

    Args:
        t1_dir: folder of first-date images.
        t2_dir: folder of second-date images.
        label_dir: folder of change masks, or None for unlabelled data.
        on_missing: what to do with a file whose counterparts are missing: ``"error"`` raises,
            ``"skip"`` leaves it out and warns once with the count and the first names.

    Returns:
        The pairs sorted by stem, as a compact read-only list (`PairList`).

    Raises:
        PairingError: on orphans with ``on_missing="error"``, naming up to 10 of them and the
            total; on broken symbolic links (``a.png: broken symbolic link to ...``) whatever
            `on_missing` says; or when no pair is found at all.
    """
    _check_on_missing(on_missing)
    folders = [Path(t1_dir), Path(t2_dir)] + ([Path(label_dir)] if label_dir is not None else [])
    pairs, left_out = match_stems(folders)
    broken = [item.describe() for item in left_out if isinstance(item, BrokenLink)]
    _refuse_broken(broken, ", ".join(map(str, folders)))
    orphans = [item for item in left_out if isinstance(item, Orphan)]
    if orphans:
        _report_missing(
            [orphan.describe() for orphan in orphans],
            "file(s) without a counterpart of the same name",
            on_missing,
        )
    if not len(pairs):
        raise PairingError(f"no pairs found in {', '.join(str(f) for f in folders)}")
    return pairs


def _csv_rows(csv_path: Path) -> list[tuple[int, list[str]]]:
    """The non-empty rows of a CSV of triples with their line numbers, without a header."""
    try:
        with csv_path.open(newline="", encoding="utf-8-sig") as handle:
            rows = [(n, row) for n, row in enumerate(csv.reader(handle), start=1) if row]
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise DatasetError(f"{csv_path}: cannot read the CSV of triples ({error})") from error
    if rows and [cell.strip().lower() for cell in rows[0][1]] in (
        list(CSV_COLUMNS),
        list(CSV_COLUMNS[:2]),
    ):
        rows = rows[1:]
    return rows


def pairs_from_csv(csv_path: str | Path, on_missing: str = "error") -> PairList:
    """Read (t1, t2, label) triples from a CSV file, one scene per row.

    The columns are ``t1,t2,label`` in that order; a header row with those names is optional.
    Relative paths are relative to the CSV's folder. The label column may be left out or empty
    for unlabelled data, but then for every row. Rows whose files do not exist follow
    `on_missing`.

    Example CSV::

        t1,t2,label
        before/0001.png,after/0001.png,masks/0001.tif

    Raises:
        DatasetError: if the file cannot be read, a row has the wrong number of columns, or
            some rows have labels and others not (the message names the file and the line).
        PairingError: if files are missing with ``on_missing="error"``, a file is a broken
            symbolic link (whatever `on_missing` says), or no row is usable.
    """
    _check_on_missing(on_missing)
    csv_path = Path(csv_path)
    rows = _csv_rows(csv_path)
    base = csv_path.parent
    pairs: list[Pair] = []
    missing: list[str] = []
    broken: list[str] = []
    labelled: bool | None = None
    for line, row in rows:
        cells = [cell.strip() for cell in row]
        if len(cells) not in (2, 3) or not cells[0] or not cells[1]:
            raise DatasetError(
                f"{csv_path}, line {line}: expected the columns t1,t2[,label], got {row!r}"
            )
        has_label = len(cells) == 3 and bool(cells[2])
        if labelled is None:
            labelled = has_label
        elif has_label != labelled:
            raise DatasetError(
                f"{csv_path}, line {line}: "
                + ("has no label" if labelled else "has a label")
                + f" but the rows before it {'do' if labelled else 'do not'}; give a label in "
                "every row, or in none for unlabelled data"
            )
        paths = [base / cell for cell in cells[: 3 if has_label else 2]]
        absent = [p for p in paths if not p.is_file()]
        links = [link for link in map(broken_link, absent) if link is not None]
        broken += [f"line {line}: {link.describe()}" for link in links]
        if absent and not links:
            missing.append(f"line {line}: {', '.join(map(str, absent))} not found")
        if absent:
            continue
        pairs.append(Pair(paths[0].stem, paths[0], paths[1], paths[2] if has_label else None))
    _refuse_broken(broken, str(csv_path))
    if missing:
        _report_missing(missing, f"row(s) of {csv_path} with missing files", on_missing)
    if not pairs:
        raise PairingError(f"{csv_path}: no usable rows (expected t1,t2[,label] per line)")
    return PairList.from_pairs(pairs)
