"""Version ordering, NVD bounds, vers: ranges, free-text advisory ranges; fuzzed parsers."""

from __future__ import annotations

import contextlib
import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medsentry.vulns.match.ranges import parse_range_text
from medsentry.vulns.match.versions import (
    InvalidVersion,
    Version,
    parse_vers,
    purl_range_contains,
    version_in,
)

ORDERED = [
    # each list is strictly increasing
    [
        "1.1.0",
        "1.1.1-pre1",
        "1.1.1",
        "1.1.1a",
        "1.1.1t",
        "1.1.1u",
        "1.1.2",
        "3.0.0-alpha1",
        "3.0.0-beta2",
        "3.0.0-rc1",
        "3.0.0",
        "3.0.7",
    ],
    ["7.9p1", "8.0", "8.0p1", "9.8", "9.8p1", "9.8P19", "9.9p1"],
    ["7.0", "7.0 SP1", "7.0 SP3", "7.0.1"],
    ["2020-12-31", "20210304", "2021-03-05"],
    ["0.9", "1.0.dev1", "1.0a1", "1.0b2", "1.0rc1", "1.0", "1.0.post1"],
    ["B.06.17", "B.06.18", "C.00.04"],
    ["012U000039", "012U000040", "028U000061"],
    ["9.5", "9.7", "9.19", "9.33", "9.33.1", "12.1"],
]
EQUAL = [
    ("1.0", "1.0.0"),
    ("v2.3", "2.3"),
    ("2021-03-04", "20210304"),
    ("1.2.3+git20200101.abc", "1.2.3"),
    ("7.0 Service Pack 3", "7.0sp3"),
    ("1.0.0-rc.1", "1.0.0-RC1"),
    ("Version 4.1", "4.1"),
    ("2.0.0-final", "2.0.0"),
]


@pytest.mark.parametrize("chain", ORDERED)
def test_chains_are_strictly_increasing(chain: list[str]) -> None:
    vs = [Version(v) for v in chain]
    for a, b in itertools.pairwise(vs):
        assert a < b, (a, b)
        assert not b < a
    assert sorted(reversed(vs)) == vs


@pytest.mark.parametrize(("a", "b"), EQUAL)
def test_equal_spellings(a: str, b: str) -> None:
    assert Version(a) == Version(b)
    assert hash(Version(a)) == hash(Version(b))


def test_letter_suffix_is_after_release_but_pre_release_words_before() -> None:
    assert Version("1.1.1t") > Version("1.1.1")  # OpenSSL letter releases
    assert Version("0.9.8b") > Version("0.9.8")  # a letter without a number is not "beta"
    assert Version("3.8.0b1") < Version("3.8.0")  # b + number is a pre-release
    assert Version("2.0beta") < Version("2.0")
    assert Version("2.0-rc1").is_prerelease and not Version("2.0").is_prerelease


def test_nvd_bounds() -> None:
    assert version_in("1.1.1t", start_including="1.1.1", end_excluding="1.1.1u")
    assert not version_in("1.1.1u", start_including="1.1.1", end_excluding="1.1.1u")
    assert version_in("9.8p1", end_including="9.8p1")
    assert not version_in("9.8p2", end_including="9.8p1")
    assert not version_in("1.0", start_excluding="1.0")
    assert version_in("anything-at-all")


def test_vers_generic_uses_own_ordering() -> None:
    _, rng = parse_vers("vers:generic/>=1.0|<2.0|!=1.5")
    assert rng.contains("1.0") and rng.contains("1.9.9") and not rng.contains("1.5")
    assert not rng.contains("2.0") and not rng.contains("0.9")
    # univers' generic scheme is semver and would put 1.1.1t at or below 1.1.1; ours does not
    assert not purl_range_contains("vers:generic/<=1.1.1", "1.1.1t")
    assert purl_range_contains("vers:generic/<1.1.1u", "1.1.1t")


def test_vers_ecosystems_go_through_univers() -> None:
    assert purl_range_contains("vers:pypi/>=1.0|<2.0", "1.9")
    assert not purl_range_contains("vers:pypi/>=2.0", "2.0rc1")  # PEP 440: rc before final
    assert purl_range_contains("vers:pypi/<2.0", "2.0rc1")
    assert purl_range_contains("vers:deb/>=1:1.0~rc1|<1:1.2", "1:1.1")
    assert not purl_range_contains("vers:deb/>=1:1.0~rc1|<1:1.2", "1:1.2")
    assert purl_range_contains("vers:npm/>=1.0.0|<2.0.0", "1.5.0")
    assert purl_range_contains("vers:maven/>=1.0|<2.0", "1.5-SNAPSHOT")
    with pytest.raises(InvalidVersion):
        purl_range_contains("vers:pypi/>=1.0", "not a version at all ###")


def test_invalid_versions() -> None:
    for bad in ("", "   ", "***", "+"):
        with pytest.raises(InvalidVersion):
            Version(bad)
    with pytest.raises(InvalidVersion):
        parse_vers("generic/>=1.0")


