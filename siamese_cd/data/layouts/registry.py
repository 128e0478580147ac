"""The layout registry: one class per benchmark or way of storing a change-detection dataset.

A layout class says, torchgeo style, everything the library needs to know about it:

- `Layout.name`, `Layout.splits` (the published split names), `Layout.bands` (what the images
  hold);
- how to recognise it: `Layout.detect` on a download folder, and for `FolderLayout` also
  `FolderLayout.matches` on a split folder;
- how to open it: `Layout.open` gives the `SampleSource` of a split (pairs of files, or scenes
  read by the layout's own reader), `FolderLayout.pairs` the pairs of a split folder.

Two kinds are registered:

- `FolderLayout`: split folders holding a folder of first dates, one of second dates and one
  of labels, matched by file stem (SYSU-CD ``time1/ time2/ label/``, CDD ``A/ B/ OUT/``, ...).
  A folder layout with `splits` is also a benchmark download: its split folders (``train/``,
  ``val/``, ...) sit in the download folder or in one of its `FolderLayout.roots`.
- other `Layout` subclasses: downloads read scene by scene (OSCD, AirChange, WHU-CD, scene
  folders), with ``reads_scenes = True``.

The built-in layouts live in `siamese_cd.data.layouts.catalog`, one module each; each module
registers its class with `register`. Every module of that package is imported on the first
look-up, so adding a benchmark is one new module there (and one test): nothing else names it.
Detection tries the classes by their `Layout.order`, then name.

Example:
    >>> import tempfile
    >>> root = Path(tempfile.mkdtemp())
    >>> for split in ("train", "val", "test"):
    ...     for folder in ("Image1", "Image2", "label"):
    ...         (root / split / folder).mkdir(parents=True)
    >>> dataset_layout(root).name, folder_layout(root / "train").name
    ('S2Looking', 'S2Looking')
    >>> describe_layouts().split("; ")[:2]
    ['SYSU-CD time1/time2/label', 'LEVIR-CD or WHU-CD A/B/label']
"""

from __future__ import annotations

import importlib
import pkgutil
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

import numpy as np

from siamese_cd.data.layouts.pairing import PairList, pair_by_stem
from siamese_cd.data.pipeline.source import SampleSource
from siamese_cd.data.readers.decoding import read_label_values
from siamese_cd.errors import DatasetError

CATALOG = "siamese_cd.data.layouts.catalog"
# Training pairs of a benchmark without a validation split held out for validation.
VAL_FRACTION = 0.1
# Training scenes of a scene download without a validation split held out for validation (at
# most half of them).
VAL_SCENES = 2

# A split as `Layout.open` takes it: a split name, a list of scene names, or None.
Split = str | Sequence[str] | None

_REGISTERED: list[type[Layout]] = []
_LOADED = threading.Event()
_LOADING = threading.Lock()


