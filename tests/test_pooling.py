"""Poolings: sizes, what each computes, the gram sketch's fidelity, multi-layer weighting."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from artsearch.errors import BackboneError
from artsearch.pooling import (
    GRAM_DIMS,
    POOLINGS,
    get_pooling,
    gram_matrices,
    gram_projection,
    pool_layers,
)


def test_each_pooling_gives_its_documented_size() -> None:
    fmap = torch.rand(3, 8, 5, 5)
    params = gram_projection([8])
    for name, pooling in POOLINGS.items():
        out = pooling.pool(fmap, params, 0)
        assert out.shape == (3, pooling.dims(8)), name
    assert get_pooling("meanstd").dims(8) == 16 and get_pooling("gram").dims(8) == GRAM_DIMS


def test_simple_poolings_compute_what_they_say() -> None:
    fmap = torch.rand(2, 4, 3, 3)
    torch.testing.assert_close(POOLINGS["avg"].pool(fmap, {}, 0), fmap.mean((2, 3)))
    torch.testing.assert_close(POOLINGS["max"].pool(fmap, {}, 0), fmap.amax((2, 3)))
    gem = POOLINGS["gem"].pool(fmap, {}, 0)
    assert torch.all(gem >= fmap.mean((2, 3)) - 1e-6) and torch.all(gem <= fmap.amax((2, 3)))
    ms = POOLINGS["meanstd"].pool(fmap, {}, 0)
    torch.testing.assert_close(ms[:, 4:], fmap.flatten(2).std(2, correction=0))


def test_gram_sketch_preserves_gram_similarity() -> None:
    """Centred sketches rank like the centred Gram matrices they stand for."""
    torch.manual_seed(0)
    maps = torch.rand(1, 32, 7, 7) + 0.6 * torch.rand(60, 32, 7, 7)
    params = gram_projection([32])
    grams = gram_matrices(maps).flatten(1)
    grams = torch.nn.functional.normalize(grams - grams.mean(0), dim=1)
    sketch = POOLINGS["gram"].pool(maps, params, 0)
    centred = POOLINGS["gram"].pool(maps, {**params, "m0": sketch.mean(0).numpy()}, 0)
    centred = torch.nn.functional.normalize(centred, dim=1)
    true = (grams @ grams.T).numpy()[np.triu_indices(60, 1)]
    est = (centred @ centred.T).numpy()[np.triu_indices(60, 1)]
    # 512 values per layer: correlation 0.93 here (sketch noise ~ sqrt(2 / 512) per pair).
    assert np.corrcoef(true, est)[0, 1] > 0.9
    assert np.abs(true - est).mean() < 0.1


def test_gram_is_invariant_to_where_things_are() -> None:
    """A style descriptor: shuffling positions changes content, not the Gram matrix."""
    fmap = torch.rand(1, 16, 6, 6)
    shuffled = fmap.flatten(2)[:, :, torch.randperm(36)].reshape(1, 16, 6, 6)
    params = gram_projection([16])
    torch.testing.assert_close(POOLINGS["gram"].pool(fmap, params, 0),
                               POOLINGS["gram"].pool(shuffled, params, 0), atol=1e-5, rtol=1e-4)


def test_the_projection_is_reproducible_and_the_centre_is_subtracted() -> None:
    a, b = gram_projection([8, 16]), gram_projection([8, 16])
    assert sorted(a) == ["u0", "u1", "v0", "v1"]
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    fmap = torch.rand(2, 8, 4, 4)
    raw = POOLINGS["gram"].pool(fmap, a, 0)
    centred = POOLINGS["gram"].pool(fmap, {**a, "m0": raw[0].numpy()}, 0)
    torch.testing.assert_close(centred[0], torch.zeros(GRAM_DIMS), atol=1e-5, rtol=0)


def test_layers_weigh_equally_whatever_their_scale() -> None:
    small, large = torch.rand(2, 4, 3, 3), 1000 * torch.rand(2, 6, 3, 3)
    out = pool_layers(POOLINGS["avg"], [small, large], {})
    assert out.shape == (2, 10)
    np.testing.assert_allclose(out[:, :4].norm(dim=1).numpy(), 1.0, rtol=1e-5)
    np.testing.assert_allclose(out[:, 4:].norm(dim=1).numpy(), 1.0, rtol=1e-5)


def test_unknown_pooling_lists_the_choices() -> None:
    with pytest.raises(BackboneError, match="unknown pooling 'median'.*avg, max, gem"):
        get_pooling("median")


def test_style_poolings_and_cavg_are_fitted_and_centred() -> None:
    assert [n for n, p in POOLINGS.items() if p.fitted] == ["cavg", "meanstd", "gram"]
    fmap = torch.rand(3, 4, 5, 5)
    for name, dims in (("meanstd", 8), ("cavg", 4)):
        raw = POOLINGS[name].pool(fmap, {}, 0)
        centred = POOLINGS[name].pool(fmap, {"m0": raw.mean(0).numpy()}, 0)
        torch.testing.assert_close(centred.mean(0), torch.zeros(dims), atol=1e-6, rtol=0)
    torch.testing.assert_close(POOLINGS["cavg"].pool(fmap, {}, 0), fmap.mean((2, 3)))


def test_both_gram_routes_agree() -> None:
    """Late layers (more channels than positions) take the factored route: same numbers."""
    torch.manual_seed(1)
    wide = torch.rand(2, 40, 3, 3)  # 40 channels, 9 positions: factored route
    params = gram_projection([40])
    fast = POOLINGS["gram"].pool(wide, params, 0)
    gram = gram_matrices(wide)
    u, v = torch.from_numpy(params["u0"]), torch.from_numpy(params["v0"])
    direct = ((gram @ v) * u).sum(dim=1) / np.sqrt(GRAM_DIMS)
    torch.testing.assert_close(fast, direct, atol=1e-5, rtol=1e-4)


def test_rmac_regions_tile_the_map_at_three_scales() -> None:
    from artsearch.pooling import rmac_regions

    regions = rmac_regions(7, 7)
    assert len(regions) == 1 + 4 + 9  # Tolias et al.: l x l regions at level l
    assert all(t >= 0 and left >= 0 and t + s <= 7 and left + s <= 7
               for t, left, s in regions)
    covered = np.zeros((7, 7), bool)
    for t, left, s in regions[5:]:  # the finest level alone covers every position
        covered[t:t + s, left:left + s] = True
    assert covered.all()
    wide = rmac_regions(7, 12)
    assert {s for _, _, s in wide} == {7, 5, 4} and max(left + s for _, left, s in wide) == 12


def test_rmac_sums_unit_region_maxima_and_sees_a_detail_anywhere() -> None:
    """The vector is the sum of each region's channel maxima at unit length; a strong
    detail counts whether it sits in a corner or the middle (every position lies in a
    region of each scale)."""
    from artsearch.pooling import rmac_regions

    pool = get_pooling("rmac")
    torch.manual_seed(0)
    fmap = torch.rand(2, 16, 7, 7)
    by_hand = sum(torch.nn.functional.normalize(
        fmap[:, :, t:t + s, left:left + s].amax(dim=(2, 3)), dim=1)
        for t, left, s in rmac_regions(7, 7))
    assert torch.allclose(pool.pool(fmap, {}, 0), by_hand, atol=1e-6)
    corner, middle = torch.zeros(1, 16, 7, 7), torch.zeros(1, 16, 7, 7)
    corner[0, 3, 0, 0] = middle[0, 3, 3, 3] = 5.0
    for x in (corner, middle):
        v = pool.pool(x + 0.01, {}, 0)
        assert int(v.argmax()) == 3
