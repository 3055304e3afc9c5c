"""Hypothesis properties of the parsing rules: text validators, the cursor codec, tag and email
normalisation, and ETag matching. Examples per property: 100, derandomized, in ``make test``;
5,000 random ones with ``--deep`` (profiles in ``tests/conftest.py``).
"""

from __future__ import annotations

import base64
import json
import re
import unicodedata
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import assume, example, given
from hypothesis import strategies as st

from taskhub.core.errors import UnprocessableEntity
from taskhub.core.etag import etag_matches, strong_etag
from taskhub.core.pagination import decode_cursor, encode_cursor
from taskhub.core.security import normalize_email
from taskhub.core.validators import header_token, multiline_text, plain_text, secret_text
from taskhub.tasks.schemas import SORT_KEYS, TaskCreate, normalize_tag

# Every code point, unpaired surrogates included (JSON can carry them as \uXXXX escapes).
any_text = st.text(st.characters(codec=None, categories=None))
CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
SURROGATE = re.compile("[\ud800-\udfff]")


class TestTextValidators:
    @given(any_text)
    def test_plain_text_accepts_exactly_one_line_of_characters(self, value: str) -> None:
        refused = bool(SURROGATE.search(value) or CONTROL.search(value))
        try:
            result = plain_text(value)
        except ValueError as exc:
            assert refused, (value, exc)
            assert str(exc).startswith("must not contain")
            return
        assert not refused
        assert unicodedata.is_normalized("NFC", result)
        assert result == unicodedata.normalize("NFC", value)
        assert plain_text(result) == result  # idempotent: stored text validates as itself

    @given(any_text)
    def test_multiline_text_also_keeps_tab_and_line_breaks(self, value: str) -> None:
        refused = bool(SURROGATE.search(value) or CONTROL.search(value.translate({9: None, 10: None, 13: None})))
        try:
            result = multiline_text(value)
        except ValueError:
            assert refused
            return
        assert not refused
        assert result == unicodedata.normalize("NFC", value)
        assert multiline_text(result) == result

    @given(any_text)
    def test_secrets_are_kept_exactly_unless_unencodable(self, value: str) -> None:
        try:
            result = secret_text(value)
        except ValueError:
            assert SURROGATE.search(value)
            return
        assert result == value
        result.encode("utf-8")  # what argon2 and SHA-256 are given

    @given(any_text)
    def test_header_tokens_are_printable_ascii(self, value: str) -> None:
        try:
            assert header_token(value) == value
        except ValueError:
            assert any(not 0x20 <= ord(c) <= 0x7E for c in value)
            return
        assert all(0x20 <= ord(c) <= 0x7E for c in value)

    @given(any_text)
    def test_a_refusal_names_the_first_offending_character(self, value: str) -> None:
        try:
            plain_text(value)
        except ValueError as exc:
            message = str(exc)
            if message != "must not contain NUL characters":
                found = re.search(r"U\+([0-9A-F]{4,6}) at position (\d+)", message)
                assert found is not None, message
                assert ord(value[int(found.group(2))]) == int(found.group(1), 16)


class TestTags:
    @given(st.text(st.characters(codec="utf-8"), max_size=60))
    def test_normalize_tag_is_stable(self, raw: str) -> None:
        tag = normalize_tag(raw)
        assert normalize_tag(tag) == tag
        assert unicodedata.is_normalized("NFC", tag)
        # The repository trims and lower-cases a filter again; that must not change it.
        assert tag.strip().lower() == tag

    @given(
        st.lists(st.text(st.characters(codec="utf-8", exclude_categories=["Cc"]), min_size=1, max_size=8), max_size=20)
    )
    def test_tags_are_deduplicated_in_first_seen_order(self, raw: list[str]) -> None:
        normalized = [normalize_tag(t) for t in raw]
        assume(all(1 <= len(t) <= 50 for t in normalized))
        task = TaskCreate(title="t", tags=raw)
        assert task.tags == list(dict.fromkeys(normalized))
        assert TaskCreate(title="t", tags=task.tags).tags == task.tags  # a stored list validates as itself


class TestEmails:
    @given(st.emails())
    def test_normalized_email_is_idempotent_and_case_insensitive(self, email: str) -> None:
        normalized = normalize_email(email)
        assert normalize_email(normalized) == normalized
        assert normalize_email(email.upper()) == normalize_email(email.lower())
        assert normalize_email(f"  {email}\t") == normalized

    @given(st.text(st.characters(codec="utf-8"), max_size=40))
    @example("\u00b8a@x.io")  # Finding: NFKC made it " \u0327a@x.io", trimmed only the second time
    def test_normalized_any_text_is_idempotent(self, value: str) -> None:
        normalized = normalize_email(value)
        assert normalize_email(normalized) == normalized


aware_datetimes = st.datetimes(
    min_value=datetime(2, 1, 1),
    max_value=datetime(9998, 12, 31),
    timezones=st.builds(timezone, st.timedeltas(min_value=timedelta(hours=-23), max_value=timedelta(hours=23))),
)


