"""FAME, ActorCutMix and SDN (issue 12): each method's semantics on tiny tensors, their files, and one training
step of each from files on disk.

Clips are built so that every output pixel can be traced back: clip i is the constant ``10 * (i + 1)`` (or a
frame-numbered ramp where time matters), so a pasted pixel names the clip it came from.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import write_config, write_video
from PIL import Image

from albar.biasgen.masks import MaskFolder
from albar.data.dataset import ClipDataset
from albar.data.lists import ClipItem
from albar.data.transforms import build_transform
from albar.methods.actorcutmix import (
    ActorMaskDataset,
    actorcutmix,
    actorcutmix_weight,
    check_mask_coverage,
    open_mask_source,
)
from albar.methods.batch import mixed_cross_entropy
from albar.methods.fame import fame, fame_masks, motion_map, rgb_to_hsv
from albar.objectives.albar import negative_entropy
from albar.objectives.sdn import (
    SceneHead,
    check_scene_coverage,
    classifier_layer,
    grad_reverse,
    logits_and_features,
    mask_actor,
    read_scene_labels,
    scene_cross_entropy,
    sdn_loss,
)
from albar.synthetic.render import ClipSpec, render_clip_with_masks

B = 6
LABELS = torch.tensor([3, 0, 4, 1, 5, 2])


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def constant_clips(b: int = B, t: int = 3, h: int = 4, w: int = 5) -> torch.Tensor:
    """Clip i is 10 * (i + 1) everywhere: an output pixel names its source clip."""
    return torch.stack([torch.full((3, t, h, w), 10.0 * (i + 1)) for i in range(b)])


def source_of(value: float) -> int:
    return round(value / 10) - 1


# ------------------------------------------------------------------------------------------------ FAME


def test_hsv_hue_is_a_fraction_of_a_turn():
    rgb = torch.tensor([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0], [0.5, 0.5, 0.5]]).view(4, 3, 1, 1)
    h, s, v = rgb_to_hsv(rgb).view(4, 3).unbind(1)
    assert torch.allclose(h, torch.tensor([0.0, 1 / 3, 2 / 3, 0.0]), atol=1e-6)
    assert torch.allclose(s, torch.tensor([1.0, 1.0, 1.0, 0.0]), atol=1e-6)
    assert torch.allclose(v, torch.tensor([1.0, 1.0, 1.0, 0.5]))


def test_motion_map_is_brightest_where_the_clip_changes():
    rgb = torch.full((1, 3, 4, 24, 24), 0.5)
    rgb[0, :, 1::2, 3:6, 18:21] = 1.0  # a patch that blinks
    m = motion_map(rgb)[0]
    assert m.max() == 1.0 and m.min() == 0.0
    assert divmod(int(m.argmax()), 24) == (4, 19)  # the patch's centre (blurred with a 3x3 Gaussian)
    assert m[3:6, 18:21].min() > 0.5 and m[12:, :12].max() == 0.0


def test_fame_mask_covers_the_moving_object_and_beta_of_the_frame():
    """On rendered clips (textured backgrounds), the foreground is the top half of the pixels and holds the object."""
    specs = [("right", "hstripes"), ("rotate_cw", "checker"), ("grow", "dots"), ("up", "noise")]
    clips, truth = [], []
    for i, (motion, bg) in enumerate(specs):
        frames, masks = render_clip_with_masks(ClipSpec(motion, "L", i, bg, 100 + i), 8, 32)
        clips.append(torch.from_numpy(frames).permute(3, 0, 1, 2).float() / 255)
        truth.append(masks.max(0) > 0.5)
    x = (torch.stack(clips) - 0.5) / 0.25
    masks = fame_masks(x, beta=0.5, mean=(0.5,) * 3, std=(0.25,) * 3)
    assert masks.dtype == torch.bool and masks.shape == (4, 32, 32)
    assert (masks.flatten(1).sum(1) == 512).all()  # exactly beta * H * W
    for i, gt in enumerate(truth):
        assert (masks[i].numpy() & gt).sum() / gt.sum() > 0.85, f"clip {i}: the object is not in the foreground"
    quarter = fame_masks(x, beta=0.25, mean=(0.5,) * 3, std=(0.25,) * 3)
    assert (quarter.flatten(1).sum(1) == 256).all()


def test_fame_colour_refinement_adds_the_still_part_of_a_moving_object():
    """An object's left half moves, its right half (same colour) stays still; the background is another colour.
    Frame differences alone see the left half only; the colour statistics bring in the right half."""
    rgb = torch.zeros(1, 3, 4, 40, 40)
    rgb[0, 2] = 0.6  # blue background
    rgb[0, :, :, 14:26, 20:30] = torch.tensor([0.9, 0.2, 0.1]).view(3, 1, 1, 1)  # red, still right half
    for t in range(4):  # red left half sliding 1 px per frame
        rgb[0, :, t, 14:26, 10 + t:20] = torch.tensor([0.9, 0.2, 0.1]).view(3, 1, 1)
        rgb[0, :, t, 14:26, 10:10 + t] = torch.tensor([0.0, 0.0, 0.6]).view(3, 1, 1)
    m = motion_map(rgb)[0]
    assert m[14:26, 24:30].max() < 0.05  # the still half does not move
    mask = fame_masks(rgb, beta=0.15, mean=(0.0,) * 3, std=(1.0,) * 3)[0]
    assert mask[15:25, 21:29].all(), "the still half of the red object belongs to the foreground"
    assert not mask[:, :5].any() and not mask[:5].any(), "far background stays background"


def test_fame_pastes_each_foreground_on_another_clips_background_and_keeps_the_label():
    x = constant_clips(h=20, w=20)
    x[:, :, 1] += 1.0  # a little motion everywhere keeps the mask well defined; sources stay decodable
    out = fame(x, LABELS, gen(1), beta=0.5, prob=1.0, mean=(0.0,) * 3, std=(1.0,) * 3)
    masks = out.info["mask"]
    assert out.applied.all() and torch.equal(out.target_a, LABELS) and torch.equal(out.target_b, LABELS)
    assert torch.equal(out.lam, torch.ones(B))
    for i in range(B):
        j = int(out.partner[i])
        assert j != i
        fg, bg = out.clip[i, :, 0][:, masks[i]], out.clip[i, :, 0][:, ~masks[i]]
        assert {source_of(v) for v in fg.flatten().tolist()} == {i}
        assert {source_of(v) for v in bg.flatten().tolist()} == {j}
        assert float(out.info["mix_weight"][i]) == pytest.approx(0.5)


def test_fame_prob_selects_clips_and_leaves_the_others_untouched():
    x = constant_clips(h=20, w=20)
    x[:, :, 1] += 1.0
    applied = []
    for seed in range(40):
        out = fame(x, LABELS, gen(seed), prob=0.5, mean=(0.0,) * 3, std=(1.0,) * 3)
        for i in range(B):
            if not out.applied[i]:
                assert torch.equal(out.clip[i], x[i]) and out.partner[i] == i
        applied.append(out.applied.float().mean().item())
    assert 0.35 < float(np.mean(applied)) < 0.65
    assert not fame(x, LABELS, gen(), prob=0.0, mean=(0.0,) * 3, std=(1.0,) * 3).applied.any()


def test_fame_refuses_what_it_cannot_do():
    x = constant_clips(h=20, w=20)
    with pytest.raises(ValueError, match="batch size >= 2"):
        fame(x[:1], LABELS[:1], gen())
    with pytest.raises(ValueError, match="at least 2 frames"):
        fame(x[:, :, :1], LABELS, gen())
    with pytest.raises(ValueError, match="beta"):
        fame(x, LABELS, gen(), beta=1.0)


# ------------------------------------------------------------------------------------------------ ActorCutMix


def test_actorcutmix_label_weight():
    r = torch.tensor([0.0, 0.25, 0.5, 1.0])
    assert torch.allclose(actorcutmix_weight(r), torch.tensor([0.0, 1 - 0.75**4, 1 - 0.5**4, 1.0]))
    assert float(actorcutmix_weight(torch.tensor(0.25))) == pytest.approx(0.68359375)


def box_masks(b: int = B, t: int = 3, h: int = 4, w: int = 5) -> torch.Tensor:
    """Clip i's actor: the first i + 1 columns of row i % h in every frame (different sizes and places)."""
    m = torch.zeros(b, t, h, w)
    for i in range(b):
        m[i, :, i % h, : min(w, i + 1)] = 1.0
    return m


