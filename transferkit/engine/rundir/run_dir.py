"""The run directory, the one place that knows its layout: the resolved recipe, metrics.jsonl,
checkpoints (``last.pt``, ``best.pt``, the kept top-N epochs and their index), the model files,
plots and summary; and the timestamped folders runs, sweeps and lr-find write into.

Public (``transferkit.RunDir``): the paths, ``read_metrics`` / ``read_summary``,
``kept_checkpoints``, ``write_model_folder`` and ``RunDir.timestamped``. The other writers are the
engine's. Plugins use these instead of file names, so the layout can change under them.

Every file read here is verified against the sha256 recorded when it was written
(``artifacts``), so plugins get the check for free; ``owns`` says which paths are the run's own
(no command writes over them: ``output_paths``).
"""

from __future__ import annotations

import contextlib
import csv
import errno
import fcntl
import io
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import tomli_w
import torch

from ...data.sources import DatasetSplits
from ...errors import CorruptFileError, TransferkitError
from ...recipe import Recipe
from ..training.phases import PHASE_ORDER
from .artifacts import (
    atomic_write,
    encode_text,
    folder_lock,
    read_verified,
    read_verified_json,
    write_verified,
)
from .layout import MANIFEST_FILE, WEIGHTS_FILE, is_run, owns
from .model_files import for_weights, read_weights, write_manifest, write_weights
from .output_paths import check_output_folder, refuse_run_files
from .own_files import own_leftovers, own_temp_files, refuse_foreign, refuse_links, remove_own, write_marker

RUNS_ROOT = Path("runs")
KEPT_INDEX = "index.json"


@dataclass(frozen=True)
class KeptCheckpoint:
    """One epoch's weights kept by ``train.keep_checkpoints = N`` (a classifier state dict)."""

    path: Path
    phase: str
    epoch: int
    score: float  # the validation top-1 it was kept for (training accuracy without a val split)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The weights, verified against the sha256 recorded when they were kept."""
        return read_weights(self.path)