class Layout:
    """One way a change-detection dataset is stored; subclasses fill in the hooks.

    The class itself is the layout (its methods are class methods): it holds no state.
    """

    #: The name used in messages, notes and the docs table, e.g. ``"LEVIR-CD"``.
    name: ClassVar[str] = ""
    #: The published split names, in order (``("train", "val", "test")``); empty if none.
    splits: ClassVar[tuple[str, ...]] = ()
    #: Where the files are, for messages (`describe`).
    structure: ClassVar[str] = ""
    #: What the images hold, for the docs and messages.
    bands: ClassVar[str] = "RGB"
    #: Whether bands are chosen by name (``bands="rgb"``), as in OSCD, or by number.
    bands_by_name: ClassVar[bool] = False
    #: Whether splits are read scene by scene (large scenes, trained on random crops).
    reads_scenes: ClassVar[bool] = False
    #: Whether the masks follow the layout's own rule (``label_threshold`` is then unused).
    own_label_rule: ClassVar[bool] = False
    #: The splits `open` takes, as messages list them (default: `splits`).
    split_choices: ClassVar[str] = ""
    #: Detection order: lower first.
    order: ClassVar[int] = 100

    @classmethod
    def describe(cls) -> str:
        """The name and where the files are, for messages."""
        return f"{cls.name} ({cls.structure})" if cls.structure else cls.name

    @classmethod
    def detect(cls, root: Path, scene_files: Sequence[str] | None = None) -> bool:
        """Whether the download folder `root` is stored this way."""
        return False

    @classmethod
    def open(cls, root: Path, split: Split, **options) -> SampleSource:
        """The `SampleSource` of one split of the download at `root`.

        `split` is one of `splits` or a list of scene names (`scenes`); `options` are those
        of `SampleSource` plus ``bands``, ``label_threshold``, ``on_missing`` and
        ``scene_files`` where the layout uses them.
        """
        raise NotImplementedError

    @classmethod
    def scenes(cls, root: Path, split: str, on_missing: str = "error") -> list[str]:
        """The names of the scenes (or pairs) of a split, which `open` also takes as a list."""
        raise DatasetError(f"{root}: {cls.name} has no scenes to list")

    @classmethod
    def held_out(cls, count: int) -> int:
        """How many of `count` training scenes to hold out when there is no ``val`` split."""
        return max(1, round(VAL_FRACTION * count))

    @classmethod
    def need_split(cls, root: Path, split: Split) -> None:
        """Raise unless a split was given (the message lists the choices)."""
        if split is None:
            choices = cls.split_choices or ", ".join(repr(s) for s in cls.splits)
            raise DatasetError(f"{root}: an {cls.name} dataset; pass split= ({choices})")

    @classmethod
    def check_band_numbers(cls, root: Path, bands) -> None:
        """Raise if bands are named (``"rgb"``) where only band numbers are read."""
        if isinstance(bands, str) or (bands and isinstance(next(iter(bands)), str)):
            raise DatasetError(f"{root}: bands are named only for OSCD; give band numbers here")


