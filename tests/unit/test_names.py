"""The grammars of distribution-spec: repository names, tags, digests."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from berth.registry.errors import DigestInvalid, NameInvalid, RegistryError, TagInvalid
from berth.registry.names import MAX_NAME, NAME_RE, check_digest, check_name, check_tag, is_digest

SHA256 = "sha256:" + hashlib.sha256(b"x").hexdigest()
SHA512 = "sha512:" + hashlib.sha512(b"x").hexdigest()


# repository names

@pytest.mark.parametrize("name", [
    "a", "ubuntu", "library/ubuntu", "team/app/api", "a0", "0a", "my-app", "my--app", "my---app", "my_app",
    "my__app", "my.app", "a.b.c", "a/b/c/d/e/f", "v1.2", "x/y-z/a_b/c.d/e__f", "123", "a" * MAX_NAME,
    "/".join(["abc"] * 64),
])
def test_valid_names(name: str) -> None:
    assert check_name(name) == name


@pytest.mark.parametrize("name", [
    "", "A", "Ubuntu", "library/Ubuntu", "team/App",  # upper case
    "a..b", "..", "../etc", "a/../b", "a/./b", ".", "a.", ".a",  # dots
    "a___b", "a_", "_a",  # underscores: one or two between components only
    "a--", "-a", "a-", "--",  # dashes between alphanumerics only
    "a/", "/a", "a//b", "/",  # empty path components
    "a b", "a:b", "a@b", "a+b", "a\\b", "a\nb", "a\n", "é", "a\tb", "a%2fb",
    "a" * (MAX_NAME + 1),
    "a/" * 128 + "b",  # 257 characters of valid components
])
def test_invalid_names(name: str) -> None:
    with pytest.raises(NameInvalid) as info:
        check_name(name)
    assert info.value.code == "NAME_INVALID"
    assert isinstance(info.value, RegistryError)


def test_name_length_limit_is_256() -> None:
    assert MAX_NAME == 256
    assert check_name("a" * 256)
    assert check_name("ab/" * 84 + "abcd")  # 256 exactly, with components
    with pytest.raises(NameInvalid):
        check_name("ab/" * 84 + "abcde")


def test_invalid_name_message_is_bounded() -> None:
    with pytest.raises(NameInvalid) as info:
        check_name("A" * 100_000)
    assert len(info.value.message) < 400


_ALNUM = st.text("abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=12)
_SEPARATOR = st.sampled_from([".", "_", "__", "-", "--", "---"])
_COMPONENT = st.builds(lambda first, rest: first + "".join(sep + part for sep, part in rest),
                       _ALNUM, st.lists(st.tuples(_SEPARATOR, _ALNUM), max_size=4))
GRAMMAR_NAMES = st.lists(_COMPONENT, min_size=1, max_size=12).map("/".join)


@given(GRAMMAR_NAMES)
def test_names_from_the_grammar_are_accepted_when_short_enough(name: str) -> None:
    assert NAME_RE.fullmatch(name)
    if len(name) <= MAX_NAME:
        assert check_name(name) == name
    else:
        with pytest.raises(NameInvalid):
            check_name(name)


@given(st.text(max_size=40))
def test_check_name_accepts_or_raises_name_invalid(text: str) -> None:
    try:
        check_name(text)
    except NameInvalid:
        return
    assert text == text.lower() and ".." not in text and "//" not in text and not text.startswith("/")


# tags

@pytest.mark.parametrize("tag", [
    "latest", "v1", "V1", "1.0.0", "1.0.0-rc.1", "_private", "a_b", "a-b", "a.b", "a..b", "A" * 128, "x", "0",
    "sha256-" + "a" * 64 + ".sig",  # cosign's tag for a signature
])
def test_valid_tags(tag: str) -> None:
    assert check_tag(tag) == tag


@pytest.mark.parametrize("tag", [
    "", ".hidden", "-dash", "A" * 129, "a:b", "a/b", "a b", "a@b", "a+b", "é", "latest\n", "a\x00",
    SHA256,  # a digest is not a tag
])
def test_invalid_tags(tag: str) -> None:
    with pytest.raises(TagInvalid) as info:
        check_tag(tag)
    assert info.value.code == "TAG_INVALID"


def test_tag_length_limit_is_128() -> None:
    assert check_tag("a" * 128)
    with pytest.raises(TagInvalid):
        check_tag("a" * 129)


# digests

def test_is_digest() -> None:
    assert is_digest(SHA256)
    assert is_digest("anything:at-all")
    assert not is_digest("latest")
    assert not is_digest("sha256-" + "a" * 64)


@pytest.mark.parametrize("digest", [SHA256, SHA512, "sha256:" + "0" * 64, "sha512:" + "f" * 128])
def test_valid_digests(digest: str) -> None:
    assert check_digest(digest) == digest


@pytest.mark.parametrize("digest", [
    "", "sha256", "sha256:", ":" + "a" * 64, "latest",
    "sha256:" + "a" * 63, "sha256:" + "a" * 65, "sha256:" + "a" * 128,  # wrong length
    "sha512:" + "a" * 64, "sha512:" + "a" * 127,
    "sha256:" + "A" * 64,  # upper-case hex
    "sha256:" + "g" * 64, "sha256:" + "a" * 63 + "=",
    "sha256:" + "a" * 64 + "\n", " sha256:" + "a" * 64, "sha256 :" + "a" * 64,
    "SHA256:" + "a" * 64, "sha256::" + "a" * 64, "sha256:" + "a" * 32 + ":" + "a" * 31,
    "sha256:../../" + "a" * 58,
])
def test_invalid_digests(digest: str) -> None:
    with pytest.raises(DigestInvalid) as info:
        check_digest(digest)
    assert info.value.code == "DIGEST_INVALID"


@pytest.mark.parametrize("digest", [
    "md5:" + "a" * 32, "sha1:" + "a" * 40, "sha384:" + "a" * 96, "blake3:" + "a" * 64,
    "sha256+b64u:LCa0a2j_xo_5m0U8HTBBNBNCLXBkg7-g-YpeiGJm564",  # well formed per the grammar, not supported
    "multihash+base58:QmRZxt2b1FVZPNqd8hsiykDL3TdBDeTSPX9Kv46HmX4Gx8",
])
def test_unsupported_digest_algorithms(digest: str) -> None:
    with pytest.raises(DigestInvalid) as info:
        check_digest(digest)
    assert "unsupported" in info.value.message


@given(st.binary(max_size=64))
def test_real_digests_are_valid(data: bytes) -> None:
    assert check_digest("sha256:" + hashlib.sha256(data).hexdigest())
    assert check_digest("sha512:" + hashlib.sha512(data).hexdigest())
