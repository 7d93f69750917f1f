"""What every stage of ``benchmarks/gpu.py`` shares: the sizes of a GPU run or a dry run, the
machine's description, the backbones, the image folders, running the CLI, timing and the one-line
error."""

from __future__ import annotations

import contextlib
import io
import json
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
RECIPE = ROOT / "recipes" / "flowers.toml"
DRY_LABEL = "dry run (CPU, toy sizes): not a measurement"
# EfficientNet-Lite0 under the name the packaged ImageNet weights are moving to (issue 12); the
# older timm variant only where a timm release lacks it
LITE0_NAMES = ("timm/tf_efficientnet_lite0", "timm/efficientnet_lite0")
BACKBONES = {"resnet50": "resnet50", "lite0": LITE0_NAMES[0]}
BACKBONE_TITLES = {"resnet50": "ResNet-50", "lite0": "EfficientNet-Lite0"}


@dataclass
class Settings:
    """Sizes and paths of one run of the script; ``for_args`` picks the GPU or the dry ones."""

    dry: bool
    data: str  # flowers12 (an ImageFolder); dry runs generate their own images instead
    workdir: str  # run directories and generated data: a temporary folder, not the repository
    image_size: int  # stages 2 and 3 (stage 1 uses the flowers recipe's geometry at this size)
    batch: int  # stages 2 and 3
    warmup_steps: int
    timed_steps: int
    engine_copies: int  # flowers12's training images replicated this often for stage 3
    engine_epochs: int
    engine_workers: int
    pipeline_batches: int  # batches the loader alone is timed over
    compile_backend: str  # "inductor" on the GPU; "eager" (dynamo's capture only) in a dry run
    cpu_reference: str | None = None

    @classmethod
    def for_args(cls, args: Any) -> "Settings":
        common = {"data": args.data, "workdir": args.workdir, "cpu_reference": args.cpu_reference}
        if args.dry:
            return cls(dry=True, image_size=32, batch=8, warmup_steps=1, timed_steps=2, engine_copies=2,
                       engine_epochs=1, engine_workers=1, pipeline_batches=3, compile_backend="eager", **common)
        return cls(dry=False, image_size=224, batch=256, warmup_steps=10, timed_steps=30, engine_copies=10,
                   engine_epochs=3, engine_workers=min(8, max(1, (os.cpu_count() or 2) // 2)), pipeline_batches=10,
                   compile_backend="inductor", **common)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Settings":
        return cls(**data)


def one_line(exc: BaseException, limit: int = 300) -> str:
    """An exception as one line: its type and the first line of its message."""
    text = str(exc).strip().splitlines()
    line = f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")
    return line if len(line) <= limit else line[: limit - 3] + "..."


def device() -> Any:
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def synchronize() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def machine() -> dict[str, Any]:
    """The card and the software the figures came from."""
    import torch

    info: dict[str, Any] = {
        "card": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU (CPU)",
        "torch": torch.__version__,
        "cuda": torch.version.cuda or "none",
        "cudnn": str(torch.backends.cudnn.version()) if torch.cuda.is_available() else "none",
        "python": platform.python_version(),
        "cpu_cores": os.cpu_count(),
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info.update(sm=f"{props.major}.{props.minor}", gpu_memory_gib=round(props.total_memory / 2**30, 1),
                    multiprocessors=props.multi_processor_count, bf16=torch.cuda.is_bf16_supported())
    return info


def backbone_name(key: str) -> str:
    """The registered name to build for a backbone key (EfficientNet-Lite0: the first variant
    this timm registers)."""
    if key != "lite0":
        return BACKBONES[key]
    from transferkit.plugins import registry

    names = registry("backbone")
    for name in LITE0_NAMES:
        if name in names:
            return name
    raise LookupError(f"none of {', '.join(LITE0_NAMES)} is registered; install timm >= 1.0")


class _Tee(io.TextIOBase):
    """Writes through to a stream and keeps a copy (a long run's log appears as it goes)."""

    def __init__(self, stream: Any) -> None:
        self.stream, self.copy = stream, io.StringIO()

    def write(self, text: str) -> int:
        self.stream.write(text)
        return self.copy.write(text)

    def flush(self) -> None:
        self.stream.flush()


def run_cli(argv: list[str]) -> str:
    """``transferkit ARGV`` in this process (the ``main`` the console script calls); returns its
    stdout. A non-zero exit raises with the CLI's own one-line error."""
    from transferkit import cli

    out, err = _Tee(sys.stdout), _Tee(sys.stderr)
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(argv)
    if code != 0:
        lines = [l for l in err.copy.getvalue().splitlines() if l.strip()]
        raise RuntimeError(f"transferkit {argv[0]} exited {code}: {lines[-1] if lines else 'no message'}")
    return out.copy.getvalue()


def finetune_argv(overrides: dict[str, str], output: Path) -> list[str]:
    """``finetune recipes/flowers.toml --set KEY=VALUE ... --output DIR``."""
    sets = [arg for key, value in overrides.items() for arg in ("--set", f"{key}={value}")]
    return ["finetune", str(RECIPE), *sets, "--output", str(output)]


def fresh_dir(path: Path) -> Path:
    """A run directory that does not exist yet (several runs in one work folder)."""
    n = 1
    while (path.parent / f"{path.name}-{n}").exists():
        n += 1
    return path.parent / f"{path.name}-{n}"


def read_summary(run: Path) -> dict[str, Any]:
    return json.loads((Path(run) / "summary.json").read_text())


def cli_command(*argv: str) -> list[str]:
    """``transferkit ARGV`` as a child process of this interpreter."""
    return [sys.executable, "-m", "transferkit", *argv]


def timed_loop(step: Callable[[int], None], warmup: int, steps: int) -> tuple[float, float]:
    """(seconds of the ``warmup`` first steps, compilation included; seconds of the next ``steps``),
    the device synchronised around each timed region."""
    synchronize()
    started = time.perf_counter()
    for i in range(warmup):
        step(i)
    synchronize()
    warm = time.perf_counter() - started
    started = time.perf_counter()
    for i in range(steps):
        step(warmup + i)
    synchronize()
    return warm, time.perf_counter() - started


def reset_peak_memory() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()


def peak_memory_gib() -> float | None:
    """Peak GPU memory allocated by tensors since the last reset (None on the CPU)."""
    import torch

    return torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None


# -- image folders: flowers12 as it is (stage 1), replicated (stage 3), generated (dry runs) --------
TOY_COLOURS = {"red": (200, 40, 40), "green": (40, 180, 60), "blue": (40, 60, 200)}


def toy_folder(root: Path, train_per_class: int = 8, test_per_class: int = 2, size: int = 40) -> Path:
    """``root/{train,test}/<colour>/*.png``: noisy colour patches, learnable in a few steps."""
    if (root / "train").is_dir():
        return root
    rng = np.random.default_rng(0)
    for split, count in (("train", train_per_class), ("test", test_per_class)):
        for name, colour in TOY_COLOURS.items():
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                noise = rng.integers(-40, 40, size=(size, size, 3))
                pixels = np.clip(np.array(colour)[None, None, :] + noise, 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{name}_{i:03d}.png")
    return root


def flowers_root(settings: Settings) -> Path:
    """Stage 1's data: flowers12 on the GPU, a generated folder in a dry run."""
    if settings.dry:
        return toy_folder(Path(settings.workdir) / "toy")
    root = Path(settings.data)
    root = root if root.is_absolute() else ROOT / root
    if not (root / "train").is_dir():
        raise FileNotFoundError(f"--data {settings.data}: no train/ folder; point --data at flowers12 (an ImageFolder)")
    return root


def replicated_root(settings: Settings) -> Path:
    """Stage 3's data: the training images linked ``engine_copies`` times (the engine decodes
    each link as its own image), the test images once."""
    source = flowers_root(settings)
    root = Path(settings.workdir) / f"replicated-x{settings.engine_copies}"
    if (root / "train").is_dir():
        return root
    for split, copies in (("train", settings.engine_copies), ("test", 1)):
        for class_dir in sorted(p for p in (source / split).iterdir() if p.is_dir()):
            target = root / split / class_dir.name
            target.mkdir(parents=True, exist_ok=True)
            for image in sorted(p for p in class_dir.iterdir() if p.is_file()):
                for copy in range(copies):
                    (target / f"{image.stem}-{copy}{image.suffix}").symlink_to(image.resolve())
    return root