class FolderLayout(Layout):
    """Split folders of first dates, second dates and labels, files matched by stem.

    With `splits` it is also a benchmark download: ``<root>/<rel>/<split>/<folders>`` for a
    `roots` entry ``rel`` ("" for the download folder itself) and every split. A benchmark
    whose split folders another layout already names (``A/ B/ label/``) sets
    ``names_split_folders = False``, so split folders keep one name.
    """

    #: The first-date, second-date and label folders of a split folder.
    folders: ClassVar[tuple[str, str, str]]
    #: Where the split folders may sit below the download folder ("" is the folder itself).
    roots: ClassVar[tuple[str, ...]] = ("",)
    #: Whether split folders are recognised by `folders` (`folder_layout`).
    names_split_folders: ClassVar[bool] = True

    @classmethod
    def describe(cls) -> str:
        """``"SYSU-CD time1/time2/label"``: the name and the folders, for messages."""
        return f"{cls.name} {'/'.join(cls.folders)}"

    @classmethod
    def matches(cls, split_dir: Path) -> bool:
        """Whether `split_dir` holds this layout's three folders."""
        return all((split_dir / folder).is_dir() for folder in cls.folders)

    @classmethod
    def folder_paths(cls, split_dir: Path) -> tuple[Path, Path, Path]:
        """The t1, t2 and label folders of a split folder."""
        return tuple(Path(split_dir) / folder for folder in cls.folders)  # type: ignore[return-value]

    @classmethod
    def pairs(cls, split_dir: Path, on_missing: str = "error") -> PairList:
        """The pairs of a split folder, matched by stem (`pairing.pair_by_stem`)."""
        return pair_by_stem(*cls.folder_paths(split_dir), on_missing=on_missing)

    @classmethod
    def source(cls, pairs: Sequence, **reading) -> SampleSource:
        """The `SampleSource` reading `pairs` (a layout with its own label rule overrides)."""
        return SampleSource(pairs, **reading)

    @classmethod
    def label_values(cls, path: Path) -> np.ndarray:
        """A label file's values as ``siamese-cd check`` inspects them (one band)."""
        return read_label_values(path)

    @classmethod
    def base(cls, root: Path) -> Path | None:
        """The folder holding the split folders of a download at `root`, or None."""
        if not cls.splits:
            return None
        for rel in cls.roots:
            base = Path(root) / rel
            if all(cls.matches(base / split) for split in cls.splits):
                return base
        return None

    @classmethod
    def detect(cls, root: Path, scene_files: Sequence[str] | None = None) -> bool:
        return cls.base(root) is not None

    @classmethod
    def near_miss(cls, root: Path) -> str | None:
        """What a download that is nearly this benchmark lacks, or None.

        Nearly: some split folder of it holds this layout's folders, but not every split does.
        """
        for rel in cls.roots if cls.splits else ():
            base = Path(root) / rel
            if not any(cls.matches(base / split) for split in cls.splits):
                continue
            lacking = []
            for split in cls.splits:
                if not (base / split).is_dir():
                    lacking.append(f"no {split}/ folder in {base}")
                elif not cls.matches(base / split):
                    gone = [
                        f"{folder}/"
                        for folder in cls.folders
                        if not (base / split / folder).is_dir()
                    ]
                    lacking.append(f"{base / split} lacks {', '.join(gone)}")
            return f"it looks like {cls.name}, but {'; '.join(lacking)}"
        return None

    @classmethod
    def scenes(cls, root: Path, split: str, on_missing: str = "error") -> list[str]:
        """``"<split>/<stem>"`` of every pair of a split, e.g. ``"train/train_1"``."""
        pairs = cls.pairs(cls.split_dir(root, split), on_missing)
        return [f"{split}/{pair.stem}" for pair in pairs]

    @classmethod
    def split_dir(cls, root: Path, split: str) -> Path:
        """The folder of one split of the download at `root`."""
        if split not in cls.splits:
            raise DatasetError(
                f"{root}: {cls.name} has no split {split!r} (splits: {', '.join(cls.splits)})"
            )
        return cls.base(root) / split  # type: ignore[operator]

    @classmethod
    def open(
        cls, root: Path, split: Split, *, on_missing: str = "error", bands=None, **reading
    ) -> SampleSource:
        cls.need_split(root, split)
        cls.check_band_numbers(root, bands)
        reading.pop("scene_files", None)
        if isinstance(split, str):
            pairs = cls.pairs(cls.split_dir(root, split), on_missing)
        else:
            pairs = cls._chosen_pairs(root, [str(name) for name in split], on_missing)
        name = split if isinstance(split, str) else "pairs"
        reading.setdefault("name", f"{cls.name.lower()}-{name}")
        return cls.source(pairs, bands=bands, **reading)

    @classmethod
    def _chosen_pairs(cls, root: Path, names: list[str], on_missing: str) -> PairList:
        """The pairs named ``"<split>/<stem>"``, in that order."""
        found = {}
        for split in dict.fromkeys(name.partition("/")[0] for name in names):
            if split in cls.splits:
                pairs = cls.pairs(cls.split_dir(root, split), on_missing)
                found.update({f"{split}/{pair.stem}": pair for pair in pairs})
        unknown = [name for name in names if name not in found]
        if unknown or not names:
            shown = ", ".join(unknown[:10]) or "none"
            raise DatasetError(
                f"{root}: no {cls.name} pair named {shown} (names are <split>/<stem>, e.g. "
                f"{next(iter(found), 'train/1')})"
            )
        return PairList.from_pairs([found[name] for name in names])


class SceneLayout(Layout):
    """A download read scene by scene: few large scenes, trained on random crops.

    Without a ``val`` split, `VAL_SCENES` training scenes are held out for validation.
    """

    reads_scenes = True

    @classmethod
    def held_out(cls, count: int) -> int:
        return VAL_SCENES


def register(layout: type[Layout]) -> type[Layout]:
    """Class decorator: add a layout to the registry (once; a second registration is an error)."""
    if not layout.name:
        raise TypeError(f"{layout.__qualname__}: a registered layout needs a name")
    if any(known.name == layout.name and known is not layout for known in _REGISTERED):
        raise TypeError(f"two layouts are named {layout.name!r}")
    if layout not in _REGISTERED:
        _REGISTERED.append(layout)
    return layout


