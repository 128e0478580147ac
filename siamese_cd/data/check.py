"""`siamese-cd check DATA`: scan every file of a dataset and report what would break training.

It reports, per split: empty splits, files without counterparts (orphans), files that cannot
be decoded (unreadable or truncated), images with NaN or infinite pixels, images whose bit depth
differs from the split's first image, scenes whose t1, t2 and label sizes differ, labels holding
values outside the expected set, labels whose non-zero values never reach the label threshold
(read as "no change"), broken symbolic links, dates whose GeoTIFFs lie on different grids (CRS
or transform, `siamese_cd.data.readers.georeference`), and the fraction of changed pixels.
Everything it reports as a problem stops training too, and a problem makes the command exit
non-zero.
Float images are not a problem: the model standardises them (``preprocessing="auto"``).

It also notes, without failing, a split whose labels hold no change pixel at all (``no_change``):
a validation split like that scores ``val_f1`` 0 at every epoch (training then follows
``val_loss`` and keeps the threshold 0.5, see `siamese_cd.training.pipeline.validation_monitor`), a
training split has nothing to learn, a test split scores change F1 0.

Expected label values: ``{0, 255}`` or ``{0, 1}`` (``{0, 65535}`` for 16-bit masks) after
reducing RGB to its brightest band. JPEG labels are noisy by nature, so values within
`JPEG_TOLERANCE` of 0 or of the maximum are accepted for them.

Example:
    >>> import tempfile
    >>> from siamese_cd.data.synthetic.generate import make_synthetic_dataset
    >>> data = make_synthetic_dataset(tempfile.mkdtemp(), train=2, val=1, test=1, size=32,
    ...                               progress=False)
    >>> report = check_dataset(data, progress=False)
    >>> report.ok, [s.name for s in report.splits]
    (True, ['test', 'train', 'val'])
"""

from __future__ import annotations

import os
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from siamese_cd.data.layouts.pairing import BrokenLink, match_stems
from siamese_cd.data.layouts.registry import (
    FolderLayout,
    dataset_layout,
    describe_layouts,
    detect_layout,
    named,
)
from siamese_cd.data.readers.decoding import (
    DEFAULT_LABEL_THRESHOLD,
    below_threshold,
    binarize_label,
    decode_fault,
    is_lossy,
    read_image,
    read_label_values,
)
from siamese_cd.data.readers.georeference import grid_mismatch
from siamese_cd.errors import DatasetError, ImageReadError, NonFiniteError, PairingError

JPEG_TOLERANCE = 64
_SHOWN_PER_KIND = 20


@dataclass
class Problem:
    """One thing wrong with one file."""

    split: str
    # orphan | unreadable | non_finite | size_mismatch | label_values | label_below_threshold
    # | mixed_bit_depth | empty | pairing | georef_mismatch | broken_link; and as a note (not
    # a problem): no_change
    kind: str
    path: str
    message: str


@dataclass
class SplitReport:
    """What was found in one split folder."""

    name: str
    path: str
    layout: str
    pairs: int = 0
    orphans: int = 0
    files_scanned: int = 0
    changed_pixels: int = 0
    label_pixels: int = 0
    label_encodings: dict[str, int] = field(default_factory=dict)
    pixel_type: str | None = None  # of the first image scanned
    pixel_type_of: str | None = None

    @property
    def changed_fraction(self) -> float | None:
        return self.changed_pixels / self.label_pixels if self.label_pixels else None


