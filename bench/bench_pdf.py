"""PDF text extraction and OCR figures on the shared rmanuals set, each extractor beside pypdf.

1. extraction: pages per second and text quality of pypdf (as ingest runs it: visible text
   only, cleaned) and pypdfium2 (cleaned the same way, its soft-hyphen marks removed), over the
   seven R manuals (677 pages): gold answers found on their gold page, words, ligatures and
   hyphenated line ends left. The ratio is pypdfium2's pages per second over pypdf's.
2. OCR: seconds per page for scanned pages (pages of the set rendered at the OCR resolution,
   so a scan of known text), and the share of the page's words OCR reads back.

Usage: python bench/bench_pdf.py [--eval DIR] [--ocr-pages N] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import time
from pathlib import Path
from typing import Any

from rag.documents.ocr import RENDER_DPI, image_text, pdf_page_image
from rag.documents.pdf import clean_pdf_text, visible_pdf_text

DEFAULT_EVAL = Path(__file__).resolve().parents[2] / "shared" / "eval" / "rmanuals"
LIGATURES = re.compile("[\ufb00-\ufb06]")
HYPHENATED = re.compile(r"[a-z]-\n[a-z]")


def pypdf_pages(path: Path) -> list[str]:
    from pypdf import PdfReader

    return [clean_pdf_text(visible_pdf_text(page)[0]) for page in PdfReader(path).pages]


def pdfium_pages(path: Path) -> list[str]:
    import pypdfium2 as pdfium

    document = pdfium.PdfDocument(path)
    try:
        return [
            clean_pdf_text(
                page.get_textpage().get_text_range().replace("\r\n", "\n").replace("\ufffe", "")
            )
            for page in document
        ]
    finally:
        document.close()


def extraction(corpus: Path, questions: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    results = {}
    answerable = [q for q in questions if q.get("answerable", True)]
    for name, extract in (("pypdf", pypdf_pages), ("pypdfium2", pdfium_pages)):
        started = time.perf_counter()
        pages = {path.name: extract(path) for path in sorted(corpus.glob("*.pdf"))}
        seconds = time.perf_counter() - started
        count = sum(len(p) for p in pages.values())
        texts = [text for file_pages in pages.values() for text in file_pages]
        found = sum(
            any(
                q["answers"][0].lower() in pages[q["sources"][0]][page - 1].lower()
                for page in q["pages"]
            )
            for q in answerable
        )
        results[name] = {
            "pages": count,
            "seconds": round(seconds, 2),
            "pages_per_s": round(count / seconds, 1),
            "gold_answers_on_gold_page": f"{found}/{len(answerable)}",
            "words": sum(len(t.split()) for t in texts),
            "ligatures_left": sum(len(LIGATURES.findall(t)) for t in texts),
            "hyphenated_line_ends_left": sum(len(HYPHENATED.findall(t)) for t in texts),
        }
    return results


def ocr(corpus: Path, count: int) -> dict[str, Any]:
    """OCR seconds per page, on pages rendered from the set's PDFs (the first is a warm-up)."""
    path = corpus / "R-intro.pdf"
    data = path.read_bytes()
    truth = pypdf_pages(path)
    image_text(pdf_page_image(data, 10))  # loads the models
    seconds, recall = [], []
    for number in range(11, 11 + count):
        image = pdf_page_image(data, number)
        started = time.perf_counter()
        text = image_text(image)
        seconds.append(time.perf_counter() - started)
        words = set(re.findall(r"\w+", truth[number - 1].lower()))
        read = set(re.findall(r"\w+", text.lower()))
        recall.append(len(words & read) / len(words) if words else 1.0)
    return {
        "pages": count,
        "dpi": RENDER_DPI,
        "seconds_per_page_median": round(statistics.median(seconds), 2),
        "seconds_per_page_max": round(max(seconds), 2),
        "word_recall_median": round(statistics.median(recall), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--eval", type=Path, default=DEFAULT_EVAL)
    parser.add_argument("--ocr-pages", type=int, default=5)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    questions = [
        json.loads(line)
        for line in (args.eval / "qa.jsonl").read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]
    results: dict[str, Any] = {"extraction": extraction(args.eval / "corpus", questions)}
    results["ocr"] = ocr(args.eval / "corpus", args.ocr_pages)
    pypdf, pdfium = results["extraction"]["pypdf"], results["extraction"]["pypdfium2"]
    print(f"PDF text on {args.eval.name} ({pypdf['pages']} pages):")
    for name, row in results["extraction"].items():
        print(
            f"  {name:<10} {row['pages_per_s']:>7.1f} pages/s, gold answers on their page "
            f"{row['gold_answers_on_gold_page']}, {row['words']} words, ligatures left "
            f"{row['ligatures_left']}, hyphenated line ends left "
            f"{row['hyphenated_line_ends_left']}"
        )
    print(f"  speed ratio pypdfium2 / pypdf: {pdfium['pages_per_s'] / pypdf['pages_per_s']:.1f}")
    o = results["ocr"]
    print(
        f"OCR at {o['dpi']} dpi: {o['seconds_per_page_median']:.2f} s a page (median of "
        f"{o['pages']}, max {o['seconds_per_page_max']:.2f}), words read back "
        f"{o['word_recall_median']:.3f} of the text layer's"
    )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