def test_actorcutmix_puts_the_actor_on_another_background_with_the_soft_label():
    x, m = constant_clips(), box_masks()
    out = actorcutmix(x, LABELS, m, gen(3), prob=1.0)
    ratio = m.flatten(1).mean(1)
    assert out.applied.all() and torch.allclose(out.info["area_ratio"], ratio)
    for i in range(B):
        j = int(out.partner[i])
        assert j != i
        assert out.target_a[i] == LABELS[i] and out.target_b[i] == LABELS[j]
        assert float(out.lam[i]) == pytest.approx(1 - (1 - float(ratio[i])) ** 4)
        actor, other = m[i].bool(), m[j].bool()
        pixels = out.clip[i, 0]
        assert (pixels[actor] == x[i, 0][actor]).all()  # A's actor stays
        assert (pixels[~actor & ~other] == x[j, 0][~actor & ~other]).all()  # B's background
        assert (pixels[~actor & other] == 0).all()  # B's actor is cut out of its background
    # the mixed loss is cross-entropy against the soft label w y_A + (1 - w) y_B
    logits = torch.randn(B, 6, generator=gen(5))
    soft = out.lam[:, None] * F.one_hot(LABELS, 6) + (1 - out.lam[:, None]) * F.one_hot(out.target_b, 6)
    expected = -(soft * F.log_softmax(logits, -1)).sum(-1).mean()
    assert float(mixed_cross_entropy(logits, out)) == pytest.approx(float(expected), rel=1e-6)


