"""Site rules: YAML validation with field-named errors, merging, and resolution by host."""

from __future__ import annotations

import pickle

import pytest
import yaml

from scraper.core.rules import (
    BUILTIN_RULES,
    PROFILES,
    SiteRule,
    profile,
    resolve_rule,
    rule_from_mapping,
    sites_from_mapping,
)


def test_full_mapping_from_yaml() -> None:
    data = yaml.safe_load(
        """
        remove: ["div.ad", "#share"]
        drop_lines: ['本文来源：.*']
        content_selector: "div.article"
        image_proxy: "https://cors.zfour.workers.dev/?{url}"
        image_proxy_hosts: ["*.myzaker.com", "IMG1.mydrivers.com"]
        lazy_attrs: [data-lazy]
        """
    )
    rule = rule_from_mapping(data, "rules")
    assert rule == SiteRule(
        remove=("div.ad", "#share"),
        drop_lines=("本文来源：.*",),
        content_selector="div.article",
        image_proxy="https://cors.zfour.workers.dev/?{url}",
        image_proxy_hosts=("myzaker.com", "img1.mydrivers.com"),
        lazy_attrs=("data-lazy",),
    )


def test_empty_block_is_the_empty_rule() -> None:
    assert rule_from_mapping(None, "rules") == SiteRule()
    assert rule_from_mapping({}, "rules") == SiteRule()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"remove": ["p.end", 3]}, "remove[1]: expected a string, got 3"),
        ({"remove": "p.end"}, "remove: expected a list of strings, got 'p.end'"),
        ({"remove": ["p..x"]}, "remove[0]: invalid CSS selector 'p..x'"),
        ({"remove": [" "]}, "remove[0]: empty string"),
        ({"drop_lines": ["(unclosed"]}, "drop_lines[0]: invalid regular expression"),
        ({"content_selector": 5}, "content_selector: expected a string, got 5"),
        ({"content_selector": "div[[["}, "content_selector: invalid CSS selector"),
        ({"image_proxy": "https://proxy.example/"}, "image_proxy: the template must contain"),
        ({"image_proxy": "javascript:{url}"}, "image_proxy: expected an http(s) URL template"),
        ({"image_proxy_hosts": ["not a host"]}, "image_proxy_hosts[0]: not a host name"),
        ({"lazy_attrs": ["data original"]}, "lazy_attrs[0]: not an attribute name"),
        ({"lazy_attrs": [True]}, "lazy_attrs[0]: expected a string, got True"),
        ({"remvoe": ["p"]}, "remvoe: unknown field; did you mean 'remove'?"),
        ({"colour": "red"}, "colour: unknown field (known: remove, drop_lines"),
        ({"profile": "zakr"}, "profile: unknown profile 'zakr' (known: ithome, mydrivers, zaker)"),
        ({"profile": ["zaker", 1]}, "profile[1]: expected a string, got 1"),
    ],
)
def test_errors_name_the_field(data: object, message: str) -> None:
    with pytest.raises(ValueError) as exc:
        rule_from_mapping(data, "rules")
    assert str(exc.value).startswith(message), str(exc.value)


def test_non_mapping_names_the_block() -> None:
    with pytest.raises(ValueError, match=r"^rules: expected a mapping, got list$"):
        rule_from_mapping(["p.end"], "rules")


def test_merged_extends_lists_and_overrides_scalars() -> None:
    a = SiteRule(remove=("a", "b"), content_selector="div.x", image_proxy="https://p/?{url}")
    b = SiteRule(remove=("b", "c"), content_selector="div.y", lazy_attrs=("data-z",))
    m = a.merged(b)
    assert m.remove == ("a", "b", "c")  # order kept, duplicate dropped
    assert m.content_selector == "div.y"
    assert m.image_proxy == "https://p/?{url}"  # None does not override
    assert m.lazy_attrs == ("data-z",)
    assert a.merged(SiteRule(image_proxy="")).image_proxy == ""  # "" switches it off


def test_profile_key_expands_and_extends() -> None:
    rule = rule_from_mapping({"profile": "zaker", "remove": ["div.ad"]}, "rules")
    assert rule.remove == (*PROFILES["zaker"].remove, "div.ad")
    assert rule.drop_lines == PROFILES["zaker"].drop_lines
    both = rule_from_mapping({"profile": ["zaker", "mydrivers"]}, "rules")
    assert set(PROFILES["mydrivers"].remove) <= set(both.remove)
    assert profile("ZAKER") is PROFILES["zaker"]
    with pytest.raises(KeyError):
        profile("nope")


def test_builtins_cover_the_known_boilerplate() -> None:
    assert {"p.end", "p.zhuanzai", "p.url", "p.bqian", "div.page_article"} <= set(
        BUILTIN_RULES["mydrivers.com"].remove
    )
    assert {"#recommend_bottom", "#article_bottom"} <= set(BUILTIN_RULES["myzaker.com"].remove)
    assert BUILTIN_RULES["ithome.com"] is PROFILES["ithome"]


def test_builtins_are_valid_rules() -> None:
    """Round-trip each builtin through the validator: its selectors and patterns compile."""
    for name, rule in PROFILES.items():
        data = {
            "remove": list(rule.remove),
            "drop_lines": list(rule.drop_lines),
            "content_selector": rule.content_selector,
        }
        assert rule_from_mapping(data, name).remove == rule.remove


def test_resolve_rule_layers() -> None:
    sites = sites_from_mapping(
        {"mydrivers.com": {"remove": ["div.x"]}, "news.mydrivers.com": {"remove": ["div.y"]}}
    )
    feed = SiteRule(remove=("div.z",), image_proxy="https://p/?{url}")
    rule = resolve_rule("https://news.mydrivers.com/1/838/838082.htm", feed, sites)
    base = BUILTIN_RULES["mydrivers.com"].remove
    assert rule.remove == (*base, "div.x", "div.y", "div.z")  # builtin, sites, feed
    assert rule.image_proxy == "https://p/?{url}"


def test_resolve_rule_matches_host_suffixes_only() -> None:
    assert resolve_rule("https://app.myzaker.com/news/a.php", None, {}) == PROFILES["zaker"]
    assert resolve_rule("https://notmyzaker.com/a", None, {}) == SiteRule()
    assert resolve_rule("https://rsshub.app/zaker/channel/13", None, {}) == SiteRule()
    assert resolve_rule(None, None, {}) == SiteRule()
    assert resolve_rule("not a url", PROFILES["ithome"], {}) == PROFILES["ithome"]


def test_sites_errors_name_the_host() -> None:
    with pytest.raises(ValueError, match=r"^'ithome\.com': remove\[0\]: expected a string"):
        sites_from_mapping({"ithome.com": {"remove": [1]}})


def test_rules_pickle() -> None:
    rule = rule_from_mapping({"profile": "zaker", "image_proxy": "https://p/?{url}"}, "rules")
    assert pickle.loads(pickle.dumps(rule)) == rule
    assert hash(rule) == hash(pickle.loads(pickle.dumps(rule)))
