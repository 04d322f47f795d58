"""Mail: one message (.eml) or a mailbox of them (.mbox), with the attachments it can read.

A message is headed by its subject; its From, To, Cc, Date and Subject lines come first, then
its text body (an HTML-only body through the HTML path, hidden text left out). Each
attachment of a type the loaders read is read as they read it and cited as
``message › attachment`` ("Q3 numbers › budget.xlsx, sheet Costs, row 4"); a message
attached to a message is read the same way, up to ``MAX_DEPTH`` deep. In a mailbox, each
message is a page ("message 3"); one that cannot be read is named in the warnings and the
others are kept.

Limits: a message of more than ``MAX_PARTS`` parts, or nested past what the parser can
follow, is refused (a mail bomb); an mbox is split at its "From " lines (mboxo and mboxrd,
as Python's mailbox module and most mail programs write them); Outlook's .msg is not read.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from email import policy
from email.message import EmailMessage, Message
from email.parser import BytesParser
from pathlib import Path

from rag.documents.document import DocumentBuilder, LoadedDocument, LoadError
from rag.documents.html import load_html

MAX_PARTS = 1_000  # parts of one message read at most
MAX_DEPTH = 3  # messages attached to messages are read this deep
SUBJECT_CHARS = 80  # of a subject, as a heading and a citation show it
_HEADERS = ("From", "To", "Cc", "Date", "Subject")


def load_eml(path: Path, data: bytes, ocr: bool = True) -> LoadedDocument:
    """One message, its body and its readable attachments."""
    builder = DocumentBuilder()
    _add_message(path, builder, _parsed(path, data), None, None, ocr, depth=0)
    return builder.build()


def load_mbox(path: Path, data: bytes, ocr: bool = True) -> LoadedDocument:
    """Every message of a mailbox, each a page; one that cannot be read is named and skipped."""
    builder = DocumentBuilder()
    for number, raw in enumerate(_mbox_messages(path, data), start=1):
        try:
            message = _parsed(path, raw)
            _add_message(path, builder, message, number, f"message {number}", ocr, depth=0)
        except LoadError as error:
            builder.parser_warnings.append(f"message {number}: {error.reason}")
    return builder.build()


_PART_HEADER = re.compile(rb"^content-type:", re.IGNORECASE | re.MULTILINE)
_FROM_LINE = re.compile(rb"^From [^\n]*\n?", re.MULTILINE)
_QUOTED_FROM = re.compile(rb"^>(>*From )", re.MULTILINE)


def _mbox_messages(path: Path, data: bytes) -> Iterator[bytes]:
    """The raw messages of an mbox, each without its "From " line, quoted From lines restored."""
    starts = [match.start() for match in _FROM_LINE.finditer(data)]
    if not starts or data[: starts[0]].strip():
        raise LoadError(path, "not an mbox mailbox (it does not start with a 'From ' line)")
    for start, end in itertools.pairwise([*starts, len(data)]):
        message = _FROM_LINE.sub(b"", data[start:end], count=1)
        yield _QUOTED_FROM.sub(rb"\1", message)


def _parsed(path: Path, data: bytes) -> EmailMessage:
    """A message parsed, refused when it has too many parts or nests too deep to follow."""
    too_many = f"a message of more than {MAX_PARTS:,} parts (a mail bomb, or too many to read)"
    if len(_PART_HEADER.findall(data)) > MAX_PARTS:  # counted before they are parsed
        raise LoadError(path, too_many)
    try:
        message = BytesParser(policy=policy.default).parsebytes(data)
        parts = sum(1 for _ in itertools.islice(message.walk(), MAX_PARTS + 1))
    except RecursionError as error:
        raise LoadError(path, "a message nested too deeply to read (a mail bomb)") from error
    if parts > MAX_PARTS:
        raise LoadError(path, too_many)
    if not isinstance(message, EmailMessage) or not any(message.get(h) for h in _HEADERS):
        raise LoadError(path, "not a mail message (no From, To, Date or Subject header)")
    return message


def _add_message(
    path: Path,
    builder: DocumentBuilder,
    message: EmailMessage,
    page: int | None,
    place: str | None,
    ocr: bool,
    depth: int,
) -> None:
    """A message's header lines, body and attachments, under its subject."""
    subject = _subject(message) or "(no subject)"
    headings = (subject,)
    lines = [f"{h}: {' '.join(str(message[h]).split())}" for h in _HEADERS if message.get(h)]
    builder.add("\n".join(lines), headings, page, place)
    body = message.get_body(preferencelist=("plain", "html"))
    if body is not None:
        text = _text_of(body)
        if body.get_content_type() == "text/html":
            builder.add_document(load_html(Path("body.html"), text.encode()), headings, page, place)
        else:
            builder.add(text, headings, page, place)
    for part in message.iter_attachments():
        _add_attachment(path, builder, part, headings, page, place or subject, ocr, depth)


def _add_attachment(
    path: Path,
    builder: DocumentBuilder,
    part: EmailMessage,
    headings: tuple[str, ...],
    page: int | None,
    place: str,
    ocr: bool,
    depth: int,
) -> None:
    """An attachment read as its type's loader reads it, cited as 'message › name'."""
    from rag.documents.loaders import SUPPORTED_TYPES, load  # the loaders read mail too

    if part.get_content_type() == "message/rfc822":
        inner = part.get_content()
        if depth < MAX_DEPTH and isinstance(inner, EmailMessage):
            within = f"{place} › {_subject(inner) or 'attached message'}"
            _add_message(path, builder, inner, page, within, ocr, depth + 1)
        return
    name = Path(part.get_filename() or "").name
    if Path(name).suffix.lower() not in SUPPORTED_TYPES:
        if name:
            builder.parser_warnings.append(f"attachment {name}: not a type that is read")
        return
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return
    try:
        attached = load(Path(name), payload, ocr=ocr)
    except LoadError as error:
        builder.parser_warnings.append(f"attachment {name}: {error.reason}")
        return
    builder.add_document(attached, (*headings, name), page, f"{place} › {name}")


def _subject(message: EmailMessage) -> str:
    """A message's subject on one line, cut to ``SUBJECT_CHARS`` ('' when it has none)."""
    return " ".join(str(message.get("Subject", "")).split())[:SUBJECT_CHARS]


def _text_of(part: Message) -> str:
    """A text part's content, decoded by its charset (or as UTF-8, mistakes replaced)."""
    try:
        content = part.get_content()  # type: ignore[attr-defined]
    except (LookupError, UnicodeError):
        raw = part.get_payload(decode=True)
        content = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else ""
    return str(content)
