"""Hostile files for the readers: small valid seeds, mutations, and a crash-isolated reader process.

Used by ``tests/test_reliability_fuzz.py`` (hypothesis, bounded) and ``benchmarks/reliability_fuzz.py``
(a larger campaign through the CLI). Each case must end in a correct read or one one-line
:class:`~translate.errors.TranslateError` naming the file: never a hang, an interpreter crash or a
traceback.

The volume readers (ITK, GDCM, nibabel: C code on attacker-controlled bytes) run in a separate
process (``python tests/helpers_fuzz.py --serve``) so that a crash is recorded, not fatal to pytest;
replies come back on a private pipe, so whatever the C libraries print cannot garble them.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import locale
import os
import random
import select
import shutil
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

REPO = Path(__file__).resolve().parents[1]
VOLUME_KINDS = ("nifti_gz", "nifti", "nrrd", "mha", "dicom")
TEXT_KINDS = ("split", "recipe")
KINDS = VOLUME_KINDS + TEXT_KINDS
SUFFIX = {"nifti_gz": ".nii.gz", "nifti": ".nii", "nrrd": ".nrrd", "mha": ".mha"}
#: bytes read as "header" by header-focused mutations
HEADER_BYTES = 400
MALLOC_DEBUG = Path("/usr/lib/x86_64-linux-gnu/libc_malloc_debug.so.0")
#: memory a reader process may take (a hostile header may claim terabytes)
MEMORY_LIMIT = 3 << 30


# ----------------------------------------------------------------------------- seeds
def seed_array() -> np.ndarray:
    z, y, x = np.mgrid[0:4, 0:12, 0:10]
    return (z * 300 + y * 20 + x * 3 - 1000).astype(np.int16)


def seed_image():
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(seed_array())
    image.SetSpacing((0.8, 0.7, 2.5))
    image.SetOrigin((-10.0, 5.0, 30.0))
    return image


def write_dicom_series(image, folder: Path) -> List[Path]:
    """A tiny CT series, one file per slice, with the position tags a reader needs."""
    import SimpleITK as sitk

    folder.mkdir(parents=True, exist_ok=True)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    series = "1.2.826.0.1.3680043.2.1125.1"
    sx, sy, sz = image.GetSpacing()
    files = []
    for k in range(image.GetDepth()):
        plane = image[:, :, k]
        position = image.TransformIndexToPhysicalPoint((0, 0, k))
        tags = {"0008|0060": "CT", "0020|000e": series, "0020|000d": "1.2.826.0.1.3680043.2.1125.2",
                "0008|0016": "1.2.840.10008.5.1.4.1.1.2", "0008|0018": f"{series}.{k + 1}",
                "0020|0037": "1\\0\\0\\0\\1\\0", "0020|0032": "\\".join(f"{v:g}" for v in position),
                "0020|0013": str(k + 1), "0028|0030": f"{sy:g}\\{sx:g}", "0018|0050": f"{sz:g}",
                "0028|1052": "0", "0028|1053": "1"}
        for key, value in tags.items():
            plane.SetMetaData(key, value)
        path = folder / f"{k:03d}.dcm"
        writer.SetFileName(str(path))
        ctype = locale.setlocale(locale.LC_CTYPE)
        try:
            writer.Execute(plane)
        finally:  # GDCM leaves LC_CTYPE at "C" after writing a DS tag: later text I/O would be ASCII
            locale.setlocale(locale.LC_CTYPE, ctype)
        files.append(path)
    return files


def write_seeds(folder: Path, recipe_tree: Optional[dict] = None, data_root: Optional[Path] = None) -> Dict[str, Path]:
    """Valid files of every kind: ``{kind: path}`` (``dicom``: the series folder; ``split``: a data root).

    ``recipe_tree`` (a recipe as a dict) is written as the recipe seed, with ``data.root`` set to
    ``data_root`` when given.
    """
    import SimpleITK as sitk
    import yaml

    folder.mkdir(parents=True, exist_ok=True)
    image = seed_image()
    seeds: Dict[str, Path] = {}
    for kind, suffix in SUFFIX.items():
        path = folder / f"seed{suffix}"
        sitk.WriteImage(image, str(path), useCompression=kind != "nifti")
        seeds[kind] = path
    write_dicom_series(image, folder / "dicom")
    seeds["dicom"] = folder / "dicom"
    split_root = folder / "split_root"  # a copy of data_root (its split.json is what gets mutated)
    if data_root is not None:
        shutil.copytree(data_root, split_root)
    else:
        for subject in ("s1", "s2", "s3"):
            (split_root / subject).mkdir(parents=True, exist_ok=True)
        (split_root / "split.json").write_text(json.dumps({"train": ["s1"], "val": ["s2"], "test": ["s3"]}, indent=1))
    seeds["split"] = split_root
    if recipe_tree is not None:
        tree = json.loads(json.dumps(recipe_tree))
        if data_root is not None:
            tree["data"]["root"] = str(data_root)
        (folder / "recipe.yaml").write_text(yaml.safe_dump(tree, sort_keys=False))
        seeds["recipe"] = folder / "recipe.yaml"
    return seeds


def target_file(kind: str, case_root: Path) -> Path:
    """The file a case mutates inside its copy of the seed: one slice of a series, split.json of a root."""
    if kind == "dicom":
        return sorted(p for p in case_root.iterdir() if p.is_file())[1]
    if kind == "split":
        return case_root / "split.json"
    return case_root


# ----------------------------------------------------------------------------- mutations
def mutate(data: bytes, operation: str, rng: random.Random) -> bytes:
    """One hostile change of ``data``: ``truncate``, ``bitflip`` (1-8 bits, often in the header),
    ``overwrite`` (a run of random bytes), ``random`` (the whole file random), ``insert`` / ``delete``
    (a few bytes, shifting the rest), ``gzip_inner`` (bit flips in the decompressed stream, re-compressed:
    reaches the header parser behind the gzip layer)."""
    n = len(data)
    span = lambda: min(n, HEADER_BYTES) if rng.random() < 0.7 else n  # noqa: E731 - headers first
    if operation == "truncate":
        return data[: rng.randrange(0, max(n, 1))]
    if operation == "bitflip":
        out = bytearray(data)
        for _ in range(rng.randint(1, 8)):
            bit = rng.randrange(span() * 8)
            out[bit // 8] ^= 1 << (bit % 8)
        return bytes(out)
    if operation == "overwrite":
        start = rng.randrange(span())
        length = rng.randint(1, 64)
        return data[:start] + rng.randbytes(length) + data[start + length:]
    if operation == "random":
        return rng.randbytes(rng.choice([0, 1, 16, 348, 540, 1024, n]))
    if operation == "insert":
        at = rng.randrange(span() + 1)
        return data[:at] + rng.randbytes(rng.randint(1, 16)) + data[at:]
    if operation == "delete":
        at = rng.randrange(span())
        return data[:at] + data[at + rng.randint(1, 16):]
    if operation == "gzip_inner":
        try:
            inner = gzip.decompress(data)
        except (OSError, EOFError):
            return mutate(data, "bitflip", rng)
        return gzip.compress(mutate(inner, "bitflip", rng), mtime=0)
    raise ValueError(operation)


OPERATIONS = ("truncate", "bitflip", "overwrite", "random", "insert", "delete", "gzip_inner")


def make_case(kind: str, seeds: Dict[str, Path], folder: Path, operation: str, seed: "int | random.Random") -> Path:
    """Copy the seed of ``kind`` into ``folder`` and mutate it; returns what a reader is given
    (a file, a DICOM folder or a data root). ``seed``: an integer or a ``random.Random`` (hypothesis')."""
    rng = seed if isinstance(seed, random.Random) else random.Random(seed)
    source = seeds[kind]
    if folder.exists():
        shutil.rmtree(folder)
    if source.is_dir():
        shutil.copytree(source, folder)
        given = folder
    else:
        folder.mkdir(parents=True)
        given = folder / source.name
        shutil.copyfile(source, given)
    target = target_file(kind, given)
    target.write_bytes(mutate(target.read_bytes(), operation, rng))
    return given


# ----------------------------------------------------------------------------- one read, classified
def read_one(kind: str, path: str) -> Dict[str, Any]:
    """Run the reader of ``kind`` on ``path``: ``{"outcome": "read" | "error" | "other", "message": ...}``."""
    import warnings

    from translate.errors import TranslateError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if kind in VOLUME_KINDS:
                from translate.data.io import read_volume

                image = read_volume(path)
                assert image.GetDimension() == 3 and image.GetNumberOfComponentsPerPixel() == 1
            elif kind == "split":
                from translate.data.subjects import read_split

                read_split(Path(path))
            else:
                from translate.recipe import load_recipe

                load_recipe(path)
        return {"outcome": "read", "message": ""}
    except TranslateError as err:
        return {"outcome": "error", "message": str(err)}
    except BaseException as err:  # noqa: BLE001 - anything else is the finding
        return {"outcome": "other", "message": f"{type(err).__name__}: {err}",
                "traceback": traceback.format_exc()[-2000:]}


def run_cli(argv: Sequence[str]) -> Dict[str, Any]:
    """``translate ARGV`` in this process, as the console script runs it: exit code, stdout, stderr,
    and ``traceback`` set when an exception escaped (the user would see a traceback)."""
    from translate.cli import app

    out, err = io.StringIO(), io.StringIO()
    code: Any = 0
    escaped = ""
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            app(args=list(argv), prog_name="translate")
        except SystemExit as stop:
            code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
        except BaseException:  # noqa: BLE001
            code, escaped = 1, traceback.format_exc()[-2000:]
    return {"code": code, "stdout": out.getvalue()[-2000:], "stderr": err.getvalue()[-2000:], "traceback": escaped}


def one_line_naming(message: str, given: Path) -> bool:
    """A user-facing error: one line that names the file (or its folder)."""
    names = {str(given), given.name, str(given.parent)}
    return "\n" not in message.strip() and any(name in message for name in names)


# ----------------------------------------------------------------------------- the reader process
def _limit_memory() -> None:
    import resource

    try:
        resource.setrlimit(resource.RLIMIT_DATA, (MEMORY_LIMIT, MEMORY_LIMIT))
    except (ValueError, OSError):
        pass


def serve(reply_fd: int, preload: str) -> None:
    """Read JSON requests from stdin, one per line; write one JSON reply per request to ``reply_fd``."""
    _limit_memory()
    if preload == "cli":
        import translate.cli  # noqa: F401
        import translate.engine.run  # noqa: F401
        import translate.metrics.paired  # noqa: F401
    else:
        import translate.data.io  # noqa: F401
        import translate.data.subjects  # noqa: F401
    with os.fdopen(reply_fd, "w") as replies:
        replies.write(json.dumps({"ready": True}) + "\n")
        replies.flush()
        for line in sys.stdin:
            request = json.loads(line)
            if "argv" in request:
                reply = run_cli(request["argv"])
            else:
                reply = read_one(request["kind"], request["path"])
            replies.write(json.dumps(reply) + "\n")
            replies.flush()


class ReaderProcess:
    """A long-lived child that reads hostile files; a crash or hang is reported and the child replaced."""

    def __init__(self, preload: str = "readers", log: Optional[Path] = None, start_timeout: float = 300.0):
        self.preload, self.log, self.start_timeout = preload, log, start_timeout
        self.proc: Optional[subprocess.Popen] = None
        self._start()

    def _start(self) -> None:
        read_fd, write_fd = os.pipe()
        env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join(
            [str(REPO), str(REPO / "tests"), os.environ.get("PYTHONPATH", "")]))
        # glibc's checking allocator: heap corruption aborts at the read that caused it, not a later one
        env["MALLOC_CHECK_"] = "3"
        if MALLOC_DEBUG.is_file():
            env["LD_PRELOAD"] = " ".join(filter(None, [str(MALLOC_DEBUG), os.environ.get("LD_PRELOAD", "")]))
        stderr = open(self.log, "ab") if self.log else subprocess.DEVNULL
        self.proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--serve", str(write_fd), self.preload],
                                     stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=stderr,
                                     pass_fds=(write_fd,), text=True, cwd=str(REPO), env=env)
        os.close(write_fd)
        self.replies = os.fdopen(read_fd, "r")
        ready = self._reply(self.start_timeout)
        if not ready or not ready.get("ready"):
            raise RuntimeError(f"the reader process did not start: {ready}")

    def _reply(self, timeout: float) -> Optional[dict]:
        ready, _, _ = select.select([self.replies], [], [], timeout)
        if not ready:
            return None
        line = self.replies.readline()
        return json.loads(line) if line else None

    def _restart(self) -> None:
        self.close()
        self._start()

    def request(self, payload: dict, timeout: float) -> Dict[str, Any]:
        """The reply, or ``{"outcome": "crash" | "hang", ...}`` (and a fresh child for the next request)."""
        started = time.perf_counter()
        try:
            self.proc.stdin.write(json.dumps(payload) + "\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            pass
        reply = self._reply(timeout)
        seconds = time.perf_counter() - started
        if reply is None:
            try:  # a crash closes the pipe at once; give the exit status a moment to arrive
                self.proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                pass
            alive = self.proc.poll() is None
            status = None if alive else self.proc.returncode
            self._restart()
            return {"outcome": "hang" if alive else "crash", "message": f"exit status {status}", "seconds": seconds}
        reply["seconds"] = seconds
        return reply

    def read(self, kind: str, path: Path, timeout: float = 60.0) -> Dict[str, Any]:
        return self.request({"kind": kind, "path": str(path)}, timeout)

    def cli(self, argv: Sequence[str], timeout: float = 120.0) -> Dict[str, Any]:
        return self.request({"argv": [str(a) for a in argv]}, timeout)

    def close(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait()
            self.proc.stdin.close()
            self.replies.close()
            self.proc = None


if __name__ == "__main__" and len(sys.argv) == 4 and sys.argv[1] == "--serve":
    serve(int(sys.argv[2]), sys.argv[3])
