"""The silhouette term: a synthetic CT's air / tissue outline tied to its source MR's body."""

from __future__ import annotations

import pytest
import torch

from translate.data.intensity import HUWindow
from translate.losses import LOSSES, build_objective
from translate.losses.silhouette import (BoneVoid, _max_pool, Silhouette, SignalVoid, bone_void_loss, signal_void_loss, signal_voids,
                                        silhouette_loss, source_body)

CT = HUWindow(-1024.0, 2000.0)


def _limb(size: int = 32, dims: int = 2) -> torch.Tensor:
    """A T1-like limb: muscle (-0.4) in air (-1), a bright marrow (0.9) in a dark cortical ring (-0.95)."""
    shape = (1, 1) + (size,) * dims
    mr = torch.full(shape, -1.0)
    body = (slice(None), slice(None)) + (slice(6, 26),) * dims
    ring = (slice(None), slice(None)) + (slice(12, 19),) * dims
    marrow = (slice(None), slice(None)) + (slice(14, 17),) * dims
    mr[body] = -0.4
    mr[ring] = -0.95
    mr[marrow] = 0.9
    return mr


@pytest.mark.parametrize("dims", [2, 3])
def test_body_is_closed_over_dark_cortex_and_kept_at_the_border(dims):
    mr = _limb(dims=dims)
    body = source_body(mr, closing=9)
    assert body[(0, 0) + (13,) * dims] == 1 and source_body(mr, closing=1)[(0, 0) + (13,) * dims] == 0
    assert int(body.sum()) == 20 ** dims                       # exactly the limb: no air added around it
    cut = mr[(slice(None), slice(None)) + (slice(6, 32),) * dims]  # the limb touching the image border
    assert int(source_body(cut, closing=9).sum()) == 20 ** dims


def test_permuted_classes_cost_more_than_the_right_outline_and_bone_is_free():
    mr = _limb()
    body = source_body(mr)
    right = CT.forward(torch.where(body > 0, 40.0, -1000.0))
    bone = right.clone()
    bone[..., 12:19, 12:19] = CT.forward(torch.full((7, 7), 1200.0))  # cortex and marrow as bone: still tissue
    swapped = CT.forward(torch.where(body > 0, -1000.0, 40.0))
    lost = CT.forward(torch.where((body > 0) & (mr < -0.9), -1000.0, 40.0 * (body > 0) - 1000.0 * (body == 0)))
    low, mid, high = (silhouette_loss(x, mr).item() for x in (right, lost, swapped))
    assert low < 1e-3 and silhouette_loss(bone, mr) < 1e-3
    assert low < mid < high                                   # the cortex rendered as air costs, in proportion
    # 40 cortex voxels of 1024 at -1000 HU, each costing log(1 + exp((-400 - (-1000)) / 50)) = 12
    assert mid == pytest.approx(40 * 12 / 1024, rel=1e-3)


def test_gradient_flows_to_the_translation_only_and_mask_weights():
    mr = _limb().requires_grad_()
    fake = CT.forward(torch.full((1, 1, 32, 32), -1000.0)).requires_grad_()
    loss = silhouette_loss(fake, mr)
    loss.backward()
    assert mr.grad is None and fake.grad.abs().sum() > 0
    assert (fake.grad[source_body(mr) > 0] < 0).all()         # descent raises HU where the body is
    outside = (source_body(mr) == 0).float()
    assert silhouette_loss(fake, mr, mask=outside) < 1e-3     # weighted to the air, an all-air CT is right


def test_catalogue_entry_and_errors():
    term = LOSSES.get("silhouette")
    assert term is Silhouette
    objective = build_objective([{"name": "silhouette", "pred": "fake_b", "source": "real_a", "weight": 2.0}])
    mr = _limb()
    total, parts = objective({"real_a": mr, "fake_b": CT.forward(torch.full((1, 1, 32, 32), -1000.0))})
    assert total > 1.0 and set(parts) == {"silhouette"}
    with pytest.raises(ValueError, match="closing: expected an odd number"):
        Silhouette(closing=4)
    with pytest.raises(ValueError, match="temperature: expected a positive number"):
        Silhouette(temperature=0)
    with pytest.raises(ValueError, match="expected one prediction channel"):
        silhouette_loss(torch.zeros(1, 2, 8, 8), torch.zeros(1, 1, 8, 8))


# --- bone_void: the CT -> MR translation is dark where the CT shows cortical bone ---------------------------------