def test_actorcutmix_leaves_clips_with_an_empty_or_full_mask_unchanged():
    x, m = constant_clips(), box_masks()
    m[1] = 0.0
    m[4] = 1.0
    out = actorcutmix(x, LABELS, m, gen(0), prob=1.0)
    assert out.info["valid"].tolist() == [True, False, True, True, False, True]
    for i in (1, 4):
        assert not out.applied[i] and torch.equal(out.clip[i], x[i]) and out.lam[i] == 1
        assert out.target_b[i] == LABELS[i]
    assert out.applied[[0, 2, 3, 5]].all()


def test_actorcutmix_prob_and_input_checks():
    x, m = constant_clips(), box_masks()
    rates = [actorcutmix(x, LABELS, m, gen(s), prob=0.25).applied.float().mean().item() for s in range(60)]
    assert 0.15 < float(np.mean(rates)) < 0.35
    with pytest.raises(ValueError, match="B, T, H, W"):
        actorcutmix(x, LABELS, m[:, :1], gen())
    with pytest.raises(ValueError, match="batch size >= 2"):
        actorcutmix(x[:1], LABELS[:1], m[:1], gen())


# ------------------------------------------------------------------------------------------------ mask files


def square_video(tmp_path: Path, n: int = 8, size: int = 48) -> tuple[Path, Path]:
    """Lossless frames (PNG folder) whose frame i shows a white 12x12 square at (10 + 2i, 4 + 4i) on grey, and
    PNG masks of the square under ``masks/clips/sq/``."""
    frames, masks_dir = tmp_path / "sq", tmp_path / "masks" / "clips" / "sq"
    frames.mkdir()
    masks_dir.mkdir(parents=True)
    for i in range(n):
        frame = np.full((size, size, 3), 60, dtype=np.uint8)
        mask = np.zeros((size, size), dtype=np.uint8)
        y0, x0 = 10 + 2 * i, 4 + 4 * i
        frame[y0:y0 + 12, x0:x0 + 12] = 250
        mask[y0:y0 + 12, x0:x0 + 12] = 255
        Image.fromarray(frame).save(frames / f"frame{i + 1:06d}.png")
        Image.fromarray(mask).save(masks_dir / f"{i + 1:05d}.png")
    return frames, tmp_path / "masks"


def centroid(region: torch.Tensor) -> torch.Tensor:
    return torch.nonzero(region).float().mean(0)


def test_actor_masks_follow_the_clips_frames_crop_and_flip(tmp_path):
    frames, masks = square_video(tmp_path)
    items = [ClipItem(frames, 0, "clips/sq")]
    tf = build_transform(True, crop_size=32, resize_short=40, train_crop="random_resized", hflip=True,
                         mean=(0.5,) * 3, std=(0.25,) * 3)
    base = ClipDataset(items, num_frames=3, stride=2, mode="random", transform=tf, seed=4)
    ds = ActorMaskDataset.wrap(base, masks)
    for epoch in range(8):
        base.set_epoch(epoch)
        ds.set_epoch(epoch)
        sample, plain = ds[0], base[0]
        assert torch.equal(sample["clip"], plain["clip"])  # the same frames, crop and flip as without masks
        mask = sample["actor_mask"]
        assert mask.shape == (3, 32, 32) and set(mask.unique().tolist()) <= {0.0, 1.0}
        square = sample["clip"][0] > 0  # the white square (normalised grey is negative)
        for t in range(3):
            if not square[t].any():
                assert mask[t].sum() == 0  # cropped away in both
                continue
            # nearest (mask) and antialiased bilinear (frame) resizing differ by up to a pixel; a wrong frame is
            # 8 px away (stride 2), a flip mirrors the x coordinate
            gap = (centroid(mask[t].bool()) - centroid(square[t])).abs()
            assert (gap < 2).all(), f"epoch {epoch} frame {t}: mask {centroid(mask[t].bool())} vs square"
            iou = (square[t] & mask[t].bool()).sum() / (square[t] | mask[t].bool()).sum()
            assert iou > 0.5