@dataclass
class CheckReport:
    """The result of `check_dataset`: per-split summaries and every problem found.

    Example:
        >>> import tempfile
        >>> from siamese_cd.data.synthetic.generate import make_synthetic_dataset
        >>> data = make_synthetic_dataset(tempfile.mkdtemp(), train=2, val=0, test=0, size=32,
        ...                               progress=False)
        >>> (data / "train" / "time2" / "00001.png").unlink()  # t1 and label now orphans
        >>> report = check_dataset(data / "train", progress=False)
        >>> report.ok, sorted({p.kind for p in report.problems})
        (False, ['orphan'])
        >>> import json
        >>> text = json.dumps(report.to_dict())  # machine-readable, as --json prints
    """

    root: str
    splits: list[SplitReport]
    problems: list[Problem]
    ignored: list[str] = field(default_factory=list)
    # Worth knowing but not stopping training (``no_change``); they leave `ok` True.
    notes: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict:
        return {
            "root": self.root,
            "ok": self.ok,
            "splits": [
                {**asdict(split), "changed_fraction": split.changed_fraction}
                for split in self.splits
            ],
            "problems": [asdict(problem) for problem in self.problems],
            "notes": [asdict(note) for note in self.notes],
            "ignored_folders": self.ignored,
        }

    def format(self) -> str:
        """A human-readable report, problems grouped by kind (at most 20 shown per kind)."""
        lines = []
        for split in self.splits:
            fraction = split.changed_fraction
            changed = (
                f"{100 * fraction:.2f}% changed pixels" if fraction is not None else "no labels"
            )
            encodings = ", ".join(f"{k} {v}" for k, v in sorted(split.label_encodings.items()))
            lines.append(
                f"{split.name} ({split.layout}, {split.path}): {split.pairs} pairs, "
                f"{split.orphans} orphans, {split.files_scanned} files scanned, {changed}"
                + (f"; label encodings: {encodings}" if encodings else "")
            )
        for folder in self.ignored:
            lines.append(f"ignored {folder}: matches no layout")
        lines += _grouped(self.problems, "problem(s)")
        lines += _grouped(self.notes, "note(s)")
        lines.append("OK: no problems found" if self.ok else f"{len(self.problems)} problem(s)")
        return "\n".join(lines)


def _grouped(findings: list[Problem], what: str) -> list[str]:
    """Lines of `findings` grouped by kind, at most `_SHOWN_PER_KIND` shown per kind."""
    kinds: dict[str, list[Problem]] = {}
    for finding in findings:
        kinds.setdefault(finding.kind, []).append(finding)
    lines = []
    for kind, found in kinds.items():
        lines.append(f"{len(found)} {kind.replace('_', ' ')} {what}:")
        lines += [f"  [{p.split}] {p.message}" for p in found[:_SHOWN_PER_KIND]]
        if len(found) > _SHOWN_PER_KIND:
            lines.append(f"  ... and {len(found) - _SHOWN_PER_KIND} more (see --json)")
    return lines


def no_change_note(report: SplitReport, label_threshold: int) -> Problem | None:
    """A ``no_change`` note for a labelled split without a single change pixel, else None.

    What it costs depends on the split: validation is where it matters (``val_f1`` is 0 at
    every epoch); for training and test it is informational.
    """
    if not report.label_pixels or report.changed_pixels:
        return None
    consequence = {
        "val": "val_f1 is 0 at every epoch, so siamese-cd train follows val_loss for the best "
        "checkpoint and early stopping, and keeps the decision threshold 0.5",
        "train": "there is no change to learn, and the class-weighted loss (bce) cannot be "
        "weighted from it",
    }.get(report.name, "change-class precision, recall and F1 are 0 on it")
    return Problem(
        report.name,
        "no_change",
        report.path,
        f"{report.path}: no label holds a change pixel (at label threshold "
        f"{label_threshold}): {consequence}",
    )


