"""Crash-safe file output: everything is written beside its target and renamed into place.

A reader therefore sees either the old file/directory or the complete new one, never a half-written one.
Directories are replaced by an atomic exchange (``renameat2(RENAME_EXCHANGE)`` on Linux; two renames where
the filesystem lacks it), and what is replaced goes to a uniquely named trash directory first, so krqa never
deletes a path it did not create. Outputs get the usual modes (0644 files, 0755 directories under umask 022),
not the 0600/0700 of ``mkstemp``/``mkdtemp``, so other service users can read them.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Collection, Iterator
from pathlib import Path
from typing import Any

from krqa.clib import libc
from krqa.errors import InputError

_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def _umask() -> int:
    """The process umask, read without changing it where /proc allows (changing it races other threads)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def file_mode() -> int:
    return 0o666 & ~_umask()


def dir_mode() -> int:
    return 0o777 & ~_umask()


def exchange(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> bool:
    """Atomically swap two existing paths; False where the OS or filesystem cannot (the caller falls back)."""
    renameat2 = getattr(libc(), "renameat2", None)
    if renameat2 is None:
        return False
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EXDEV):
        return False
    raise OSError(err, os.strerror(err), str(a))


def replace_dir(new: Path, target: Path) -> None:
    """Put the complete directory ``new`` at ``target``; a previous ``target`` stays whole until the swap and is
    then moved to a unique trash name beside it and removed. Readers never see ``target`` missing when the
    exchange is available."""
    if not target.exists() and not target.is_symlink():
        os.replace(new, target)
        return
    trash = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".trash", dir=target.parent))
    if exchange(new, target):
        os.replace(new, trash)
    else:
        os.replace(target, trash)
        os.replace(new, target)
    shutil.rmtree(trash, ignore_errors=True)


OwnerCheck = Callable[[Path], str | None]
"""Says why a non-empty directory is not wholly a krqa output of its kind (or None when it is): its marker file
must parse as krqa's, and every file in it must be one krqa lists, so replacing it removes nothing else."""


def unlisted_file(root: Path, listed: Collection[str]) -> str | None:
    """The first file (or link) under ``root`` whose relative path is not in ``listed``."""
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        links = [d for d in dirnames if (here / d).is_symlink()]
        for name in sorted([*filenames, *links]):
            rel = (here / name).relative_to(root).as_posix()
            if rel not in listed:
                return rel
    return None


def check_output_dir(target: str | os.PathLike[str], owner: OwnerCheck, what: str) -> None:
    """Refuse an output directory that krqa may not replace: the filesystem root, the working directory, one of
    its parents or the home directory, anything that is not a directory, and a non-empty directory that
    ``owner`` does not recognise as wholly a krqa ``what``."""
    target = Path(target)
    resolved = target.resolve()
    cwd = Path.cwd().resolve()
    if resolved == Path(resolved.anchor):
        raise InputError(f"{target}: is the filesystem root; choose a new directory for the {what}")
    with contextlib.suppress(RuntimeError, KeyError):
        if resolved == Path.home().resolve():
            raise InputError(f"{target}: is the home directory; krqa never replaces it with a {what}")
    if resolved == cwd or resolved in cwd.parents:
        raise InputError(f"{target}: is the current directory or one of its parents; krqa never replaces it with a {what}; choose a new directory")
    if not target.exists():
        if target.is_symlink():
            raise InputError(f"{target}: a dangling symbolic link; refusing to replace it with a {what}")
        return
    if not target.is_dir():
        raise InputError(f"{target}: exists and is not a directory; refusing to replace it with a {what}")
    if any(target.iterdir()) and (problem := owner(target)) is not None:
        raise InputError(f"{target}: not empty and not a krqa {what} ({problem}); refusing to replace it, choose a new or empty directory")


def check_output_file(target: str | os.PathLike[str], what: str, example: str) -> None:
    """Refuse, before any work, a file output that cannot be written: a directory (``example`` is the file name
    suggested inside it), or a path below something that is not a directory."""
    target = Path(target)
    if target.is_dir():
        raise InputError(f"{target}: is a directory; {what} names the file to write (e.g. {target / example})")
    for parent in target.parents:
        if parent.exists() or parent.is_symlink():
            if not parent.is_dir():
                raise InputError(f"{target}: {parent} is not a directory, so {what} cannot be created under it")
            return


def normalize_modes(root: Path) -> None:
    """Give every file and directory under ``root`` the usual modes (0644/0755 under umask 022): libraries
    that write through their own temporary files (safetensors does) leave 0600, which other users of a
    service cannot read."""
    fmode, dmode = file_mode(), dir_mode()
    for dirpath, _, filenames in os.walk(root):
        os.chmod(dirpath, dmode)
        for name in filenames:
            path = os.path.join(dirpath, name)
            if not os.path.islink(path):
                os.chmod(path, fmode | (os.stat(path).st_mode & 0o111 & dmode))


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str], suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path in the target's directory; on success rename it onto the target."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=suffix + ".tmp", dir=target.parent)
    os.fchmod(fd, file_mode())
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_text(target: str | os.PathLike[str], text: str) -> None:
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")


def atomic_write_json(target: str | os.PathLike[str], obj: Any, indent: int | None = 2) -> None:
    atomic_write_text(target, json.dumps(obj, ensure_ascii=False, indent=indent) + "\n")


@contextlib.contextmanager
def atomic_dir(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Build a directory beside ``target`` and swap it in only when the block finishes without error."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    os.chmod(tmp, dir_mode())
    try:
        yield tmp
        normalize_modes(tmp)
        replace_dir(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def sha256_file(path: str | os.PathLike[str], block: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(block):
            digest.update(chunk)
    return digest.hexdigest()


def json_sha(obj: Any) -> str:
    """sha256 of ``obj`` as canonical JSON (sorted keys, UTF-8, ``str()`` for what JSON lacks): the one way every
    cache key, run fingerprint and progress file in krqa hashes settings and data, so two of them agree."""
    return hashlib.sha256(json.dumps(obj, ensure_ascii=False, sort_keys=True, default=str).encode("utf-8")).hexdigest()


def read_json(path: str | os.PathLike[str], error: type[Exception] = InputError) -> Any:
    """The JSON document at ``path``; a missing file, bad UTF-8 or bad JSON raises ``error`` with a one-line
    message naming the file and the byte, or the line and column, where reading failed."""
    p = Path(path)
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise error(f"{p}: file not found") from None
    except UnicodeDecodeError as exc:
        raise error(f"{p}: not valid UTF-8 at byte {exc.start}") from None
    except json.JSONDecodeError as exc:
        raise error(f"{p}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    except OSError as exc:
        raise error(f"{p}: cannot read ({exc.strerror or type(exc).__name__})") from None


def load_keyed_json(path: Path, key: str, field: str, what: str, redo: str) -> Any | None:
    """``field`` of a cache file written with ``{"sha256": key, field: ...}``, or None when the file is missing,
    unreadable or made for another key, so the caller recomputes (``what`` and ``redo`` word the log line)."""
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        logging.getLogger(__name__).warning("%s: unreadable %s, %s", path, what, redo)
        return None
    if not isinstance(data, dict) or data.get("sha256") != key or not isinstance(data.get(field), dict):
        logging.getLogger(__name__).info("%s: the %s is for other inputs or settings, %s", path, what, redo)
        return None
    return data[field]