def test_actor_masks_from_boxes_by_stem_and_coverage(tmp_path):
    video = write_video(tmp_path / "sq.mp4", np.full((6, 24, 24, 3), 90, dtype=np.uint8))
    boxes = tmp_path / "boxes.csv"
    boxes.write_text("key,frame,x1,y1,x2,y2\n" + "".join(f"sq,{i + 1},{2 + 2 * i},9,{8 + 2 * i},15\n"
                                                          for i in range(6)))
    items = [ClipItem(video, 0, "clips/sq"), ClipItem(video, 1, "clips/other")]
    base = ClipDataset(items, num_frames=6, stride=1, mode="first")
    warned: list[str] = []
    ds = ActorMaskDataset.wrap(base, boxes, warn=warned.append)
    assert len(warned) == 1 and "1 of 2" in warned[0] and "clips/other" in warned[0]
    mask = ds[0]["actor_mask"]  # looked up by the key's stem: "sq"
    for i in range(6):
        expected = torch.zeros(24, 24)
        expected[9:15, 2 + 2 * i:8 + 2 * i] = 1
        assert torch.equal(mask[i], expected)
    assert ds[1]["actor_mask"].sum() == 0  # no masks: no actor
    with pytest.raises(ValueError, match="no actor masks for any"):
        check_mask_coverage(open_mask_source(boxes), ["a/b", "c"])
    with pytest.raises(FileNotFoundError, match="actor masks not found"):
        open_mask_source(tmp_path / "nowhere")


# ------------------------------------------------------------------------------------------------ SDN


def test_gradient_reversal_is_identity_forward_and_negated_scaled_backward():
    x = torch.randn(4, 3, requires_grad=True)
    y = grad_reverse(x, 0.7)
    assert torch.equal(y, x)
    up = torch.randn(4, 3)
    y.backward(up)
    assert torch.allclose(x.grad, -0.7 * up)


def test_scene_head_learns_the_scene_while_the_features_unlearn_it():
    """The head's weights descend the scene CE; the features receive the reversed gradient: a step along it
    RAISES the scene CE that the (fixed) head sees."""
    torch.manual_seed(0)
    feats = torch.randn(8, 5, requires_grad=True)
    scenes = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    head = SceneHead(5, 3, hidden=1, reversal=1.0)
    loss = scene_cross_entropy(head(feats), scenes)
    loss.backward()
    direct = torch.autograd.grad(scene_cross_entropy(head.mlp(feats), scenes), feats)[0]
    assert torch.allclose(feats.grad, -direct, atol=1e-6)
    with torch.no_grad():
        before = float(scene_cross_entropy(head.mlp(feats), scenes))
        after = float(scene_cross_entropy(head.mlp(feats - 0.1 * feats.grad), scenes))
        assert after > before
        for p in head.parameters():
            p -= 0.1 * p.grad
        assert float(scene_cross_entropy(head.mlp(feats), scenes)) < before


def test_scene_cross_entropy_soft_equals_hard_for_one_hot():
    logits = torch.randn(5, 4, generator=gen())
    hard = torch.tensor([0, 3, 1, 1, 2])
    soft = F.one_hot(hard, 4).float()
    assert float(scene_cross_entropy(logits, soft)) == pytest.approx(float(scene_cross_entropy(logits, hard)))
    mixed = torch.tensor([[0.5, 0.5, 0, 0]] * 5)
    expected = -(mixed * F.log_softmax(logits, -1)).sum(-1).mean()
    assert float(scene_cross_entropy(logits, mixed)) == pytest.approx(float(expected))


def test_mask_actor_fills_the_actor_with_its_frames_mean_colour():
    clip = torch.arange(2 * 3 * 2 * 2 * 3, dtype=torch.float32).view(2, 3, 2, 2, 3)
    m = torch.zeros(2, 2, 2, 3)
    m[0, 1, 0, :2] = 1
    out = mask_actor(clip, m)
    mean = clip[0, :, 1].mean(dim=(-2, -1))
    assert torch.allclose(out[0, :, 1, 0, :2], mean[:, None].expand(3, 2))
    keep = ~m.bool()[:, None].expand_as(clip)
    assert torch.equal(out[keep], clip[keep])


