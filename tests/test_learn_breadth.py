"""Learning from style-only works beside artist-labelled ones (issue 32, breadth): the batch
sampler, the split that keeps whole styles out, and the letterbox trim of their pictures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from artsearch.learn.data import Work, split_works, trim_bars
from artsearch.learn.training import _batches, batch_groups, positive_weights

LABELS = (("artist", 1.0), ("style", 0.5))


def _works(artists: list[str], styles: list[str]) -> list[Work]:
    return [Work(Path(f"{i}.jpg"), {"artist": a, "style": s})
            for i, (a, s) in enumerate(zip(artists, styles, strict=True))]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["", "", "ann", "bo", "cy"]),
                          st.sampled_from(["", "baroque", "cubism", "ukiyo"])),
                min_size=2, max_size=40),
       st.integers(0, 2**16))
def test_style_only_works_are_never_same_artist_positives(
        pairs: list[tuple[str, str]], seed: int) -> None:
    artist = np.array([a for a, _ in pairs])
    style = np.array([s for _, s in pairs])
    values = {"artist": artist, "style": style}
    rows = np.arange(len(pairs))
    groups = batch_groups(artist, style)
    for batch in _batches(rows, groups, 4, 8, np.random.default_rng(seed)):
        w = positive_weights(batch, values, LABELS)
        a, s = artist[batch], style[batch]
        for i in range(len(batch)):
            for j in range(len(batch)):
                if i == j:
                    assert w[i, j] == 0
                elif a[i] and a[i] == a[j]:
                    assert w[i, j] == 1.0
                elif s[i] and s[i] == s[j]:
                    assert w[i, j] == 0.5  # a style pair, whatever the artists (or none)
                else:
                    assert w[i, j] == 0  # two works without an artist are not one artist


def test_style_only_works_are_batched_with_their_style_and_every_work_once() -> None:
    artist = np.array(["ann"] * 6 + [""] * 8)
    style = np.array(["baroque"] * 6 + ["cubism"] * 4 + ["ukiyo"] * 4)
    groups = batch_groups(artist, style)
    batches = _batches(np.arange(14), groups, 4, 4, np.random.default_rng(0))
    seen = np.concatenate(batches)
    assert sorted(seen.tolist()) == list(range(14))
    for b in batches:  # chunks of one group: a style-only chunk holds one style
        assert len({groups[r] for r in b}) <= 2
    assert "main:ann" in set(groups.tolist()) and "side:cubism" in set(groups.tolist())


def test_held_out_styles_are_never_learnt_and_style_only_works_are() -> None:
    artists = [f"a{i % 8}" for i in range(40)] + [""] * 12
    styles = ["baroque", "cubism", "rococo", "ukiyo"] * 10 + ["symbolism", "expr"] * 6
    works = _works(artists, styles)
    split = split_works(works, "artist", 0.25, 0, held_out_side={"rococo", "symbolism"})
    learnt = {works[i].labels["style"] for i in split.train}
    assert not learnt & {"rococo", "symbolism"}
    assert "expr" in learnt  # style-only works are learnt from
    assert {works[i].labels["style"] for i in split.unseen} == {"rococo", "symbolism"}
    val_artists = {works[i].labels["artist"] for i in split.val}
    assert val_artists and not val_artists & {works[i].labels["artist"] for i in split.train}
    assert not set(split.train) & set(split.val) | set(split.train) & set(split.unseen)
    assert len(split.train) + len(split.val) + len(split.unseen) == len(works)


def test_letterbox_bars_are_trimmed_and_a_dark_painting_is_kept() -> None:
    rng = np.random.default_rng(0)
    picture = rng.integers(40, 255, (120, 224, 3), dtype=np.uint8)
    boxed = np.zeros((224, 224, 3), np.uint8)
    boxed[52:172] = picture
    boxed[51] = 3  # JPEG ringing at the bar's edge is still a bar
    trimmed = trim_bars(Image.fromarray(boxed))
    assert trimmed.size == (224, 120)
    assert np.array_equal(np.asarray(trimmed), picture)
    side = np.zeros((224, 224, 3), np.uint8)
    side[:, 30:190] = picture[:, :160].repeat(2, axis=0)[:224]
    assert trim_bars(Image.fromarray(side)).size == (160, 224)
    night = np.full((224, 224, 3), 4, np.uint8)  # a painting of night, no bars
    night[100:110, 100:110] = 200
    assert trim_bars(Image.fromarray(night)).size == (224, 224)
    plain = Image.fromarray(picture)
    assert trim_bars(plain) is plain


def test_average_precision_never_counts_the_query_itself() -> None:
    """In a set of k or fewer works the query lies inside its own first k: it must not be
    its own hit (a 4-work set once measured mAP@10 1.5)."""
    from artsearch.learn import average_precision

    vectors = np.eye(4, dtype=np.float32)
    labels = ["a", "a", "b", "b"]
    at10 = average_precision(vectors, labels, k=10)
    whole = average_precision(vectors, labels)
    assert len(at10) == 4 and (at10 <= 1.0).all() and (whole <= 1.0).all()
    vectors = np.array([[1, 0], [0.9, 0.1], [0, 1], [0.1, 0.9]], np.float32)
    assert np.allclose(average_precision(vectors, labels, k=10), 1.0)
    assert np.allclose(average_precision(vectors, labels), 1.0)
