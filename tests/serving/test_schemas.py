"""The body parser: every malformed request gets its own 4xx, code and explanation."""

from __future__ import annotations

import pytest

from serving.schemas import Limits, RequestError, parse_predict_body

LIMITS = Limits(max_texts=3, max_chars=20, max_body_bytes=1024)

BAD_BODIES = [
    # (body, status, code, words the explanation must contain)
    (b"{not json", 400, "malformed_json", "not valid JSON"),
    (b"", 400, "malformed_json", "not valid JSON"),
    (b'["a list"]', 422, "wrong_type", "body must be an object"),
    (b"{}", 422, "missing_field", "'text' or 'texts'"),
    (b'{"text": null}', 422, "missing_field", "'text' or 'texts'"),
    (b'{"text": "a", "lang": "en"}', 422, "unknown_field", "'lang'"),
    (b'{"text": "a", "texts": ["b"]}', 422, "ambiguous_request", "not both"),
    (b'{"text": 3}', 422, "wrong_type", "text must be a string, got int"),
    (b'{"texts": "one"}', 422, "wrong_type", "texts must be a list of strings"),
    (b'{"texts": ["ok", false]}', 422, "wrong_type", "texts[1] must be a string, got bool"),
    (b'{"texts": []}', 422, "invalid_request", "at least one text"),
    (b'{"text": "   "}', 422, "empty_text", "text is empty"),
    (b'{"texts": ["ok", ""]}', 422, "empty_text", "texts[1] is empty"),
    (b'{"text": "' + b"x" * 21 + b'"}', 422, "text_too_long", "21 characters; the limit is 20"),
    (b'{"texts": ["a", "b", "c", "d"]}', 422, "too_many_texts", "4 texts"),
    (b'{"text": "' + b"x" * 2000 + b'"}', 413, "body_too_large", "limit is 1024 bytes"),
    (b'{"text": "a", "text_pair": "b"}', 422, "unexpected_text_pair", "not trained on text "
     "pairs"),
]

PAIRS = Limits(max_texts=3, max_chars=20, max_body_bytes=1024, pairs=True)
BAD_PAIR_BODIES = [
    (b'{"text": "a"}', "missing_text_pair", "give text with text_pair"),
    (b'{"texts": ["a"], "text_pair": "b"}', "missing_text_pair", "give text with text_pair"),
    (b'{"texts": ["a", "b"], "text_pairs": ["c"]}', "pair_count_mismatch", "2 texts but 1"),
    (b'{"text": "a", "text_pair": "' + b"x" * 21 + b'"}', "text_too_long", "text_pair has 21"),
    (b'{"texts": ["a"], "text_pairs": [""]}', "empty_text", "text_pairs[0] is empty"),
]


@pytest.mark.parametrize(("body", "code", "words"), BAD_PAIR_BODIES)
def test_a_pair_model_needs_one_second_text_per_text(body, code, words):
    with pytest.raises(RequestError) as caught:
        parse_predict_body(body, PAIRS)
    assert (caught.value.status, caught.value.code) == (422, code)
    assert words in caught.value.detail


def test_pairs_parse_in_order():
    assert parse_predict_body(b'{"texts": ["a", "b"], "text_pairs": ["c", "d"]}', PAIRS) == [
        ("a", "c"), ("b", "d")]
    assert parse_predict_body(b'{"text": "a", "text_pair": "c"}', PAIRS) == [("a", "c")]


@pytest.mark.parametrize(("body", "status", "code", "words"), BAD_BODIES)
def test_bad_body_gets_its_status_code_and_explanation(body, status, code, words):
    with pytest.raises(RequestError) as caught:
        parse_predict_body(body, LIMITS)
    error = caught.value
    assert (error.status, error.code) == (status, code)
    assert words in error.detail
    assert error.allowed, "every error says what is allowed"
    assert set(error.body()) == {"error", "detail", "allowed"}


def test_one_text_and_a_list_parse_in_order():
    assert parse_predict_body(b'{"text": "good"}', LIMITS) == ["good"]
    assert parse_predict_body('{"texts": ["b", "a", "é"]}'.encode(), LIMITS) == ["b", "a", "é"]


def test_limits_are_inclusive():
    body = ('{"texts": ["' + "x" * 20 + '", "y", "z"]}').encode()
    assert len(parse_predict_body(body, LIMITS)) == 3
