"""wikiextractor output as a corpus source: trees and single files (plain, .bz2, .xz, .gz), headings as
section paths, stubs counted, damaged input costing only its own block or file, and parallel pieces giving
the chunks of one pass."""

from __future__ import annotations

import bz2
import gzip
import itertools
import lzma
import random
from pathlib import Path

import pytest

from krqa.corpus.config import SourceConfig
from krqa.corpus.document import Document, Skip
from krqa.corpus.fileio import source_digest
from krqa.corpus.formats import FORMATS, corpus_format, plan_pieces
from krqa.corpus.pieces import Piece, read_piece
from krqa.corpus.pipeline import build_chunks, iter_records
from krqa.corpus.formats import detect_format
from krqa.corpus.store import load_chunks
from krqa.corpus.wikiextractor import is_heading, iter_wikiextractor, split_sections
from krqa.errors import InputError

WORDS = ("조선", "왕조", "한글", "세종", "궁궐", "문화", "역사", "전통", "음식", "김치", "한복", "사찰", "불교", "유교", "서원",
         "과거", "시험", "농업", "도자기", "고려", "신라", "백제", "가야", "성곽", "축제", "민요", "판소리", "탈춤", "서예", "향교")


def sentence(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) + rng.choice(("은", "는", "을", "의", "에서", "과")) for _ in range(rng.randint(6, 12))) + " 있었다."


def doc(doc_id: int | str, title: str, body: list[str], url: str | None = None) -> str:
    url = f"https://ko.wikipedia.org/wiki?curid={doc_id}" if url is None else url
    return f'<doc id="{doc_id}" url="{url}" title="{title}">\n{title}\n\n' + "".join(line + "\n" for line in body) + "</doc>\n"


def article(doc_id: int, rng: random.Random) -> str:
    body = [sentence(rng) + " " + sentence(rng)]
    for heading in rng.sample(["생애.", "어린 시절.", "외교 정책.", "평가.", "개요."], 2):
        body += [heading, sentence(rng) + " " + sentence(rng)]
    return doc(doc_id, f"문서 {doc_id}", body)


def split(records) -> tuple[list[Document], list[Skip]]:
    records = list(records)
    return [r for r in records if isinstance(r, Document)], [r for r in records if isinstance(r, Skip)]


COMPRESS = {"": lambda b: b, ".bz2": bz2.compress, ".xz": lzma.compress, ".gz": gzip.compress}


def write_tree(root: Path, n_files: int, per_file: int, seed: int = 0, suffixes=("",)) -> list[str]:
    """``AA/wiki_00`` … like wikiextractor, each file compressed by the next of ``suffixes``; returns the ids."""
    rng = random.Random(seed)
    ids = []
    for f in range(n_files):
        suffix = suffixes[f % len(suffixes)]
        folder = root / ("AA" if f < 5 else "AB")
        folder.mkdir(parents=True, exist_ok=True)
        text = ""
        for _ in range(per_file):
            ids.append(str(1000 + len(ids)))
            text += article(int(ids[-1]), rng)
        (folder / f"wiki_{f % 5:02d}{suffix}").write_bytes(COMPRESS[suffix](text.encode()))
    return ids


def test_tree_of_plain_and_compressed_files_in_path_order(tmp_path: Path):
    ids = write_tree(tmp_path / "text", 8, 3, suffixes=("", ".bz2", ".xz", ".gz"))
    (tmp_path / "text" / ".hidden").write_bytes(b"not read")
    docs, skips = split(iter_wikiextractor(tmp_path / "text"))
    assert [d.id for d in docs] == ids and skips == []
    assert docs[0].title == "문서 1000" and docs[0].url == "https://ko.wikipedia.org/wiki?curid=1000"
    assert docs[0].sections[0][0] == "" and not docs[0].text.startswith("문서 1000")  # the title line is dropped
    assert {p for d in docs for p, _ in d.sections[1:]} <= {"생애", "어린 시절", "외교 정책", "평가", "개요"}


@pytest.mark.parametrize("suffix", ["", ".bz2", ".xz", ".gz"])
def test_single_file_of_concatenated_blocks(tmp_path: Path, suffix: str):
    rng = random.Random(1)
    path = tmp_path / f"AA{suffix}"
    path.write_bytes(COMPRESS[suffix]("".join(article(i, rng) for i in range(5)).encode()))
    assert detect_format(path) == "wikiextractor"
    docs, skips = split(iter_wikiextractor(path))
    assert [d.id for d in docs] == ["0", "1", "2", "3", "4"] and skips == []