def find_splits(data_dir: Path) -> tuple[list[tuple[str, Path, str, list[Path]]], list[str]]:
    """Split folders under `data_dir` (or `data_dir` itself), with layout and folders.

    Returns:
        ``[(name, split_dir, layout, [t1_dir, t2_dir, label_dir]), ...]`` and the sub-folders
        that match no layout.

    Raises:
        DatasetError: if neither `data_dir` nor any sub-folder matches a layout.
    """
    if not data_dir.is_dir():
        raise DatasetError(f"{data_dir}: not a directory")
    try:
        layout, *folders = detect_layout(data_dir)
        return [(data_dir.name, data_dir, layout, folders)], []
    except DatasetError as error:
        if "more than one layout" in str(error):
            raise
    splits, ignored = [], []
    children = sorted(p for p in data_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    for child in children:
        try:
            layout, *folders = detect_layout(child)
        except DatasetError as error:
            if "more than one layout" in str(error):
                raise
            ignored.append(str(child))
            continue
        splits.append((child.name, child, layout, folders))
    if not splits:
        splits = _published_splits(data_dir)
        ignored = [] if splits else ignored
    if not splits:
        raise DatasetError(
            f"{data_dir}: neither it nor its sub-folders match a known layout (looked for "
            f"{describe_layouts()})"
        )
    return splits, ignored


def _published_splits(data_dir: Path) -> list[tuple[str, Path, str, list[Path]]]:
    """The split folders of a benchmark download that keeps them deeper (CDD's
    ``Real/subset``, ``LEVIR-CD+/``), or none."""
    layout = dataset_layout(data_dir)
    if layout is None or not issubclass(layout, FolderLayout):
        return []
    folders = [(split, layout.split_dir(data_dir, split)) for split in layout.splits]
    return [(split, path, layout.name, list(layout.folder_paths(path))) for split, path in folders]


def _label_problem(path: Path, values: np.ndarray) -> str | None:
    """Describe label values outside {0, 1} or {0, max}, or None when they are fine."""
    top = 65535 if values.dtype == np.uint16 and values.max(initial=0) > 255 else 255
    present = np.unique(values)
    if set(present.tolist()) <= {0, 1} or set(present.tolist()) <= {0, top}:
        return None
    if is_lossy(path):
        bad = (values > JPEG_TOLERANCE) & (values < top - JPEG_TOLERANCE)
    else:
        bad = (values != 0) & (values != top)
    if not bad.any():
        return None
    odd = np.unique(values[bad])
    shown = ", ".join(str(v) for v in odd[:8]) + (", ..." if len(odd) > 8 else "")
    return (
        f"{path}: label values outside {{0, {top}}} and {{0, 1}}: {shown} "
        f"({100 * bad.mean():.2f}% of pixels)"
    )


def _scan_pair(pair, label_threshold: int, label_values=read_label_values) -> dict:
    """Decode every file of a pair; return shapes, label statistics and problems.

    `label_values` reads a label as its layout stores change (e.g. SECOND's from two maps).
    """
    result: dict = {
        "problems": [],
        "shapes": [],
        "dtypes": [],
        "changed": 0,
        "pixels": 0,
        "encoding": None,
    }
    for role, path in pair.files():
        try:
            if role == "label":
                values = label_values(path)
                shape = values.shape[:2]
                message = _label_problem(path, values)
                if message:
                    result["problems"].append(("label_values", path, message))
                mask = binarize_label(values, label_threshold, is_lossy(path))
                below = below_threshold(values, mask, label_threshold, is_lossy(path))
                if below:
                    result["problems"].append(("label_below_threshold", path, f"{path}: {below}"))
                result["changed"] = int(np.count_nonzero(mask))
                result["pixels"] = mask.size
                top = values.max(initial=0)
                if top == 0:
                    result["encoding"] = "all 0"
                elif top == 1 and not is_lossy(path):
                    result["encoding"] = "0/1"
                else:
                    result["encoding"] = "thresholded"
            else:
                image = read_image(path)
                shape = image.shape
                result["dtypes"].append((path, image.dtype))
        except NonFiniteError as error:
            result["problems"].append(("non_finite", path, str(error)))
            shape = None
        except ImageReadError as error:
            result["problems"].append(("unreadable", path, str(error)))
            shape = None
        result["shapes"].append((role, path, shape))
    if all(shape is not None for role, _, shape in result["shapes"] if role != "label"):
        # The rule of training and predict: both dates on one grid (TIFF headers only).
        message = grid_mismatch(pair.t1, pair.t2)
        if message:
            result["problems"].append(("georef_mismatch", pair.t2, message))
    known = [s for _, _, s in result["shapes"] if s is not None]
    if len({s[:2] for s in known}) > 1:
        listing = ", ".join(f"{role} {path} {shape}" for role, path, shape in result["shapes"])
        result["problems"].append(
            ("size_mismatch", pair.t1, f"sample {pair.stem!r}: sizes differ: {listing}")
        )
    return result


def check_dataset(
    data_dir: str | Path,
    *,
    label_threshold: int = DEFAULT_LABEL_THRESHOLD,
    on_missing: str = "error",
    workers: int | None = None,
    progress: bool = True,
) -> CheckReport:
    """Scan every file of a dataset folder (one split, or a folder of splits) and report.

    Args:
        data_dir: a split folder in a known layout, or a folder whose sub-folders are splits.
        label_threshold: threshold used to count changed pixels, as in `PairedImageDataset`.
        on_missing: ``"error"``: files without counterparts are problems; ``"skip"``: they
            are counted (``orphans``) but left out, as training with it would.
        workers: decoding threads; defaults to one per core, at most 8.
        progress: show a progress bar over the files.

    Returns:
        A `CheckReport`; ``report.ok`` is False when a problem was found.

    Raises:
        DatasetError: if no split folder is found.
    """
    data_dir = Path(data_dir)
    splits, ignored = find_splits(data_dir)
    workers = workers or max(1, min(8, os.cpu_count() or 1))
    problems: list[Problem] = []
    reports: list[SplitReport] = []
    work = []
    readers: dict = {}  # split name -> how its labels are read
    for name, split_dir, layout, folders in splits:
        report = SplitReport(name, str(split_dir), layout)
        reports.append(report)
        readers[name] = named(layout).label_values
        work += _split_work(report, split_dir, folders, on_missing, problems)

    total_files = sum(len(item.files()) if kind == "pair" else 1 for _, kind, item in work)
    bar = tqdm(total=total_files, desc="Checking files", unit="file", disable=not progress)

    def task(item):
        report, kind, obj = item
        if kind == "file":
            return decode_fault(obj)
        return _scan_pair(obj, label_threshold, readers[report.name])

    with ThreadPoolExecutor(workers) as pool:
        # A bounded window of pending scans keeps memory flat on any dataset size.
        pending: deque = deque()
        items = iter(work)
        for item in items:
            pending.append((item, pool.submit(task, item)))
            if len(pending) >= 4 * workers:
                _collect(*pending.popleft(), problems, bar)
        while pending:
            _collect(*pending.popleft(), problems, bar)
    bar.close()
    notes = [no_change_note(report, label_threshold) for report in reports]
    return CheckReport(str(data_dir), reports, problems, ignored, [n for n in notes if n])


def _split_work(
    report: SplitReport, split_dir: Path, folders: list[Path], on_missing: str, problems: list
) -> list[tuple]:
    """Pair one split's files; record what does not pair; return the files to scan."""
    name = report.name
    try:
        pairs, orphans = match_stems(folders)
    except PairingError as error:
        problems.append(Problem(name, "pairing", str(split_dir), str(error)))
        return []
    # Broken links stop pairing whatever on_missing says; they are not orphans.
    links = [item for item in orphans if isinstance(item, BrokenLink)]
    orphans = [item for item in orphans if not isinstance(item, BrokenLink)]
    problems += [Problem(name, "broken_link", str(x.path), x.describe()) for x in links]
    report.pairs, report.orphans = len(pairs), len(orphans)
    if not pairs:
        problems.append(
            Problem(name, "empty", str(split_dir), f"{split_dir}: no image pairs found")
        )
    work = [(report, "pair", pair) for pair in pairs]
    if on_missing != "skip":
        for orphan in orphans:
            problems.append(Problem(name, "orphan", str(orphan.path), orphan.describe()))
        work += [(report, "file", orphan.path) for orphan in orphans]
    return work


def _collect(item, future, problems: list[Problem], bar) -> None:
    report, kind, obj = item
    result = future.result()
    if kind == "file":
        report.files_scanned += 1
        bar.update(1)
        if result is not None:
            problems.append(Problem(report.name, "unreadable", str(obj), result))
        return
    report.files_scanned += len(result["shapes"])
    bar.update(len(result["shapes"]))
    report.changed_pixels += result["changed"]
    report.label_pixels += result["pixels"]
    if result["encoding"]:
        report.label_encodings[result["encoding"]] = (
            report.label_encodings.get(result["encoding"], 0) + 1
        )
    for kind_name, path, message in result["problems"]:
        problems.append(Problem(report.name, kind_name, str(path), message))
    for path, dtype in result["dtypes"]:
        if report.pixel_type is None:
            report.pixel_type, report.pixel_type_of = dtype.name, str(path)
        elif dtype.name != report.pixel_type:
            problems.append(
                Problem(
                    report.name,
                    "mixed_bit_depth",
                    str(path),
                    f"{path}: {dtype.name} pixels, but {report.pixel_type_of} holds "
                    f"{report.pixel_type}; store every image of a split with one bit depth",
                )
            )
