"""driftd.semver: versions as tags spell them, and npm/Masterminds-style ranges."""

from __future__ import annotations

import pytest

from driftd.semver import latest, parse_range, parse_version


def test_versions_parse_tags_as_written() -> None:
    v = parse_version("v1.4.2-rc.1+build.5")
    assert v is not None
    assert (v.major, v.minor, v.patch, v.prerelease, v.build) == (1, 4, 2, ("rc", "1"), "build.5")
    assert parse_version("1.4") == parse_version("1.4.0")
    for not_version in ("latest", "1.2.3.4", "main-abc123", "01.2.3", "1.2.3-01", ""):
        assert parse_version(not_version) is None, not_version


def test_ordering_follows_semver() -> None:
    order = ["1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-alpha.beta", "1.0.0-beta", "1.0.0-beta.2", "1.0.0-beta.11",
             "1.0.0-rc.1", "1.0.0", "1.0.1", "1.2.0", "1.10.0", "2.0.0"]
    vs = [parse_version(t) for t in order]
    assert all(a is not None and b is not None and a < b for a, b in zip(vs, vs[1:], strict=False))


def test_build_metadata_is_ignored_for_ordering() -> None:
    assert parse_version("1.2.3+a") == parse_version("1.2.3+b")
    assert not parse_version("1.2.3+zzz") > parse_version("1.2.3+aaa")  # type: ignore[operator]


TAGS = ["0.9.0", "1.2.0", "v1.4.0", "1.4.3", "1.4.3-beta", "1.5.0-rc.1", "v1.9.9+build.7", "1.10.0", "2.0.0",
        "2.1.0-alpha", "latest"]


@pytest.mark.parametrize(("rng", "want"), [
    (">=1.2 <2", "1.10.0"),
    ("^1.4", "1.10.0"),
    ("~1.4.2", "1.4.3"),
    ("~1.4", "1.4.3"),
    ("1.x", "1.10.0"),
    ("1.4.*", "1.4.3"),
    ("*", "2.0.0"),
    ("1.2 - 1.5", "1.4.3"),
    (">1.4 <1.10", "v1.9.9+build.7"),
    ("^0.9", "0.9.0"),
    ("<=1.4", "1.4.3"),
    ("<1.4", "1.2.0"),
    ("^1.4 || 2.x", "2.0.0"),
    (">=1.5.0-rc.0 <1.6", "1.5.0-rc.1"),  # the range names a pre-release: pre-releases may match
    (">=2.1.0-0", "2.1.0-alpha"),
    ("=1.2.0", "1.2.0"),
    ("!=2.0.0, >=1", "1.10.0"),
    (">= 1.2, < 1.5", "1.4.3"),
    (">=3", None),
])
def test_ranges_pick_the_right_tag(rng: str, want: str | None) -> None:
    got = latest(TAGS, parse_range(rng))
    assert (got[0] if got else None) == want


def test_prereleases_excluded_unless_mentioned() -> None:
    r = parse_range(">=1.0")
    assert not r.matches(parse_version("2.1.0-alpha"))  # type: ignore[arg-type]
    assert parse_range(">=2.1.0-alpha").matches(parse_version("2.1.0-beta"))  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", ["", "abc", ">=", "1.2.3 ||", "^x.1", "1.x.3", ">=1.2.3-rc.1.x.*", "!=1.x"])
def test_bad_ranges_raise(bad: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011
        parse_range(bad)


def test_bad_range_is_a_config_error_with_key_path(tmp_path) -> None:
    from driftd.config import load_config
    from driftd.errors import ConfigErrors

    cfg = tmp_path / "driftd.toml"
    cfg.write_text("""
[[clusters]]
name = "c"
[[repositories]]
name = "r"
url = "git://127.0.0.1/r"
[[environments]]
name = "prod"
repository = "r"
branch = "main"
[environments.kubernetes]
cluster = "c"
[[environments.images]]
name = "app"
image = "ghcr.io/acme/app"
semver = ">=1.2 <<2"
[[environments.images]]
name = "web"
image = "ghcr.io/acme/web"
alphabetical = true
pattern = "^main-(?P<ts>[0-9+$"
""")
    with pytest.raises(ConfigErrors) as e:
        load_config(cfg)
    keys = {x.key for x in e.value.errors}
    assert "environments[0].images[0].semver" in keys
    assert "environments[0].images[1].pattern" in keys