def layouts() -> list[type[Layout]]:
    """Every registered layout, in detection order (the catalog is imported on first use)."""
    if not _LOADED.is_set():
        with _LOADING:
            if not _LOADED.is_set():
                catalog = importlib.import_module(CATALOG)
                for info in pkgutil.iter_modules(catalog.__path__, CATALOG + "."):
                    importlib.import_module(info.name)
                _LOADED.set()
    return sorted(_REGISTERED, key=lambda layout: (layout.order, layout.name))


def named(name: str) -> type[Layout]:
    """The registered layout called `name`.

    Raises:
        DatasetError: for an unknown name (the message lists the known ones).
    """
    for layout in layouts():
        if layout.name == name:
            return layout
    known = ", ".join(layout.name for layout in layouts())
    raise DatasetError(f"no layout named {name!r} (known: {known})")


def folder_layouts() -> list[type[FolderLayout]]:
    """The layouts that name split folders, in detection order."""
    return [
        layout
        for layout in layouts()
        if issubclass(layout, FolderLayout) and layout.names_split_folders
    ]


def describe_layouts() -> str:
    """The split-folder layouts looked for, e.g. ``SYSU-CD time1/time2/label; ...``."""
    return "; ".join(layout.describe() for layout in folder_layouts())


def dataset_layout(root: str | Path, scene_files: Sequence[str] | None = None):
    """The first registered layout whose download `root` is, or None (also for a non-folder)."""
    root = Path(root)
    if not root.is_dir():
        return None
    for layout in layouts():
        if layout.detect(root, scene_files):
            return layout
    return None


def near_miss(root: str | Path) -> str:
    """``" (it looks like S2Looking, but ...)"``: what a near benchmark download lacks, or ""."""
    root = Path(root)
    if not root.is_dir():
        return ""
    for layout in layouts():
        if issubclass(layout, FolderLayout):
            found = layout.near_miss(root)
            if found:
                return f" ({found})"
    return ""


def describe_dataset_layouts() -> str:
    """The download layouts that carry splits or scenes, for messages."""
    return ", ".join(layout.name for layout in layouts() if layout.splits or layout.reads_scenes)


def folder_layout(split_dir: str | Path) -> type[FolderLayout]:
    """The layout of a split folder, whichever registered layout names its folders.

    Raises:
        DatasetError: if the folder matches no layout (the message lists the layouts looked
            for and the sub-folders found), or more than one.
    """
    split_dir = Path(split_dir)
    if not split_dir.is_dir():
        raise DatasetError(f"{split_dir}: not a directory")
    matches = [layout for layout in folder_layouts() if layout.matches(split_dir)]
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        found = "; ".join(f"{m.name} ({'/'.join(m.folders)})" for m in matches)
        raise DatasetError(
            f"{split_dir}: matches more than one layout: {found}. Remove or rename the folders "
            "that do not belong (in Python you may instead pass t1_dir=, t2_dir= and "
            "label_dir=)."
        )
    present = sorted(p.name for p in split_dir.iterdir() if p.is_dir()) or ["no sub-folders"]
    raise DatasetError(
        f"{split_dir}: matches no known layout (looked for {describe_layouts()}); "
        f"found {', '.join(present)}. Rename the folders to a known layout (e.g. time1/ "
        "time2/ label/), or in Python pass t1_dir=, t2_dir= and label_dir= (label_dir=None "
        "for unlabelled images), or a CSV of triples."
    )


def detect_layout(split_dir: str | Path) -> tuple[str, Path, Path, Path]:
    """Name the layout of a split folder and return it with its t1, t2 and label folders.

    Raises:
        DatasetError: as `folder_layout`.
    """
    layout = folder_layout(split_dir)
    return (layout.name, *layout.folder_paths(Path(split_dir)))


def find_layout(split_dir: str | Path) -> tuple[Path, Path, Path]:
    """Return the t1, t2 and label folders of a split folder, whichever known layout it uses.

    Raises:
        DatasetError: if the folder matches no layout; the message lists the layouts looked for.
    """
    return folder_layout(split_dir).folder_paths(Path(split_dir))


def pair_split(split_dir: str | Path, on_missing: str = "error") -> PairList:
    """Find the layout of a split folder and pair its files by stem."""
    return folder_layout(split_dir).pairs(Path(split_dir), on_missing=on_missing)