def _ct_with_bone(dims: int = 2, size: int = 16) -> torch.Tensor:
    """Soft tissue (40 HU) with a 4^dims block of cortical bone (1200 HU), in network units."""
    hu = torch.full((1, 1) + (size,) * dims, 40.0)
    hu[(slice(None), slice(None)) + (slice(4, 8),) * dims] = 1200.0
    return CT.forward(hu)


@pytest.mark.parametrize("dims", [2, 3])
def test_bone_void_costs_the_mean_excess_over_bone_voxels_only(dims):
    ct = _ct_with_bone(dims)
    bone = (slice(None), slice(None)) + (slice(4, 8),) * dims
    mr = torch.full_like(ct, -0.95)                                # dark everywhere: nothing to pay
    assert bone_void_loss(mr, ct).item() == 0.0
    mr_bright_tissue = mr.clone()
    mr_bright_tissue[mr_bright_tissue == -0.95] = 0.9              # bright soft tissue: not the term's business
    mr_bright_tissue[bone] = -0.95
    assert bone_void_loss(mr_bright_tissue, ct).item() == 0.0
    half = mr.clone()
    half[bone] = -0.95
    half[(slice(None), slice(None), slice(4, 6)) + (slice(4, 8),) * (dims - 1)] = 0.2  # half the bone at 0.2
    assert bone_void_loss(half, ct).item() == pytest.approx(0.5 * (0.2 - (-0.8)), rel=1e-5)
    assert bone_void_loss(half, ct, level=0.5).item() == 0.0       # a higher level forgives it


def test_bone_void_gradient_and_no_bone():
    ct = _ct_with_bone().requires_grad_()
    mr = torch.zeros(1, 1, 16, 16, requires_grad=True)
    bone_void_loss(mr, ct).backward()
    assert ct.grad is None                                         # the source is read, never pushed
    assert (mr.grad[..., 4:8, 4:8] > 0).all() and (mr.grad[..., 8:, :] == 0).all()
    flat = CT.forward(torch.full((1, 1, 16, 16), 40.0))
    empty = torch.zeros(1, 1, 16, 16, requires_grad=True)
    loss = bone_void_loss(empty, flat)
    loss.backward()
    assert loss.item() == 0.0 and torch.isfinite(empty.grad).all()
    weights = torch.zeros(1, 1, 16, 16)                            # a mask that leaves the bone out
    assert bone_void_loss(torch.zeros(1, 1, 16, 16), _ct_with_bone(), mask=weights).item() == 0.0


def test_bone_void_catalogue_entry_and_errors():
    assert LOSSES.get("bone_void") is BoneVoid
    objective = build_objective([{"name": "bone_void", "weight": 2.0}])
    total, parts = objective({"real_b": _ct_with_bone(), "fake_a": torch.zeros(1, 1, 16, 16)})
    assert total.item() == pytest.approx(2 * 0.8, rel=1e-5) and set(parts) == {"bone_void"}
    with pytest.raises(ValueError, match="bone_void threshold: expected a HU value inside space"):
        BoneVoid(threshold=3000.0)
    with pytest.raises(ValueError, match="bone_void level: expected a number"):
        BoneVoid(level="dark")
    with pytest.raises(ValueError, match="expected one prediction channel"):
        bone_void_loss(torch.zeros(1, 2, 8, 8), torch.zeros(1, 1, 8, 8))


@pytest.mark.parametrize("shape,size", [((2, 1, 16, 48, 48), 9), ((3, 1, 7, 11, 13), 5), ((2, 1, 40, 33), 9),
                                        ((1, 1, 5, 5), 3), ((1, 2, 6, 4), 7)])
