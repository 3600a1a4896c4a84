"""Knowledge-base search, pure: stemming and stop words, and BM25 ranking (a rare term counts more than a common
one, a short document more than a long one with the same matches)."""

from __future__ import annotations

from crm_support.kb.search import Indexed, rank, terms, weighted_terms


def test_words_are_stemmed_and_common_words_left_out() -> None:
    assert terms("The printer's rollers are CLEANING the trays") == ["printer", "roller", "clean", "tray"]
    assert terms("of the and") == []
    assert weighted_terms({"title": "Rollers", "solution": "clean the roller", "tags": ["roller"]}) == {
        "roller": 5,
        "clean": 1,
    }


def test_a_rare_term_outranks_a_common_one_and_a_short_document_a_long_one() -> None:
    docs = [
        Indexed("common", {"printer": 1}),
        Indexed("rare", {"toner": 1}),
        Indexed("filler-1", {"printer": 1, "paper": 1}),
        Indexed("filler-2", {"printer": 1, "tray": 1}),
    ]
    hits = rank(["printer", "toner"], docs, documents=4, average_length=1.75)
    assert hits[0].article_id == "rare"
    short, long = Indexed("short", {"jam": 1}), Indexed("long", {"jam": 1, **{f"w{i}": 1 for i in range(30)}})
    assert [h.article_id for h in rank(["jam"], [long, short], documents=2, average_length=16)] == ["short", "long"]
    assert rank(["absent"], docs, documents=4, average_length=2) == []
    assert rank([], docs, documents=4, average_length=2) == []
