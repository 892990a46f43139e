"""compute() fuses the public steps for speed; stored keys depend on it matching them exactly."""

from __future__ import annotations

import hashlib
import random
import re
import unicodedata

import pytest

from scraper.core import fingerprint as fp
from scraper.dedup import DedupSettings

_DROP = re.compile(r"[\W_]+")
#: The salt of the near-duplicate bands and the mask of a long entry's title and lead keys:
#: the values the stored keys were made with.
_NEAR_SALT = 0x6E656172  # "near"
_LONG_NAMESPACE = 0x5A17_3C4B_9D2E_6F81


def _reference(title: str, text: str, settings: DedupSettings) -> dict:
    folded = fp.fold_text(text)
    folded_title = fp.fold_text(title)
    hashes = fp.shingle_hashes(folded, settings.shingle)
    sketched, distinct = fp.sketch(hashes)
    out = {"sketch": sketched.tobytes(), "shingles": distinct, "title": folded_title,
           "length": len(folded), "signature": b"", "band_keys": (),
           "shingle_set": fp.shingle_set(folded, settings.shingle).tobytes(),
           "shingle": settings.shingle}
    if len(folded) >= settings.short_chars:
        sig = fp.one_permutation_minhash(hashes, settings.bands * settings.rows)
        out["signature"] = sig.tobytes()
        out["band_keys"] = fp.band_keys(sig, settings.bands, settings.rows, _NEAR_SALT)
    keys = fp.title_band_keys(folded_title) if len(folded_title) >= 2 else ()
    out["title_keys"] = keys if len(folded) < settings.short_chars else tuple(
        k ^ _LONG_NAMESPACE for k in keys)
    return out


def _texts() -> list[str]:
    rng = random.Random(5)
    pools = ["中文新闻报道内容测试小米苹果发布会", "ＡＢＣ１２３ｘｙｚ", "ABCdefß ",
             "，。！？（）“” \n", "가나\u1100\u1161", "e\u0301", "😀𠀀", "\ud800"]
    out = ["", "a", "ab", "abc", "中文" * 60, "The Quick Brown Fox. " * 10]
    for _ in range(300):
        weights = [rng.random() for _ in pools]
        n = rng.choice([1, 3, 50, 64, 99, 100, 101, 400, 1500])
        out.append("".join(rng.choices(
            [c for p in pools for c in p], [w for p, w in zip(pools, weights, strict=True)
                                             for _ in p], k=n)))
    return out


@pytest.mark.parametrize("settings", [DedupSettings(), DedupSettings(shingle=3),
                                      DedupSettings(shingle=5, bands=20, rows=3),
                                      DedupSettings(short_chars=0)])
def test_compute_matches_the_public_steps(settings: DedupSettings) -> None:
    texts = _texts()
    for i, text in enumerate(texts):
        title = texts[(i * 7) % len(texts)][:30]
        got = fp.compute(title, text, None, settings)
        for field, want in _reference(title, text, settings).items():
            assert getattr(got, field) == want, (field, title, text[:40])


def _plain_fold(text: str) -> str:
    dropped = _DROP.sub("", text)
    if not dropped.isascii() and not unicodedata.is_normalized("NFKC", dropped):
        dropped = _DROP.sub("", unicodedata.normalize("NFKC", dropped))
    return dropped.casefold()


def test_fold_is_the_plain_fold() -> None:
    for text in _texts():
        assert fp.fold_text(text) == _plain_fold(text)


def test_every_bmp_character_folds_as_the_plain_fold() -> None:
    """Long texts fold through a table of the whole Basic Multilingual Plane: each character,
    alone in a text long enough to take it, and beside ordinary text."""
    for c in range(0x10000):
        if 0xD800 <= c <= 0xDFFF:
            continue
        for text in (chr(c) * 64, "中文" * 32 + chr(c)):
            assert fp.fold_text(text) == _plain_fold(text), hex(c)
    assert fp.fold_text("中文" * 40 + " 𠀀𠀁 \ud800") == _plain_fold("中文" * 40 + " 𠀀𠀁 \ud800")


# Digests of every stored field, as the code before the fused compute() (commit d8f4a17)
# computed them: databases hold these keys, so a faster compute() must give them bit for bit.
_FIELDS = ["canonical_url", "text_hash", "title", "length", "short", "signature", "band_keys",
           "title_keys", "lead_key", "probe_title_keys", "probe_lead_keys", "url_key", "sketch",
           "shingles"]
_PINNED = [
    (("雷军：是徕卡找的我们", "小米 12S Ultra 将于 7 月发布，雷军表示：“是徕卡找的我们”。" * 8,
      "https://www.myzaker.com/article/62a1?utm_source=rss"),
     "5d777b8272015a2a24a9f25b3821a78c0989310bc91c120488830a644b848baf"),
    (("Short teaser", "Read the full story on our site.", None),
     "f1e9490f1e2c094fdb98e1745366ab518f46b41f107855e3a84ee534c39b0179"),
    (("ＡＢＣ１２３ full-width",
      "ＦＵＬＬ－ＷＩＤＴＨ text, 8 月 28 日 with “quotes” and 😀 emoji " * 5,
      "http://Example.COM:80/a/b/?b=2&a=1#frag"),
     "946a4419a1662566824c32ef2b536073f2cffc3cda9e714fdaab666df2b3d46c"),
]


@pytest.mark.parametrize(("args", "digest"), _PINNED)
def test_stored_fields_are_those_of_earlier_versions(args: tuple, digest: str) -> None:
    got = fp.compute(*args, DedupSettings())
    assert hashlib.sha256(repr([getattr(got, k) for k in _FIELDS]).encode()).hexdigest() == digest