# Real texts of the CISA ICSMA advisories, with versions checked by hand.
ICSMA_TEXTS = [
    ("< 8.2.2", ["8.2.1", "8.1"], ["8.2.2", "8.3"]),
    ("<= 12.2.x.x", ["12.2.9.9", "11.0"], ["12.3", "13.0"]),
    (">= 4.01 | <= 4.34", ["4.01", "4.2", "4.34"], ["4.0", "4.35"]),
    ("2.3.6 and  below", ["2.3.6", "2.0"], ["2.3.7"]),
    ("< 1.8.4 Service Pack 01", ["1.8.4", "1.8.3"], ["1.8.4 SP01", "1.8.5"]),
    ("<= 2.01 (end-of-life Nov 2017)", ["2.01"], ["2.02"]),
    ("14.1.x", ["14.1", "14.1.7"], ["14.2", "14.0"]),
    ("9.13 | 9.19 | 9.33 | 12.1", ["9.19", "12.1"], ["9.20", "12.0"]),
    ("A10 < A11", ["A10"], ["A11"]),
    ("<= U61 |<= L81", ["U61", "L80"], ["U62"]),
    ("HD 16 | HD23", ["HD16", "HD23"], ["HD17"]),
    ("<= S4 A.07.107", ["A.07.107"], ["A.07.108"]),
    ("Rev B-M", ["B", "M"], ["N", "A"]),
    ("(Release 1.3.2 1.4.0 1.4.1 1.4.3 1.4.5)", ["1.4.3"], ["1.4.2"]),
    ("v9.x (with Wireless Battery Module >= v22D19 | <= v22D28)", ["9.1"], ["10.0", "8.9"]),
    ("prior to 4.1", ["4.0.9"], ["4.1"]),
    ("versions 1.0 through 2.3", ["1.0", "2.3"], ["2.4", "0.9"]),
    ("2.1, 2.2 and 2.4", ["2.2"], ["2.3"]),
    ("vers:generic/>=1.0|<2.0", ["1.5"], ["2.0"]),
]


@pytest.mark.parametrize(("text", "inside", "outside"), ICSMA_TEXTS)
def test_icsma_range_texts(text: str, inside: list[str], outside: list[str]) -> None:
    spec = parse_range_text(text)
    assert spec.versioned, spec
    for v in inside:
        assert spec.contains(v) is True, (text, v, str(spec.range))
    for v in outside:
        assert spec.contains(v) is False, (text, v, str(spec.range))


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("vers:all/*", "all"),
        ("All versions", "all"),
        ("* (end-of-life 2011)", "all"),
        ("MMT-1710 | MMT-1754", "model"),
        ("7100 | 7900 | 100 | Protiva Carestation View", "model"),
        ("distributed  < april 1, 2018", "condition"),
        ("<May 2018", "condition"),
    ],
)
def test_texts_without_a_version_condition(text: str, kind: str) -> None:
    spec = parse_range_text(text)
    assert spec.kind == kind
    assert spec.contains("1.0") is (True if kind == "all" else None)


@settings(max_examples=400, deadline=None)
@given(st.text(max_size=60))
def test_fuzz_parsers_raise_only_the_documented_error(text: str) -> None:
    try:
        v = Version(text)
        assert v == Version(text) and not v < v
    except InvalidVersion:
        pass
    spec = parse_range_text(text)  # documented never to raise
    assert spec.kind in {"all", "range", "list", "exact", "model", "condition", "unknown"}
    spec.contains("1.0")
    with contextlib.suppress(InvalidVersion):
        parse_vers("vers:generic/" + text)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.from_regex(r"\A[0-9a-z.\-+ ~]{1,12}\Z"), min_size=3, max_size=3))
def test_fuzz_total_order(texts: list[str]) -> None:
    try:
        a, b, c = (Version(t) for t in texts)
    except InvalidVersion:
        return
    assert (a < b) + (b < a) + (a == b) == 1
    if a <= b and b <= c:
        assert a <= c


def test_purl_ranges() -> None:
    from medsentry.vulns.match.purl import InvalidPurl, Purl, purl_in_range

    assert Purl.parse("pkg:pypi/Django_REST@3.0").key == ("pypi", None, "django-rest")
    assert purl_in_range("pkg:pypi/django@3.2.0", "vers:pypi/>=3.0|<3.2.19")
    assert not purl_in_range("pkg:pypi/django@3.2.19", "vers:pypi/>=3.0|<3.2.19")
    assert purl_in_range(
        "pkg:maven/org.apache.logging.log4j/log4j-core@2.14.1", "vers:maven/>=2.0-beta9|<2.15.0"
    )
    assert purl_in_range("pkg:deb/debian/openssl@1.1.1n-0+deb11u4", "vers:deb/<1.1.1n-0+deb11u5")
    assert purl_in_range("pkg:generic/openssl@1.1.1t", "vers:generic/>1.1.1|<1.1.1u")
    with pytest.raises(InvalidVersion):
        purl_in_range("pkg:npm/lodash@4.17.20", "vers:pypi/<5")
    with pytest.raises(InvalidVersion):
        purl_in_range("pkg:npm/lodash", "vers:npm/<5")
    with pytest.raises(InvalidPurl):
        Purl.parse("lodash 4.17.20")
