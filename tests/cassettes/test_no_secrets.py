"""No cassette may carry a credential: the recorder filters them, this scan proves it stayed so."""

from __future__ import annotations

from pathlib import Path

import pytest

from ._exchanges import ANTHROPIC_FAKE_KEY, ANTHROPIC_MODEL, OPENAI_FAKE_KEY, OPENAI_MODEL
from ._helpers import CASSETTE_DIR, FILTER_HEADERS, PLACEHOLDER_KEYS, find_secrets, load_cassette, model_list

FILES = sorted(path for path in CASSETTE_DIR.rglob("*") if path.is_file())


def test_there_are_cassettes_to_scan() -> None:
    assert len([path for path in FILES if path.suffix == ".yaml"]) >= 13


@pytest.mark.parametrize("path", FILES, ids=lambda path: path.name)
def test_file_has_no_key_like_strings(path: Path) -> None:
    assert find_secrets(path.read_text()) == []


@pytest.mark.parametrize("path", [p for p in FILES if p.suffix == ".yaml"], ids=lambda path: path.name)
def test_no_secret_headers_were_recorded(path: Path) -> None:
    for interaction in load_cassette(path.stem)["interactions"]:
        for side in ("request", "response"):
            names = {name.lower() for name in interaction[side]["headers"]}
            assert names.isdisjoint(FILTER_HEADERS), f"{side} of {path.name} carries {names & set(FILTER_HEADERS)}"


# Built from pieces so that this file does not itself look like it holds keys.
OPENAI_LIKE = "sk-" + "proj-" + "A1b2C3d4E5f6G7h8I9j0"
ANTHROPIC_LIKE = "sk-" + "ant-" + "api03-" + "Zz9Yy8Xx7Ww6Vv5Uu4"


@pytest.mark.parametrize(
    ("text", "found"),
    [
        (f"      authorization:\n      - Bearer {OPENAI_LIKE}\n", 3),
        ("      x-api-key:\n      - whatever\n", 1),
        ("      Api-Key:\n      - whatever\n", 1),
        (f'"message": "Incorrect API key provided: {OPENAI_LIKE}"', 1),
        (f"key={ANTHROPIC_LIKE}", 1),
        ("sk-fake-openai and sk-ant-fake are placeholders; sk-fake-****enai is masked", 0),
        ("the x-api-key header is removed before saving", 0),
    ],
)
def test_scanner_catches_keys_and_spares_placeholders(text: str, found: int) -> None:
    assert len(find_secrets(text)) == found


def test_placeholders_are_the_keys_the_cassettes_were_recorded_with() -> None:
    assert {OPENAI_FAKE_KEY, ANTHROPIC_FAKE_KEY} == PLACEHOLDER_KEYS
    params = [deployment["litellm_params"] for deployment in model_list()]
    assert [(p["model"], p["api_key"]) for p in params] == [
        (OPENAI_MODEL, OPENAI_FAKE_KEY),
        (ANTHROPIC_MODEL, ANTHROPIC_FAKE_KEY),
    ]