class RunDir:
    """Paths, readers and writers of one run's directory."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        # called with each record appended to metrics.jsonl (e.g. the TensorBoard sink)
        self.observers: list[Callable[[dict[str, Any]], None]] = []

    @staticmethod
    def timestamped(name: str, prefix: str = "") -> Path:
        """A free folder path ``runs/<name>/<prefix><YYYYmmdd-HHMMSS>`` (``-2``, ``-3``... when
        taken); not created."""
        stamp = time.strftime("%Y%m%d-%H%M%S")
        path, suffix = RUNS_ROOT / name / f"{prefix}{stamp}", 1
        while path.exists():
            suffix += 1
            path = RUNS_ROOT / name / f"{prefix}{stamp}-{suffix}"
        return path

    @classmethod
    def create(cls, recipe: Recipe, output: str | Path | None = None) -> "RunDir":
        """A new run's directory: ``output``, or a timestamped one under ``runs/<recipe name>/``."""
        if output is None:
            path = cls.timestamped(recipe.name)
        else:
            path = Path(output)
            cls.check_new(path)
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise TransferkitError(f"--output {path}: cannot create it ({exc.strerror}); choose a writable folder") from None
        write_marker(path)  # what a new run writes here is provably its own (``own_files``)
        return cls(path)

    @classmethod
    def check_new(cls, output: str | Path) -> None:
        """Refuse an ``--output`` a new run cannot use, before any image is decoded: a file, a folder
        that cannot be written, another run's files, or a run that holds a checkpoint or a model."""
        path = Path(output)
        check_output_folder(path, "--output")
        if (path / "checkpoints" / "last.pt").exists() or (path / WEIGHTS_FILE).exists():
            raise TransferkitError(
                f"--output {path}: already holds a run; resume it with --resume {path} or choose another directory"
            )
        refuse_links(path, "--output")
        refuse_foreign(path, "--output")  # e.g. a project folder with its own checkpoints/: never ours to remove

    def owns(self, path: str | Path) -> bool:
        """Whether ``path`` is one of this run's own files (or inside its checkpoints, snapshots or
        TensorBoard folders)."""
        return owns(self.path, path)

    @property
    def is_run(self) -> bool:
        """A folder a training run wrote (not a model folder derived from one, e.g. an average)."""
        return is_run(self.path)

    @property
    def has_checkpoint(self) -> bool:
        return self.last_checkpoint.is_file()

    def leftovers(self) -> list[Path]:
        """What a run that died before its first checkpoint left behind (nothing to resume from):
        only in a folder transferkit marked as a run's when it made it, only the run's own names
        (``own_files``); a folder without the marker is someone's, and nothing in it is removed."""
        if self.has_checkpoint or (self.path / WEIGHTS_FILE).exists():
            return []
        return own_leftovers(self.path)

    def remove_leftovers(self) -> list[str]:
        """Remove ``leftovers()`` without following a link: files by name, folders only of their
        own files (a folder that holds anything else stays, with that); the names removed."""
        return [path.name for path in self.leftovers() if remove_own(path)]

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold ``.lock`` for the run's lifetime: a second run (or resume) into the same directory
        is refused while this one lives; the OS drops the lock when the process dies, even by SIGKILL."""
        self.path.mkdir(parents=True, exist_ok=True)
        for _attempt in range(3):  # a finished run removes its .lock: one locked after that removal is not the lock
            try:  # never through a link planted as .lock (its target would be truncated)
                fd = os.open(self.path / ".lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
            except OSError as exc:
                raise TransferkitError(
                    f"{self.path / '.lock'}: cannot open it ({'a symbolic link' if exc.errno == errno.ELOOP else exc.strerror});"
                    " remove it, or choose another folder"
                ) from None
            fh = os.fdopen(fd, "r+")
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = fh.read(64).strip() or "?"
                fh.close()
                raise TransferkitError(
                    f"{self.path}: another transferkit run (pid {holder}) is using this directory; wait for it to end,"
                    " or choose another --output"
                ) from None
            if _same_file(fh, self.path / ".lock"):
                break
            fcntl.flock(fh, fcntl.LOCK_UN)
            fh.close()
        else:
            raise TransferkitError(f"{self.path}: its .lock keeps being removed by another process; try again")
        try:
            refuse_links(self.path, "run folder")
            fh.seek(0)
            fh.truncate()
            fh.write(str(os.getpid()))
            fh.flush()
            with folder_lock(self.path), folder_lock(self.checkpoints):  # a live writer's temp file is not stale
                for stale in own_temp_files(self.path):
                    stale.unlink(missing_ok=True)  # a crash mid-write left it
            yield
        finally:
            if self.is_finished:  # nothing left to guard: no stale .lock in a finished run
                (self.path / ".lock").unlink(missing_ok=True)
            fcntl.flock(fh, fcntl.LOCK_UN)
            fh.close()

    # -- paths ---------------------------------------------------------------------------------
    @property
    def recipe_file(self) -> Path:
        return self.path / "recipe.toml"

    @property
    def metrics_file(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def last_checkpoint(self) -> Path:
        return self.checkpoints / "last.pt"

    @property
    def best_checkpoint(self) -> Path:
        return self.checkpoints / "best.pt"

    @property
    def kept_index_file(self) -> Path:
        return self.checkpoints / KEPT_INDEX

    @property
    def phase1_weights(self) -> Path:
        """The model as phase 1 left it (the start of WiSE-FT's interpolation, ``train.final``)."""
        return self.checkpoints / "phase1.safetensors"

    @property
    def manifest_file(self) -> Path:
        return self.path / MANIFEST_FILE

    @property
    def reliability_plot(self) -> Path:
        """The final model's reliability diagram, before and after calibration."""
        return self.path / "reliability.png"

    @property
    def is_finished(self) -> bool:
        """The run wrote its summary (it trained to the end)."""
        return self.summary_file.is_file()

    @property
    def summary_file(self) -> Path:
        return self.path / "summary.json"

    @property
    def splits_file(self) -> Path:
        """Which image went to which split, with its label (``write_splits``)."""
        return self.path / "splits.csv"

    @property
    def skipped_images_file(self) -> Path:
        return self.path / "skipped_images.txt"

    @property
    def bad_images_file(self) -> Path:
        """Every bad image file of a run that stopped on them (``data.on_bad_image = "error"``)."""
        return self.path / "bad_images.txt"

    # -- readers -------------------------------------------------------------------------------
    def kept_checkpoints(self) -> list[KeptCheckpoint]:
        """The epochs kept by ``train.keep_checkpoints = N``, best first; empty when none were kept.
        The index and (when read) each file are verified against their recorded sha256."""
        if not self.kept_index_file.is_file():
            return []
        entries = read_verified_json(self.kept_index_file)
        try:
            return [KeptCheckpoint(self.checkpoints / e["file"], e["phase"], int(e["epoch"]), float(e["score"])) for e in entries]
        except (KeyError, TypeError, ValueError) as exc:
            raise CorruptFileError(f"{self.kept_index_file}: not an index of kept checkpoints ({type(exc).__name__}: {exc})") from None

    def read_summary(self) -> dict[str, Any]:
        """``summary.json`` of a finished run (verified)."""
        if not self.is_finished:
            raise TransferkitError(f"{self.path}: no summary.json; give a finished run directory (or finish it with --resume)")
        summary = read_verified_json(self.summary_file)
        if not isinstance(summary, dict):
            raise CorruptFileError(f"{self.summary_file}: not a run summary (a JSON object); restore it, or train again")
        return summary

    def read_recipe_text(self) -> str:
        """``recipe.toml`` as written (verified)."""
        return read_verified(self.recipe_file).decode("utf-8", "surrogateescape")

    # -- writers -------------------------------------------------------------------------------
    def write_model_folder(self, folder: str | Path, state: Mapping[str, torch.Tensor]) -> "RunDir":
        """A new model folder that ``transferkit.load``, ``evaluate``, ``predict`` and ``export``
        accept: ``state`` (a state dict of this run's classifier, e.g. averaged weights) with this
        run's manifest (less the temperature and rejection rule fitted to the run's own weights) and
        recipe."""
        if not self.manifest_file.is_file():
            raise TransferkitError(f"{self.path}: no manifest.json; a model folder needs a finished run to copy it from")
        out = RunDir(folder)
        check_output_folder(out.path, "output folder")
        for target in (out.path / WEIGHTS_FILE, out.manifest_file, out.recipe_file):
            refuse_run_files(target, "output folder")  # e.g. --output RUN itself: its model would be replaced
        out.path.mkdir(parents=True, exist_ok=True)
        write_weights(state, out.path)
        write_manifest(for_weights(read_verified_json(self.manifest_file), state), out.path)
        if self.recipe_file.is_file():
            write_verified(out.recipe_file, read_verified(self.recipe_file))
        return out

    def read_splits(self) -> list[dict[str, str]]:
        """``splits.csv``'s rows (``split``, ``label``, ``image``); empty for runs made before it existed."""
        if not self.splits_file.is_file():
            return []
        text = read_verified(self.splits_file).decode("utf-8", "surrogateescape")  # names as written
        return list(csv.DictReader(io.StringIO(text, newline="")))

    def write_splits(self, splits: DatasetSplits) -> None:
        """``splits.csv``: one row per image of each split: the split, the label's class name and
        the image (an absolute file path, or ``dataset[i]`` for an item of a Python dataset)."""
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["split", "label", "image"])
        for name, images in splits.parts().items():
            for i, target in enumerate(images.targets):
                described = images.describe(i)
                image = os.path.abspath(described) if os.path.isfile(described) else described
                writer.writerow([name, images.classes[target], image])
        write_verified(self.splits_file, out.getvalue().encode("utf-8", "surrogateescape"))

    def write_recipe(self, recipe: Recipe) -> None:
        text = "# The fully resolved recipe of this run (defaults and --set overrides applied).\n"
        text += tomli_w.dumps(recipe.to_dict())
        write_verified(self.recipe_file, encode_text(text))

    def append_metrics(self, record: dict[str, Any]) -> None:
        try:
            fd = os.open(self.metrics_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
            with os.fdopen(fd, "a") as fh:  # O_NOFOLLOW: never appended through a planted link
                fh.write(json.dumps(record, sort_keys=True) + "\n")
                fh.flush()
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise TransferkitError(f"{self.metrics_file}: a symbolic link; remove it (no writes through links)") from None
            raise TransferkitError(
                f"{self.metrics_file}: cannot write it ({exc.strerror}); free some disk space, then continue with --resume {self.path}"
            ) from None
        for observe in self.observers:
            observe(record)

    def read_metrics(self) -> list[dict[str, Any]]:
        """The records of ``metrics.jsonl``; lines a crash cut short or that are damaged are skipped
        (it is appended to, so it has no recorded checksum)."""
        if not self.metrics_file.exists():
            return []
        records = []
        text = self.metrics_file.read_bytes().decode("utf-8", "replace")
        for line in text.splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut short by a crash
            if isinstance(record, dict):
                records.append(record)
        return records

    def truncate_metrics(self, phase: str, epochs_done: int) -> None:
        """Drop records a crash left behind after the checkpoint being resumed from."""
        limit = (PHASE_ORDER[phase], epochs_done)
        keep = [
            r for r in self.read_metrics()
            if r.get("kind") != "epoch" or (PHASE_ORDER.get(r["phase"], 9), r["epoch"]) <= limit
        ]
        keep = [r for r in keep if r.get("kind") != "test" or PHASE_ORDER.get(r["phase"], 9) < PHASE_ORDER[phase]]
        text = "".join(json.dumps(r, sort_keys=True) + "\n" for r in keep)
        atomic_write(self.metrics_file, lambda fh: fh.write(text.encode()))

    def write_json(self, path: Path, data: Any) -> None:
        """A JSON file of the run, its sha256 recorded (non-UTF-8 file names stay escaped)."""
        text = json.dumps(data, indent=2, sort_keys=True) + "\n"
        write_verified(path, text.encode())

    def write_text(self, path: Path, text: str) -> None:
        """A text file of the run, its sha256 recorded; file names that are not UTF-8 are written as
        their own bytes (surrogate escapes)."""
        write_verified(path, encode_text(text))


def _same_file(fh: Any, path: Path) -> bool:
    """Whether the open ``fh`` is still the file at ``path`` (not one removed since it was opened)."""
    try:
        return os.path.samestat(os.fstat(fh.fileno()), os.stat(path))
    except FileNotFoundError:
        return False