def test_mask_actor_union_is_a_hole_that_does_not_move():
    clip = torch.randn(1, 3, 3, 4, 4, generator=gen())
    m = torch.zeros(1, 3, 4, 4)
    for t in range(3):
        m[0, t, 1, t] = 1  # the actor walks right
    moving, still = mask_actor(clip, m), mask_actor(clip, m, union=True)
    fill = clip.mean(dim=(-2, -1), keepdim=True)
    for t in range(3):
        assert torch.equal(moving[0, :, t, 1, t], fill[0, :, t, 0, 0])
        assert torch.equal(still[0, :, t, 1, :3], fill[0, :, t, 0, 0][:, None].expand(3, 3))  # all 3 places
        assert torch.equal(still[0, :, t, 1, 3], clip[0, :, t, 1, 3])


def test_sdn_reversal_warms_up_while_the_head_learns_at_full_weight():
    from albar.objectives.sdn import SDN, SDNParams

    model = small_model()
    clip = torch.randn(4, 3, 2, 8, 8, generator=gen())
    labels, scenes = torch.tensor([0, 1, 2, 3]), torch.tensor([1, 0, 1, 0])
    head = SceneHead(4, 2)
    grads = {}
    for reversal in (0.0, 1.0):
        model.zero_grad()
        head.zero_grad()
        terms = sdn_loss(model, clip, labels, head, scenes, None, w_scene=1.0, w_mask=0.0, reversal=reversal)
        (terms.total - terms.ce).backward()  # the scene term alone
        grads[reversal] = (model.features[0].weight.grad.abs().sum().item(), head.mlp[-1].weight.grad.clone())
    assert grads[0.0][0] == 0.0 and grads[1.0][0] > 0  # no reversed gradient reaches the backbone at 0
    assert torch.allclose(grads[0.0][1], grads[1.0][1])  # the head's own gradient does not depend on it
    sdn = SDN.__new__(SDN)
    sdn.p = SDNParams(warmup_epochs=2, w_mask=0)
    assert [sdn.reversal_scale(s, 10) for s in (0, 10, 20, 35)] == [0.0, 0.5, 1.0, 1.0]
    assert sdn.reversal_scale(None, 10) == 1.0


def small_model(num_classes: int = 4) -> torch.nn.Module:
    from albar.models import build_model

    torch.manual_seed(0)
    return build_model("small3d", num_classes, widths=(4, 4), strides=((1, 2, 2), (1, 2, 2)))


def test_sdn_loss_is_the_sum_of_its_terms_and_skips_clips_without_an_actor():
    model = small_model()
    clip = torch.randn(4, 3, 2, 8, 8, generator=gen())
    labels = torch.tensor([0, 1, 2, 3])
    scenes = torch.tensor([1, 0, 2, 1])
    masks = torch.zeros(4, 2, 8, 8)
    masks[0, :, 2:5, 2:5] = 1
    masks[2, :, 4:, 4:] = 1  # clips 1 and 3 have no actor
    layer = classifier_layer(model)
    logits, feats = logits_and_features(model, clip, layer)
    assert torch.allclose(feats, model.forward_features(clip)) and torch.allclose(logits, model(clip))
    head = SceneHead(feats.shape[1], 3)
    terms = sdn_loss(model, clip, labels, head, scenes, masks, w_scene=0.3, w_mask=2.0)
    ce = F.cross_entropy(logits, labels)
    scene = scene_cross_entropy(head(feats), scenes)
    negent = negative_entropy(model(mask_actor(clip[[0, 2]], masks[[0, 2]])))
    assert terms.total.item() == pytest.approx((ce + 0.3 * scene + 2.0 * negent).item(), rel=1e-5)
    assert terms.mask_neg_entropy.item() == pytest.approx(negent.item(), rel=1e-5)
    assert set(terms.scalars()) == {"loss", "ce", "scene_ce", "scene_top1", "mask_neg_entropy"}
    # no actor anywhere: the confusion term is 0 (and in the graph), not NaN
    none = sdn_loss(model, clip, labels, head, scenes, torch.zeros(4, 2, 8, 8), w_scene=0.3, w_mask=2.0)
    assert none.mask_neg_entropy.item() == 0.0 and torch.isfinite(none.total)
    with pytest.raises(ValueError, match="actor masks"):
        sdn_loss(model, clip, labels, head, scenes, None, w_scene=0.3, w_mask=2.0)