class TestCursors:
    @given(st.sampled_from(sorted(SORT_KEYS)), st.booleans(), st.data(), st.uuids())
    def test_round_trip(self, name: str, descending: bool, data: st.DataObject, row_id: uuid.UUID) -> None:
        key = SORT_KEYS[name]
        sort = ("-" if descending else "") + name
        value: Any
        if key.kind == "rank":
            value = data.draw(st.sampled_from(sorted(key.ranks)))
        else:
            value = data.draw(st.none() if key.nullable and data.draw(st.booleans()) else aware_datetimes)
        cursor = encode_cursor(sort, key, value, row_id)
        assert re.fullmatch(r"[A-Za-z0-9_-]+", cursor)  # URL-safe, no padding
        decoded, decoded_id = decode_cursor(cursor, sort, key)
        assert decoded_id == row_id
        expected = value.astimezone(UTC) if isinstance(value, datetime) else value
        assert decoded == expected

    @given(st.text(max_size=300), st.sampled_from(sorted(SORT_KEYS)))
    def test_garbage_is_a_422_never_a_crash(self, cursor: str, name: str) -> None:
        try:
            decode_cursor(cursor, name, SORT_KEYS[name])
        except UnprocessableEntity as exc:
            assert exc.errors is not None and exc.errors[0]["loc"] == ["query", "cursor"]

    json_values = st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
        max_leaves=12,
    )

    @given(
        st.sampled_from(sorted(SORT_KEYS)),
        json_values,
        st.one_of(st.uuids().map(str), json_values),
        st.one_of(st.none(), st.sampled_from(sorted(SORT_KEYS))),
    )
    def test_well_formed_but_wrong_content_is_a_422(
        self, name: str, value: Any, row_id: Any, made_for: str | None
    ) -> None:
        """Base64 of JSON of the right shape with any values inside: a 422 or a valid key."""
        raw = json.dumps({"s": made_for or name, "k": {"v": value, "id": row_id}}).encode()  # big ints too
        cursor = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
        key = SORT_KEYS[name]
        try:
            decoded, decoded_id = decode_cursor(cursor, name, key)
        except UnprocessableEntity:
            return
        assert isinstance(decoded_id, uuid.UUID)
        assert decoded is None or isinstance(decoded, datetime | int)
        if isinstance(decoded, datetime):
            assert decoded.tzinfo is not None
            assert decoded.utcoffset() == timedelta(0)

    def test_a_cursor_of_another_sort_is_refused(self) -> None:
        key = SORT_KEYS["created_at"]
        cursor = encode_cursor("created_at", key, datetime(2026, 1, 1, tzinfo=UTC), uuid.uuid4())
        with pytest.raises(UnprocessableEntity) as caught:
            decode_cursor(cursor, "-created_at", key)
        assert caught.value.errors == [
            {"loc": ["query", "cursor"], "msg": "cursor does not match the sort parameter", "type": "value_error"}
        ]


etags = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters='",'), max_size=8)
whitespace = st.text(" \t", max_size=2)


class TestEtags:
    @given(st.integers(min_value=1, max_value=10**9), st.lists(etags, max_size=4), st.data())
    def test_a_listed_strong_tag_matches(self, version: int, others: list[str], data: st.DataObject) -> None:
        etag = strong_etag(version)
        members = [f'"{o}"' for o in others if o != str(version)]
        position = data.draw(st.integers(0, len(members)))
        members.insert(position, etag)
        header = ",".join(data.draw(whitespace) + m + data.draw(whitespace) for m in members)
        assert etag_matches(header, etag, weak=False)
        assert etag_matches(header, etag, weak=True)

    @given(st.integers(min_value=1, max_value=10**9), st.lists(etags, max_size=4))
    def test_a_weak_tag_matches_only_weakly(self, version: int, others: list[str]) -> None:
        etag = strong_etag(version)
        header = ", ".join([*(f'"{o}"' for o in others if o != str(version)), f"W/{etag}"])
        assert etag_matches(header, etag, weak=True)
        assert not etag_matches(header, etag, weak=False)  # RFC 9110 13.1.1

    @given(st.integers(min_value=1, max_value=10**9), st.lists(etags, max_size=4))
    def test_an_unlisted_tag_never_matches(self, version: int, others: list[str]) -> None:
        etag = strong_etag(version)
        listed = [o for o in others if o != str(version)]
        header = ", ".join(f'"{o}"' for o in listed)
        assert not etag_matches(header, etag, weak=True)
        assert not etag_matches(header or None, etag, weak=False)

    @given(st.text(st.characters(max_codepoint=0xFF)), st.integers(min_value=1, max_value=10**9), st.booleans())
    def test_any_header_value_is_answered(self, header: str, version: int, weak: bool) -> None:
        """Header values are latin-1 text: any of them gets a yes or a no, never an exception."""
        result = etag_matches(header, strong_etag(version), weak=weak)
        if "*" not in header and strong_etag(version) not in header:
            assert result is False

    @given(whitespace, whitespace)
    def test_star_matches_any_version(self, before: str, after: str) -> None:
        assert etag_matches(f"{before}*{after}", strong_etag(7), weak=False)
