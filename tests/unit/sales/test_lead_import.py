"""Parsing a leads CSV: every row checked on its own, reported by its number, never with its values."""

import pytest

from crm_sales.leads.importing import RowError, UnreadableFile, decode, error_report, parse_leads

HEADER = "name,email,phone,company,industry,company_size,region,source,owner_id\n"


def test_good_rows_are_kept_and_bad_ones_reported_by_row_without_their_values() -> None:
    text = (
        HEADER
        + "Ada Lovelace, Ada@Example.com ,,Engines,manufacturing,120,north,,\n"  # row 2: good, default source
        + "Bob,bob-at-example,,,,,,,\n"  # 3: bad email
        + "\n"  # 4: blank, skipped
        + ",,+44 20 7946 0018,Acme,,,,referral,rep-1\n"  # 5: good: a company and a phone suffice
        + "Cy,cy@example.com,,,,many,,,\n"  # 6: size not a number
        + "Dee,,,,,,,,\n"  # 7: neither email nor phone
        + "Eve,eve@example.com,,,,,,telepathy,\n"  # 8: unknown source
        + "Fay,ada@example.COM,,,,,,,\n"  # 9: same email as row 2
        + "Gil,gil@example.com,0044 20 7946 0018,,,,,,\n"  # 10: same phone as row 5
        + "Hal,hal@example.com\n"  # 11: too few fields
        + 'Ian "the" Ink,ian@example.com,,,,,,,rep 2\n'  # 12: owner not an id (and a stray quote is fine)
    )
    parsed = parse_leads(text, "field_visit")

    assert [(r.row, r.draft.source, r.draft.owner_id) for r in parsed.rows] == [
        (2, "field_visit", None),
        (5, "referral", "rep-1"),
    ]
    ada = parsed.rows[0].draft
    assert (ada.email, ada.company_size, ada.region) == ("Ada@Example.com", 120, "north")
    assert parsed.rows[1].keys.phone == "+442079460018"
    reasons = {e.row: e.reason for e in parsed.errors}
    assert sorted(reasons) == [3, 6, 7, 8, 9, 10, 11, 12]
    assert reasons[3] == "email: email is not a valid address"
    assert reasons[6].startswith("company_size: Input should be a valid integer")
    assert reasons[7] == "a lead needs an email or a phone"
    assert reasons[8].startswith("source: Input should be 'field_visit'")
    assert reasons[9] == reasons[10].replace("5", "2") == "duplicate of row 2 (same email or phone)"
    assert reasons[11] == "expected 9 fields, found 2"
    assert reasons[12].startswith("owner_id: String should match pattern")
    assert [e.row for e in parsed.errors if e.duplicate] == [9, 10]
    for secret in ("bob-at-example", "many", "telepathy", "ada@example", "7946", "rep 2", "Dee"):
        assert all(secret not in e.reason for e in parsed.errors)
    assert parsed.total == 10


def test_columns_come_in_any_order_and_case_and_may_be_left_out() -> None:
    parsed = parse_leads("Phone,NAME\n030 1234567,Ada\n")
    [row] = parsed.rows
    assert (row.draft.name, row.draft.phone, row.draft.source, row.keys.phone) == (
        "Ada",
        "030 1234567",
        "directory_import",
        "0301234567",
    )


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "no header row"),
        ("\n\n", "no header row"),
        ("name,e-mail\nAda,ada@example.com\n", "unknown column(s) 'e-mail'"),
        ("name,email,Email\n", "email appear more than once"),
        ("name,company\nAda,Acme\n", "neither an email nor a phone column"),
    ],
)
def test_a_file_without_a_usable_header_is_unreadable(text: str, why: str) -> None:
    with pytest.raises(UnreadableFile, match=why.replace("(", r"\(").replace(")", r"\)")):
        parse_leads(text)


def test_a_file_that_is_not_utf8_is_unreadable_and_a_bom_is_fine() -> None:
    with pytest.raises(UnreadableFile, match="not UTF-8"):
        decode(b"name,email\n\xff\xfe\n")
    assert decode("\ufeffname,email\n".encode()) == "name,email\n"


def test_an_unclosed_quote_stops_the_reading_at_that_row_and_keeps_the_rows_before() -> None:
    parsed = parse_leads('name,email\nAda,ada@example.com\n"Bob,bob@example.com\nCy,cy@example.com\n')
    assert [r.row for r in parsed.rows] == [2]
    assert parsed.errors == (RowError(3, "the row is not valid CSV (an unclosed quote?)"),)


def test_the_error_report_is_a_csv_by_row() -> None:
    report = error_report([RowError(9, "duplicate of row 2"), RowError(3, 'email: "bad", really')])
    assert report == 'row,reason\n3,"email: ""bad"", really"\n9,duplicate of row 2\n'