def test_sdn_confusion_term_pushes_the_masked_prediction_towards_uniform():
    model = small_model()
    clip = torch.randn(4, 3, 2, 8, 8, generator=gen(2))
    masks = torch.zeros(4, 2, 8, 8)
    masks[:, :, 2:6, 2:6] = 1
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    entropy = []
    for _ in range(15):
        terms = sdn_loss(model, clip, torch.tensor([0, 1, 2, 3]), None, None, masks, w_scene=0.0, w_mask=1.0)
        entropy.append(-terms.mask_neg_entropy.item())
        opt.zero_grad()
        (terms.total - terms.ce).backward()  # the confusion term alone
        opt.step()
    assert entropy[-1] > entropy[0] and entropy[-1] > 0.95 * np.log(4)


def test_scene_label_files(tmp_path):
    hard = tmp_path / "hard.csv"
    hard.write_text("key,scene\nvideos/a,2\nvideos/b,0\n")
    labels = read_scene_labels(hard)
    assert labels.num_scenes == 3 and not labels.is_soft
    assert labels.targets(["videos/b", "videos/a"]).tolist() == [0, 2]
    assert read_scene_labels(hard, num_scenes=5).num_scenes == 5
    soft = tmp_path / "soft.csv"
    soft.write_text("key,beach,mall\r\na,0.25,0.75\r\nb,1,0\r\n")
    labels = read_scene_labels(soft)
    assert labels.names == ["beach", "mall"] and labels.is_soft
    assert torch.allclose(labels.targets(["a"]), torch.tensor([[0.25, 0.75]]))
    with pytest.raises(KeyError, match="no scene label for 'c'"):
        labels.targets(["a", "c"])
    with pytest.raises(ValueError, match="no scene label for 1 of 3"):
        check_scene_coverage(labels, ["a", "b", "c"])
    for text, match in [("key,beach,mall\na,2.0,3.0\n", "summing to 1"), ("name,scene\na,1\n", "header"),
                        ("key,scene\na,1\na,0\n", "twice"), ("key,scene\na,1.5\n", "0-based class index"),
                        ("key,scene\na,x\n", "numbers"), ("key,scene\na,1,2\n", "columns")]:
        bad = tmp_path / "bad.csv"
        bad.write_text(text)
        with pytest.raises(ValueError, match=match):
            read_scene_labels(bad)
    with pytest.raises(ValueError, match="num_scenes is 2"):
        read_scene_labels(hard, num_scenes=2)


# ------------------------------------------------------------------------------------------------ synthetic


def tree_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def annotated(tiny_benchmark, tmp_path_factory):
    """A copy of the tiny benchmark with its annotations written (the session's benchmark stays untouched)."""
    from albar.synthetic import load_benchmark
    from albar.synthetic.annotations import ensure_annotations

    root = tmp_path_factory.mktemp("annotated") / "synthetic"
    shutil.copytree(tiny_benchmark.root, root)
    before = tree_digest(root)
    masks, scenes = ensure_annotations(root, workers=1, progress=False)
    return load_benchmark(root), before, masks, scenes


def test_synthetic_annotations_are_the_renderers_masks_and_backgrounds(annotated):
    import csv

    from albar.synthetic.annotations import ensure_annotations

    bench, before, masks, scenes = annotated
    after = tree_digest(bench.root)
    assert all(after[k] == v for k, v in before.items()), "existing benchmark files changed"
    meta = {r["key"]: r for r in csv.DictReader(open(bench.root / "lists" / "train_meta.csv"))}
    source = MaskFolder(masks)
    items = bench.items("train")
    assert len(items) == bench.spec.train
    for item in items[:5]:
        row = meta[item.key.rsplit("/", 1)[-1]]
        spec = ClipSpec(row["motion"], row["shape"], int(row["colour"]), row["background"], int(row["seed"]))
        _, truth = render_clip_with_masks(spec, bench.spec.num_frames, bench.spec.size)
        assert source.frame_numbers(item.key) == list(range(bench.spec.num_frames))
        for t in range(bench.spec.num_frames):
            assert np.array_equal(source.mask(item.key, t, (bench.spec.size,) * 2), truth[t] > 0.5)
    labels = read_scene_labels(scenes)
    styles = labels.names
    for item in items:
        row = meta[item.key.rsplit("/", 1)[-1]]
        assert styles[int(labels.targets([item.key]).argmax())] == row["background"]
    check_scene_coverage(labels, [it.key for it in items + bench.items("val") + bench.items("test")])
    stamp = {p: p.stat().st_mtime_ns for p in (scenes, bench.root / "annotations.json")}
    assert ensure_annotations(bench.root, workers=1, progress=False) == (masks, scenes)  # done: nothing rewritten
    assert all(p.stat().st_mtime_ns == m for p, m in stamp.items())