def test_max_pool_by_axis_equals_the_box_max_pool(shape, size):
    torch.manual_seed(0)
    box = torch.nn.functional.max_pool2d if len(shape) == 4 else torch.nn.functional.max_pool3d
    for x in ((torch.rand(shape) > 0.7).float(), torch.randn(shape)):
        assert torch.equal(_max_pool(x, size), box(x, size, stride=1, padding=size // 2))


@pytest.mark.parametrize("dims", [2, 3])
def test_signal_voids_are_the_dark_voxels_inside_the_closed_body(dims):
    mr = _limb(dims=dims)
    voids = signal_voids(mr, closing=9)
    ring = (mr == -0.95)
    assert torch.equal(voids.bool(), ring)                         # the dark cortex, not the air around the limb
    assert signal_voids(mr, closing=1).sum().item() == 0            # without a closing nothing dark is inside


@pytest.mark.parametrize("dims", [2, 3])
def test_signal_void_costs_the_distance_to_air_or_bone_on_voids_only(dims):
    mr = _limb(dims=dims)
    ring = mr == -0.95
    hu = torch.where(mr > -0.8, 40.0, -1000.0)                     # soft tissue in the body, air outside and in the ring
    assert signal_void_loss(CT.forward(hu), mr).item() == 0.0       # air in the void: allowed
    assert signal_void_loss(CT.forward(torch.where(ring, 1200.0, hu)), mr).item() == 0.0   # bone: allowed
    outside = torch.where(mr == -1.0, 40.0, -1000.0)               # soft tissue everywhere but the body: no void there
    assert signal_void_loss(CT.forward(torch.where(ring, -1000.0, outside)), mr).item() == 0.0
    soft = CT.forward(torch.where(ring, 40.0, hu))                  # soft tissue in the void: 260 HU from bone
    assert signal_void_loss(soft, mr).item() == pytest.approx(260.0 * 2 / 3024, rel=1e-4)
    fat = CT.forward(torch.where(ring, -300.0, hu))                 # fat-like: 100 HU from air, the nearer bound
    assert signal_void_loss(fat, mr).item() == pytest.approx(100.0 * 2 / 3024, rel=1e-4)
    half = torch.where(ring, 40.0, hu)                              # half the void soft tissue, half bone
    half[(slice(None), slice(None), slice(12, 15)) + (slice(None),) * (dims - 1)] = torch.where(
        ring[(slice(None), slice(None), slice(12, 15)) + (slice(None),) * (dims - 1)], 1200.0,
        half[(slice(None), slice(None), slice(12, 15)) + (slice(None),) * (dims - 1)])
    share = (ring & (CT.forward(half) < CT.forward(torch.tensor(300.0)))).sum() / ring.sum()
    assert signal_void_loss(CT.forward(half), mr).item() == pytest.approx(share.item() * 260.0 * 2 / 3024, rel=1e-4)
    assert signal_void_loss(soft, mr, mask=torch.zeros_like(mr)).item() == 0.0


def test_signal_void_gradient_pushes_to_the_nearer_bound_and_never_the_source():
    mr = _limb().requires_grad_()
    ring = (mr == -0.95).detach()
    hu = torch.where(ring, 40.0, 0.0)
    hu[..., 12, :] = torch.where(ring[..., 12, :], -300.0, hu[..., 12, :])   # one row of the ring fat-like
    pred = CT.forward(hu).requires_grad_()
    signal_void_loss(pred, mr).backward()
    assert mr.grad is None                                          # the source is read, never pushed
    assert (pred.grad[~ring] == 0).all()
    soft_ring = ring.clone()
    soft_ring[..., 12, :] = False
    assert (pred.grad[soft_ring] < 0).all()                         # descent raises soft tissue towards bone
    assert (pred.grad[..., 12, :][ring[..., 12, :]] > 0).all()      # and lowers fat-like voxels towards air
    flat = torch.full((1, 1, 16, 16), 0.5)                          # no void at all
    empty = torch.zeros(1, 1, 16, 16, requires_grad=True)
    loss = signal_void_loss(empty, flat)
    loss.backward()
    assert loss.item() == 0.0 and torch.isfinite(empty.grad).all()


def test_signal_void_catalogue_entry_and_errors():
    assert LOSSES.get("signal_void") is SignalVoid
    mr = _limb()
    soft = CT.forward(torch.where(mr > -1.0, 40.0, -1000.0))
    total, parts = build_objective([{"name": "signal_void", "weight": 3.0}])({"real_a": mr, "fake_b": soft})
    assert total.item() == pytest.approx(3 * 260.0 * 2 / 3024, rel=1e-4) and set(parts) == {"signal_void"}
    with pytest.raises(ValueError, match="signal_void: expected space lower < air_below < bone_above"):
        SignalVoid(air_below=400.0)
    with pytest.raises(ValueError, match="signal_void closing: expected an odd number"):
        SignalVoid(closing=4)
    with pytest.raises(ValueError, match="signal_void level: expected a number"):
        SignalVoid(level="dark")
    with pytest.raises(ValueError, match="expected one prediction channel"):
        signal_void_loss(torch.zeros(1, 2, 8, 8), torch.zeros(1, 1, 8, 8))
