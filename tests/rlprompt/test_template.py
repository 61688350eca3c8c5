"""Template parsing, the whitespace rules of segments()/fill(), and template errors."""

from __future__ import annotations

import pytest

from rlprompt.errors import RLPromptError
from rlprompt.template import Piece, Template

REVIEW = "Review: {sentence} {prompt}\nSentiment: {mask}"


def test_default_template_pieces() -> None:
    """Each field keeps the whitespace before it; no literal pieces for bare spaces."""
    assert Template("{sentence} {prompt} {mask}").pieces == (
        Piece("sentence", ""),
        Piece("prompt", " "),
        Piece("mask", " "),
    )


def test_template_with_literals_pieces() -> None:
    """Literal text stays literal; whitespace inside a literal is kept in it."""
    assert Template(REVIEW).pieces == (
        Piece("literal", "Review:"),
        Piece("sentence", " "),
        Piece("prompt", " "),
        Piece("literal", "\nSentiment:"),
        Piece("mask", " "),
    )


def test_leading_whitespace_of_first_field_and_multiple_spaces() -> None:
    """All whitespace before a field (spaces, tabs, newlines) belongs to that field."""
    assert Template("  {prompt}\n\t{sentence}{mask}").pieces == (
        Piece("prompt", "  "),
        Piece("sentence", "\n\t"),
        Piece("mask", ""),
    )


def test_segments_carry_field_whitespace_and_strip_values() -> None:
    """Field values are stripped, then prefixed with the field's whitespace; mask is empty."""
    template = Template("{sentence} {prompt} {mask}")
    assert template.segments("  A fine film.  ", " It was ") == [
        ("sentence", "A fine film."),
        ("prompt", " It was"),
        ("mask", ""),
    ]


def test_segments_with_literals() -> None:
    assert Template(REVIEW).segments("Dull.", "It was") == [
        ("literal", "Review:"),
        ("sentence", " Dull."),
        ("prompt", " It was"),
        ("literal", "\nSentiment:"),
        ("mask", ""),
    ]


@pytest.mark.parametrize("prompt", ["", "   ", "\n"])
def test_empty_prompt_collapses_with_its_whitespace(prompt: str) -> None:
    """An empty (or blank) prompt contributes no text, its leading whitespace included; it stays
    in the segments as ``("prompt", "")`` to mark where the prompt starts."""
    template = Template("{sentence} {prompt} {mask}")
    assert template.segments("Great.", prompt) == [("sentence", "Great."), ("prompt", ""), ("mask", "")]
    assert template.fill("Great.", prompt) == "Great. {mask}"


def test_empty_prompt_first_collapses() -> None:
    template = Template("{prompt} {sentence} {mask}")
    assert template.segments("Great.", "") == [("prompt", ""), ("sentence", " Great."), ("mask", "")]
    assert template.fill("Great.", "") == " Great. {mask}"


def test_empty_prompt_with_literals() -> None:
    assert Template(REVIEW).fill("Dull.", "") == "Review: Dull.\nSentiment: {mask}"


def test_empty_sentence_is_dropped() -> None:
    assert Template("{sentence} {prompt} {mask}").segments("  ", "It was") == [("prompt", " It was"), ("mask", "")]


def test_fill_default_mask() -> None:
    assert Template("{sentence} {prompt} {mask}").fill("Great.", "It was") == "Great. It was {mask}"
    assert Template(REVIEW).fill(" Dull. ", "It was") == "Review: Dull. It was\nSentiment: {mask}"


def test_fill_custom_mask_keeps_mask_whitespace() -> None:
    """The mask's own leading whitespace stays in the display text before the mask string."""
    assert Template("{sentence} {prompt} {mask}").fill("Great.", "It was", mask="<mask>") == "Great. It was <mask>"
    assert Template("{sentence}{prompt}{mask}").fill("a", "b", mask="_") == "ab_"


def test_fill_and_segments_agree() -> None:
    """fill() is the concatenation of segments() with the mask's whitespace plus the mask."""
    template = Template(REVIEW)
    segments = template.segments("x y", "z")
    assert template.fill("x y", "z", mask="") == "".join(text for _, text in segments) + " "