# ------------------------------------------------------------------------------------------------ the commands


def test_scene_labels_command_labels_every_training_video(tmp_path, tiny_benchmark):
    from albar.cli import main

    cfg = write_config(tmp_path, tiny_benchmark, "scenes")

    def args(out: Path, *extra: str) -> list[str]:
        return ["scene-labels", "--config", str(cfg), "--model", "resnet18", "--weights", "none", "--out", str(out),
                "--frames", "2", "--resize", "32", "--crop", "32", "--device", "cpu", "--no-progress", *extra]

    assert main(args(tmp_path / "scenes.csv")) == 0
    labels = read_scene_labels(tmp_path / "scenes.csv")
    keys = [it.key for it in tiny_benchmark.items("train") + tiny_benchmark.items("val")]
    assert labels.keys() == set(keys) and labels.num_scenes == 1000 and labels.is_soft
    assert torch.allclose(labels.targets(keys).sum(1), torch.ones(len(keys)), atol=1e-4)
    assert main(args(tmp_path / "hard.csv", "--hard")) == 0
    hard = read_scene_labels(tmp_path / "hard.csv", num_scenes=1000)
    assert hard.targets(keys).tolist() == labels.targets(keys).argmax(1).tolist()
    assert main([*args(tmp_path / "x.csv"), "--model", "no_such_net"]) == 2


def two_video_config(tmp_path: Path) -> Path:
    import yaml

    for name in ("a", "b"):
        frames = np.full((5, 24, 32, 3), 40 * (name == "b") + 60, dtype=np.uint8)
        write_video(tmp_path / f"{name}.mp4", frames)
    (tmp_path / "train.txt").write_text("a.mp4 0\nb.mp4 1\n")
    cfg = {"model": {"name": "small3d", "num_classes": 2},
           "data": {"source": "lists", "root": str(tmp_path), "train": {"list": str(tmp_path / "train.txt")},
                    "val": {"list": str(tmp_path / "train.txt")}, "num_frames": 4, "stride": 1}}
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_detect_actors_command_writes_the_files_the_readers_take(tmp_path):
    """Random weights (no download): the layout, not the detections, is what is checked here."""
    from albar.biasgen.masks import BoxTable, video_masks
    from albar.cli import main

    cfg = two_video_config(tmp_path)
    masks = tmp_path / "masks"
    common = ["--config", str(cfg), "--weights", "none", "--device", "cpu", "--no-progress"]
    assert main(["detect-actors", *common, "--model", "lraspp_mobilenet_v3_large", "--out", str(masks)]) == 0
    source = MaskFolder(masks)
    for key in ("a", "b"):
        assert source.frame_numbers(key) == list(range(5))  # one PNG per decoded frame, numbered from 1
        assert video_masks(source, key, 5, (24, 32)).shape == (5, 24, 32)
    stamp = (masks / "a" / "00001.png").stat().st_mtime_ns
    assert main(["detect-actors", *common, "--model", "lraspp_mobilenet_v3_large", "--out", str(masks)]) == 0
    assert (masks / "a" / "00001.png").stat().st_mtime_ns == stamp  # done earlier: skipped
    boxes = tmp_path / "boxes.csv"
    assert main(["detect-actors", *common, "--model", "fasterrcnn_mobilenet_v3_large_320_fpn", "--out", str(boxes),
                 "--threshold", "0.0", "--min-size", "64"]) == 0
    assert boxes.read_text().splitlines()[0] == "key,frame,x1,y1,x2,y2,score"
    BoxTable(boxes)  # readable as make-bias-set reads boxes
    assert main(["detect-actors", *common, "--model", "fasterrcnn_mobilenet_v3_large_320_fpn",
                 "--out", str(tmp_path / "folder")]) == 2  # boxes need a .csv