def test_headings_become_section_paths():
    body = ("제목\n\n첫 문단은 여기에 있다.\n생애.\n그는 서울에서 태어났다.\n다음은 그의 주요 업적이다.\n외교 정책.\n"
            "동맹.\n formula_1 동맹을 맺었다 formula_12.\n죽음.\n그는 1950년에 죽었다.\n마지막 줄은 제목이 아니다.")
    sections = split_sections(body, "제목")
    assert sections == [("", "첫 문단은 여기에 있다."),
                        ("생애", "그는 서울에서 태어났다.\n다음은 그의 주요 업적이다."),
                        ("외교 정책 > 동맹", "동맹을 맺었다 ."),
                        ("죽음", "그는 1950년에 죽었다.\n마지막 줄은 제목이 아니다.")]


@pytest.mark.parametrize("line,heading", [
    ("생애.", True), ("어린 시절.", True), ("외교 정책.", True), ("개요.", True), ("죽음.", True),
    ("2010년대 중반부터 현재까지: 인기와 죽음.", True), ("Formed in London.", True), ("바다 생물.", True),
    ("포스트 월드 2차 대전 (Post-World War II).", True),
    ("대부분 자는 것에 대해 대답하고 있었다 (낮잠 등).", False), ("formula_18은 1과 같거나 작다(물론 제외).", False),
    ("학창 시절 어긋난 인연으로 이뤄지지 않았던 첫사랑과 오랜 시간이 지나 다시 만나 삼각관계에 빠지는 이야기.", False),
    ("그는 서울에서 태어났다.", False), ("다음은 주요 업적이다.", False), ("정말 그럴까.", False),
    ("사형이 확정됨.", False), ("발매 중지를 위해 게재하지 않음.", False), ("1심 판결을 유지함.", False),
    ("좋아요.", False), ("첫 문장이다. 둘째 문장.", False), ("- 목록 항목.", False), ("줄임표..", False),
    ("The band was formed in London in 1990.", False),
])
def test_heading_or_sentence(line: str, heading: bool):
    assert is_heading(line, "다음 줄.") is heading
    assert not is_heading(line, "")  # wikiextractor writes a heading only when text follows


def test_escaped_text_and_title_are_unescaped(tmp_path: Path):
    path = tmp_path / "wiki_00"
    path.write_text('<doc id="7" url="https://ko.wikipedia.org/wiki?curid=7" title="알렉스 &amp; 엠마">\n알렉스 &amp; 엠마\n\n'
                    "알렉스 &amp; 엠마는 &lt;영화&gt;이다.\n</doc>\n", encoding="utf-8")
    (document,) = iter_wikiextractor(path)
    assert document.title == "알렉스 & 엠마" and document.sections == [("", "알렉스 & 엠마는 <영화>이다.")]


def test_stubs_are_left_out_and_counted(tmp_path: Path):
    path = tmp_path / "wiki_00"
    path.write_text(doc(1, "빈 문서", []) + doc(2, "넘겨주기", ["", ""]) + article(3, random.Random(0))
                    + doc(4, "수식", ["formula_1"]), encoding="utf-8")
    docs, skips = split(iter_wikiextractor(path))
    assert [d.id for d in docs] == ["3"]
    assert [(s.reason, s.is_error) for s in skips] == [("no_content", False)] * 3
    assert skips[0].position == "doc id 1 (빈 문서, wiki_00 line 1)"


def test_damaged_blocks_cost_only_themselves(tmp_path: Path):
    body = ["본문 첫 줄이 있었다.", "생애.", "그는 서울에서 태어났다."]  # 7 lines a block, with <doc> and </doc>
    blocks = [doc(i, f"문서 {i}", body) for i in range(8)]
    blocks[1] = blocks[1].replace("</doc>\n", "")  # the next <doc> comes first
    blocks[2] = blocks[2].replace(' id="2"', "")
    blocks[3] = blocks[3].replace(' title="문서 3"', "")
    blocks[4] += "stray text between blocks\n"
    blocks[7] = blocks[7].replace("</doc>\n", "")  # the file ends first
    raw = [block.encode() for block in blocks]
    raw[5] = raw[5].replace("서울".encode(), b"\xff\xfe")
    path = tmp_path / "wiki_00"
    path.write_bytes(b"".join(raw))
    docs, skips = split(iter_wikiextractor(path))
    assert [d.id for d in docs] == ["0", "4", "6"]
    assert [(s.reason, s.position, s.detail) for s in skips] == [
        ("malformed_doc", "wiki_00 line 8", "<doc> without </doc> (the next <doc> comes first)"),
        ("malformed_doc", "wiki_00 line 14", "<doc> without the id attribute"),
        ("malformed_doc", "wiki_00 line 21", "<doc> without the title attribute"),
        ("malformed_doc", "wiki_00 line 35", "text outside <doc>…</doc>"),
        ("invalid_utf8", "doc id 5 (문서 5, wiki_00 line 41)", "not valid UTF-8"),
        ("malformed_doc", "wiki_00 line 50", "<doc> without </doc> (the file ends first)"),
    ]
    assert all(s.is_error for s in skips)