def test_template_equality_by_text() -> None:
    assert Template("{sentence} {prompt} {mask}") == Template("{sentence} {prompt} {mask}")
    assert Template("{sentence} {prompt} {mask}") != Template("{prompt} {sentence} {mask}")


@pytest.mark.parametrize(
    ("text", "first"),
    [
        ("{sentence} {prompt} {mask}", False),
        ("{prompt} {sentence} {mask}", True),
        ("Q: {prompt}\nA: {sentence} {mask}", True),
        ("{mask} {sentence} {prompt}", False),
    ],
)
def test_prompt_first(text: str, first: bool) -> None:
    assert Template(text).prompt_first is first


def test_unknown_field() -> None:
    with pytest.raises(
        RLPromptError,
        match=r"template '\{sentence\} \{prompt\} \{label\}' has an unknown field \{label\}; "
        r"valid fields: \{sentence\}, \{prompt\}, \{mask\}$",
    ):
        Template("{sentence} {prompt} {label}")


def test_empty_braces_are_an_unknown_field() -> None:
    with pytest.raises(RLPromptError, match=r"has an unknown field \{\}"):
        Template("{sentence} {prompt} {mask} {}")


@pytest.mark.parametrize(
    ("text", "field", "count"),
    [
        ("{prompt} {mask}", "sentence", 0),
        ("{sentence} {mask}", "prompt", 0),
        ("{sentence} {prompt}", "mask", 0),
        ("", "sentence", 0),
    ],
)
def test_missing_field(text: str, field: str, count: int) -> None:
    with pytest.raises(RLPromptError, match=rf"must contain \{{{field}\}} exactly once \(found {count}\)$"):
        Template(text)


@pytest.mark.parametrize(
    ("text", "field", "count"),
    [
        ("{sentence} {sentence} {prompt} {mask}", "sentence", 2),
        ("{sentence} {prompt} {prompt} {prompt} {mask}", "prompt", 3),
        ("{sentence} {prompt} {mask} {mask}", "mask", 2),
    ],
)
def test_duplicate_field(text: str, field: str, count: int) -> None:
    with pytest.raises(RLPromptError, match=rf"must contain \{{{field}\}} exactly once \(found {count}\)$"):
        Template(text)


def test_error_message_quotes_template() -> None:
    with pytest.raises(RLPromptError, match=r"^template '\{sentence\} \{mask\}' must contain \{prompt\}"):
        Template("{sentence} {mask}")


@pytest.mark.parametrize("text", ["{sentence} {prompt} {mask}", "{sentence} {prompt} {mask} \n\t", REVIEW])
def test_check_for_causal_accepts_mask_at_end(text: str) -> None:
    Template(text).check_for("causal")  # must not raise
    assert Template(text).text.rstrip().endswith("{mask}")


@pytest.mark.parametrize(
    ("text", "after"),
    [
        ("{sentence} {prompt} {mask}.", "."),
        ("{mask} {sentence} {prompt}", " {sentence} {prompt}"),
        ("{sentence} It was {mask} overall. {prompt}", " overall. {prompt}"),
    ],
)
def test_check_for_causal_rejects_text_after_mask(text: str, after: str) -> None:
    with pytest.raises(RLPromptError, match=r"nothing may follow \{mask\}") as info:
        Template(text).check_for("causal")
    assert str(info.value) == (
        f"template {text!r}: a causal LM reads the label at the end, so nothing may follow {{mask}} (found {after!r})"
    )


def test_check_for_masked_accepts_text_after_mask() -> None:
    Template("{sentence} {prompt} {mask}.").check_for("masked")  # a masked LM sees the text after the mask


@pytest.mark.parametrize("text", ["{sentence} {prompt} {mask", "{sentence} {prompt} {mask} }"])
def test_unbalanced_braces_are_a_template_error(text: str) -> None:
    """A bad template is user input: it must be an RLPromptError (one CLI line), not a ValueError traceback."""
    with pytest.raises(RLPromptError, match="template"):
        Template(text)


@pytest.mark.parametrize("text", ["{sentence:>5} {prompt} {mask}", "{sentence} {prompt} {mask!r}"])
def test_field_with_format_spec_or_conversion_is_rejected(text: str) -> None:
    """``{sentence:>5}`` would otherwise be kept as literal text and the sentence never filled in."""
    with pytest.raises(RLPromptError, match="template"):
        Template(text)