def test_detection_outputs_become_person_masks_and_boxes():
    from albar.cli.detect_actors import person_boxes, person_index, person_instances, person_pixels

    out = {"labels": torch.tensor([1, 3, 1, 1]), "scores": torch.tensor([0.9, 0.95, 0.3, 0.8]),
           "boxes": torch.tensor([[1.0, 2, 5, 6], [0, 0, 9, 9], [2, 2, 4, 4], [3, 3, 3, 8]]),
           "masks": torch.zeros(4, 1, 6, 6)}
    out["masks"][0, 0, :2] = 0.9  # person, kept
    out["masks"][1, 0, 4:] = 0.9  # not a person
    out["masks"][2, 0, :, :1] = 0.9  # person, below the threshold
    out["masks"][3, 0, 2:3] = 0.4  # person, kept, but the pixels are below 0.5
    assert person_boxes(out, 1, 0.5) == [(1.0, 2.0, 5.0, 6.0, pytest.approx(0.9))]  # the empty box is dropped
    mask = person_instances(out, 1, 0.5, (6, 6))
    assert mask[:2].all() and not mask[2:].any()
    logits = torch.zeros(21, 3, 3)
    logits[15, 1, 1] = 5.0
    assert person_pixels(logits, 15).sum() == 1 and person_pixels(logits, 15)[1, 1]
    assert person_index(["__background__", "person"], "instance", None) == 1
    assert person_index(None, "semantic", None) == 15 and person_index(None, "boxes", 7) == 7
    with pytest.raises(ValueError, match="no 'person'"):
        person_index(["cat", "dog"], "boxes", None)


# ------------------------------------------------------------------------------------------------ training


@pytest.mark.parametrize("name, section", [
    ("fame", {"method": {"name": "fame"}}),
    ("actorcutmix", {"method": {"name": "actorcutmix", "prob": 1.0}}),
    ("sdn", {"objective": {"name": "sdn"}}),
])
def test_each_baseline_trains_from_files_on_disk(tmp_path, annotated, name, section):
    """`albar train` on the synthetic benchmark's files: its videos, and the actor masks and scene labels written
    beside them (no mask or label path in the config: the benchmark's own)."""
    import json

    from albar.cli import main

    overrides = {"objective": {"name": "ce"}, "optim.epochs": 1, "checkpoint.every_steps": 0, **section}
    cfg = write_config(tmp_path, annotated[0], name, **overrides)
    assert main(["train", "--config", str(cfg), "--no-progress"]) == 0
    steps = [json.loads(line) for line in (tmp_path / name / "steps.jsonl").read_text().splitlines()]
    assert len(steps) == 4 and all(np.isfinite(v) for s in steps for k, v in s.items() if k != "time")
    if name == "sdn":
        assert all({"scene_ce", "scene_top1", "mask_neg_entropy"} <= set(s) for s in steps)
        assert all(s["mask_neg_entropy"] < 0 for s in steps)
        assert "objective" in torch.load(tmp_path / name / "last.pt", weights_only=True)  # the scene head
    assert (tmp_path / name / "results.json").is_file()


def test_actorcutmix_without_masks_names_the_key_to_set(tmp_path, tiny_benchmark, capsys):
    from albar.cli import main

    lists = {f"data.{split}": {"list": str(tiny_benchmark.list_path(split))} for split in ("train", "val")}
    cfg = write_config(tmp_path, tiny_benchmark, "acm", **{"objective": {"name": "ce"}, "data.source": "lists",
                                                          "method": {"name": "actorcutmix"}, **lists})
    assert main(["train", "--config", str(cfg), "--no-progress"]) == 2
    assert "method.masks: actor masks are needed" in capsys.readouterr().err


def test_sdn_resumes_with_its_scene_head(tmp_path, annotated):
    """Interrupted after epoch 1 and resumed, an SDN run ends where an uninterrupted one does: the scene head
    (the objective's own weights) is saved in last.pt and restored."""
    from albar.config import load_config
    from albar.data.bundle import build_data
    from albar.training.run import prepare_train_set
    from albar.training.trainer import train

    def run(name: str, stop_after: int | None) -> dict:
        cfg = load_config(write_config(tmp_path, annotated[0], name, **{"objective": {"name": "sdn"},
                                                                       "optim.epochs": 2}))
        data = build_data(cfg.data, cfg.seed, cfg.model.num_classes, progress=False)
        train_set = prepare_train_set(cfg, data.train)

        def stop(epoch: int, record: dict) -> None:
            if stop_after is not None and epoch + 1 == stop_after:
                raise KeyboardInterrupt

        if stop_after is not None:
            with pytest.raises(KeyboardInterrupt):
                train(cfg, train_set, None, out_dir=cfg.out_dir, progress=False, on_epoch_end=stop)
        train(cfg, train_set, None, out_dir=cfg.out_dir, progress=False)
        return torch.load(cfg.out_dir / "last.pt", weights_only=True)

    straight, resumed = run("straight", None), run("resumed", 1)
    assert straight["step"] == resumed["step"] == 8
    for part in ("model", "objective"):
        assert straight[part].keys() == resumed[part].keys()
        for k in straight[part]:
            assert torch.equal(straight[part][k], resumed[part][k]), f"{part}.{k}"