@pytest.mark.parametrize("suffix", [".bz2", ".xz", ".gz"])
def test_truncated_compressed_file_keeps_the_rest_of_the_tree(tmp_path: Path, suffix: str):
    """The cut file keeps what decompresses before the cut (nothing of a one-block .bz2), the others all."""
    root = tmp_path / "text"
    ids = write_tree(root, 3, 20, suffixes=(suffix,))
    first = root / "AA" / f"wiki_00{suffix}"
    first.write_bytes(first.read_bytes()[: first.stat().st_size // 2])
    docs, skips = split(iter_wikiextractor(root))
    assert [s.reason for s in skips] == ["truncated"] and skips[0].position.startswith(f"AA/wiki_00{suffix} after line ")
    assert [d.id for d in docs if d.id not in ids[:20]] == ids[20:]
    kept = [d.id for d in docs if d.id in ids[:20]]
    assert kept == ids[:len(kept)] and len(kept) < 20 and (len(kept) > 0 or suffix == ".bz2")


def test_foreign_file_in_the_tree_is_one_skip(tmp_path: Path):
    root = tmp_path / "text"
    ids = write_tree(root, 2, 2)
    (root / "AA" / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)))
    (root / "AA" / "notes.txt").write_text("just some notes\n<doc id=\"9\" title=\"x\">\nx\n\nnot read\n</doc>\n", encoding="utf-8")
    docs, skips = split(iter_wikiextractor(root))
    assert [d.id for d in docs] == ids
    assert [(s.reason, s.position) for s in skips] == [("not_wikiextractor", "AA/image.png line 1"), ("not_wikiextractor", "AA/notes.txt line 1")]
    assert "binary" in skips[0].detail


def test_empty_tree_or_missing_source_is_input_error(tmp_path: Path):
    (tmp_path / "empty" / "AA").mkdir(parents=True)
    (tmp_path / "empty" / ".keep").write_text("", encoding="utf-8")
    with pytest.raises(InputError, match="empty folder"):
        list(iter_wikiextractor(tmp_path / "empty"))
    with pytest.raises(InputError, match="empty folder"):
        list(iter_records(SourceConfig(path=str(tmp_path / "empty"))))
    with pytest.raises(InputError, match="not found"):
        list(iter_records(SourceConfig(path=str(tmp_path / "missing"))))
    with pytest.raises(InputError, match="a folder is not a jsonl source"):
        list(iter_records(SourceConfig(path=str(tmp_path / "empty"), format="jsonl")))


def test_url_only_when_http_and_long_page_cut(tmp_path: Path):
    long_body = ["가나다라마바사 아자차카타파하 " * 200 + "있었다."]
    path = tmp_path / "wiki_00"
    path.write_text(doc(1, "상대", ["본문이 있었다."], url="javascript:alert(1)") + doc(2, "긴 문서", long_body), encoding="utf-8")
    docs, skips = split(iter_wikiextractor(path, max_page_chars=1000))
    assert docs[0].url == "" and len(docs[1].text) <= 1000
    assert [(s.reason, s.is_error) for s in skips] == [("page_truncated", False)] and "doc id 2" in skips[0].position


def test_detection_and_tree_digest(tmp_path: Path, repo: Path):
    root = tmp_path / "text"
    write_tree(root, 3, 1)
    assert detect_format(root) == "wikiextractor"
    assert detect_format(repo / "corpus" / "sample_kowiki.xml.bz2") == "mediawiki"
    size, sha = source_digest(root)
    assert size == sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
    (root / "AA" / "wiki_01").write_bytes((root / "AA" / "wiki_01").read_bytes().replace("있었다".encode(), "없었다".encode(), 1))
    assert source_digest(root)[1] != sha and source_digest(root)[0] == size


