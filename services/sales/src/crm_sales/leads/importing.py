"""Leads from a CSV file: parse and check every row on its own, so a bad row never stops the good ones.

Pure: text in, rows and per-row errors out. The first line is the header: any of the columns
name, email, phone, company, industry, company_size, region, source, owner_id, in any order. Rows are
numbered as a spreadsheet shows them: the header is row 1, the first lead row 2. An empty cell is no value;
a row without a source takes the file's default. A row that repeats an earlier row's email or phone is a
duplicate of that row. Reasons name the column and the rule, never a value: they are personal data.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass

from pydantic import ValidationError

from crm_sales.leads import domain
from crm_sales.leads.drafts import LeadDraft, reasons
from crm_shared.events import LeadSource

COLUMNS = ("name", "email", "phone", "company", "industry", "company_size", "region", "source", "owner_id")
MAX_ROWS = 100_000


class UnreadableFile(Exception):
    """The file as a whole is not a leads CSV (no header, unknown or repeated columns, not text)."""


@dataclass(frozen=True)
class LeadRow:
    row: int
    draft: LeadDraft

    @property
    def keys(self) -> domain.DuplicateKeys:
        return domain.DuplicateKeys(
            domain.normalise_email(self.draft.email), domain.normalise_phone(self.draft.phone), None
        )


@dataclass(frozen=True)
class RowError:
    row: int
    reason: str
    duplicate: bool = False


@dataclass(frozen=True)
class ParsedFile:
    rows: tuple[LeadRow, ...]
    """The good rows, in file order, none a duplicate of another."""
    errors: tuple[RowError, ...]
    """The bad rows and those repeating an earlier one, in file order."""

    @property
    def total(self) -> int:
        return len(self.rows) + len(self.errors)


def decode(data: bytes) -> str:
    """The file's text: UTF-8, with or without a byte-order mark."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UnreadableFile(f"the file is not UTF-8 text (byte {exc.start})") from exc


def _header(cells: Sequence[str]) -> list[str]:
    columns = [c.strip().lower() for c in cells]
    unknown = list(dict.fromkeys(c for c in columns if c not in COLUMNS))  # in the file's order
    if unknown:
        shown = ", ".join(repr(c[:40]) for c in unknown[:5])
        raise UnreadableFile(f"unknown column(s) {shown}; the columns are {', '.join(COLUMNS)}")
    repeated = sorted({c for c in columns if columns.count(c) > 1})
    if repeated:
        raise UnreadableFile(f"column(s) {', '.join(repeated)} appear more than once")
    if not {"email", "phone"} & set(columns):
        raise UnreadableFile("the header has neither an email nor a phone column")
    return columns


def parse_leads(text: str, default_source: LeadSource = "directory_import") -> ParsedFile:
    """Every row of a leads CSV, good or with the reason it is not; UnreadableFile when the header is unusable."""
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        first = next(reader, None)
    except csv.Error as exc:
        raise UnreadableFile(f"the header is not CSV: {exc}") from exc
    if first is None or not any(c.strip() for c in first):
        raise UnreadableFile("the file has no header row")
    columns = _header(first)
    rows: list[LeadRow] = []
    errors: list[RowError] = []
    first_row_of: dict[str, int] = {}
    number = 1
    while True:
        number += 1
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error:
            errors.append(RowError(number, "the row is not valid CSV (an unclosed quote?)"))
            break
        if not any(c.strip() for c in cells):
            continue
        if number - 1 > MAX_ROWS:
            errors.append(RowError(number, f"the file has over {MAX_ROWS} rows: this row and the rest are not read"))
            break
        if len(cells) != len(columns):
            errors.append(RowError(number, f"expected {len(columns)} fields, found {len(cells)}"))
            continue
        fields = {c: v.strip() for c, v in zip(columns, cells, strict=True) if v.strip()}
        fields.setdefault("source", default_source)
        try:
            row = LeadRow(number, LeadDraft.model_validate(fields))
        except ValidationError as exc:
            errors.append(RowError(number, reasons(exc)))
            continue
        keys = row.keys
        earlier = next((first_row_of[k] for k in (f"e:{keys.email}", f"p:{keys.phone}") if k in first_row_of), None)
        if earlier is not None:
            errors.append(RowError(number, f"duplicate of row {earlier} (same email or phone)", duplicate=True))
            continue
        for key in (f"e:{keys.email}" if keys.email else None, f"p:{keys.phone}" if keys.phone else None):
            if key:
                first_row_of[key] = number
        rows.append(row)
    return ParsedFile(tuple(rows), tuple(errors))


def error_report(errors: Sequence[RowError]) -> str:
    """The per-row error report as CSV: row, reason."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["row", "reason"])
    for error in sorted(errors, key=lambda e: e.row):
        writer.writerow([error.row, error.reason])
    return out.getvalue()