def test_pieces_read_as_one_pass(tmp_path: Path):
    """Tree in file runs, a plain file in byte ranges cut at <doc> lines, a compressed file whole; the pieces
    in order give the records of one pass, skips with the same positions."""
    root = tmp_path / "text"
    write_tree(root, 10, 4, suffixes=("", ".bz2"))
    (root / "AB" / "wiki_04").write_bytes(b"\x00\x01binary")
    rng = random.Random(3)
    blocks = [article(i, rng) for i in range(40)]
    blocks[7] = blocks[7].replace("</doc>\n", "")  # unclosed: the next piece's first <doc> ends it
    blocks[20] = doc(20, "빈 문서", [])
    plain = tmp_path / "all.txt"
    plain.write_text("".join(blocks), encoding="utf-8")
    packed = tmp_path / "all.xz"
    packed.write_bytes(lzma.compress(plain.read_bytes()))

    def records(items) -> list[str]:
        return [f"doc {r.id} {r.sections}" if isinstance(r, Document) else str(r) for r in items]

    for path, kinds in ((root, {"files"}), (plain, {"doc"}), (packed, {"whole"})):
        pieces = plan_pieces(0, "wx", path, "wikiextractor", 3000)
        assert {p.kind for p in pieces} == kinds and (len(pieces) > 3 or kinds == {"whole"})
        one_pass = records(iter_wikiextractor(path, source="wx"))
        assert records(itertools.chain.from_iterable(read_piece(p) for p in pieces)) == one_pass
        assert any("malformed_doc" in r or "not_wikiextractor" in r for r in one_pass)
    with pytest.raises(InputError, match="empty folder"):
        (tmp_path / "none").mkdir()
        plan_pieces(0, "wx", tmp_path / "none", "wikiextractor", 3000)


@pytest.mark.slow
def test_chunk_ids_equal_for_one_and_two_workers(tiny_config, tmp_path: Path):
    root = tmp_path / "text"
    write_tree(root, 10, 6, suffixes=("", ".bz2", ".xz"))
    (root / "AB" / "wiki_04").write_bytes(b"\x00binary")
    rng = random.Random(5)
    plain = tmp_path / "kowiki_part.txt"
    plain.write_text("".join(article(5000 + i, rng) for i in range(40)) + doc(9999, "빈 문서", []), encoding="utf-8")
    cfg = tiny_config("corpus.piece_mb=0.004")
    sources = [SourceConfig(path=str(root), name="tree"), SourceConfig(path=str(plain), name="plain")]
    one = build_chunks(cfg.corpus, tmp_path / "one", sources=sources, workers=1)
    two = build_chunks(cfg.corpus, tmp_path / "two", sources=sources, workers=2)
    rows_one, rows_two = load_chunks(tmp_path / "one").to_list(), load_chunks(tmp_path / "two").to_list()
    assert len(rows_one) > 50 and rows_two == rows_one
    assert [r.to_json() for r in two.sources] == [r.to_json() for r in one.sources]
    tree, flat = one.sources
    assert tree.format == flat.format == "wikiextractor" and tree.docs == 54 and flat.docs == 40  # AB/wiki_04 (6 docs) replaced by a binary file
    assert tree.skipped == {"not_wikiextractor": 1} and flat.left_out == {"no_content": 1}
    assert tree.bytes == sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def test_real_kowiki_2022_docs(shared_data: Path):
    """The first documents of the shared 2022 dump: ids and urls from the attributes, headings as sections
    and no sentence taken for a heading."""
    path = shared_data / "kowiki_2022" / "text" / "AJ.xz"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    assert detect_format(path) == "wikiextractor"
    docs, skips = split(itertools.islice(iter_wikiextractor(path), 300))
    assert skips == [] and len(docs) == 300
    assert all(d.id.isdigit() and d.url == f"https://ko.wikipedia.org/wiki?curid={d.id}" for d in docs)
    market = next(d for d in docs if d.title == "시장력")
    paths = [p for p, _ in market.sections]
    assert paths[:3] == ["", "시장력의 원천", "시장력의 측정"]
    assert "다음은 시장력의 원천이 되는 진입 장벽을 이루는 요소이다." in dict(market.sections)["시장력의 원천"]
    headings = [p for d in docs for p, _ in d.sections if p]
    assert len(headings) > 100 and not [h for h in headings if h.endswith("다")]


def test_format_table_refuses_unknown_formats(tmp_path: Path):
    """Every reader the pipeline, the piece planner and detection use comes from the table; a format that
    is not in it is refused, not read as JSONL line ranges."""
    assert set(FORMATS) == {"mediawiki", "namuwiki", "jsonl", "squad", "wikiextractor"}
    assert corpus_format("wikiextractor").read is iter_wikiextractor
    path = tmp_path / "docs.txt"
    path.write_text('{"id": "1", "title": "t", "text": "본문"}\n' * 2000, encoding="utf-8")
    for call in (lambda: corpus_format("xml"), lambda: plan_pieces(0, "x", path, "xml", 1000),
                 lambda: list(iter_records(SourceConfig.model_construct(path=str(path), format="xml", name=None, limit=None)))):
        with pytest.raises(InputError, match="unknown corpus format 'xml'"):
            call()
    with pytest.raises(InputError, match="unknown piece kind"):
        list(read_piece(Piece(0, "x", str(path), "jsonl", "lines")))
    assert {p.kind for p in plan_pieces(0, "x", path, "jsonl", 1000)} == {"jsonl"}
    assert [p.kind for p in plan_pieces(0, "x", path, "squad", 1000)] == ["whole"]
