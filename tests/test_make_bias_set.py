import io
import json
import zipfile

import numpy as np
import pytest
from biasgen_fixtures import CLASSES, SQUARE, VIDEOS, H, T, W, render, square_box, square_mask, write_inputs
from helpers import write_zip
from PIL import Image, ImageFilter

from albar.biasgen import (
    BiasSetSpec,
    BoxTable,
    ImageBackgrounds,
    MaskFolder,
    MaskMismatch,
    build_bias_set,
    composite,
    measure_leakage,
    video_leakage,
    video_masks,
)
from albar.biasgen.build import place_pasted, rng_for
from albar.cli import main
from albar.data.bias_sets import (
    albar_bias_set,
    check_pairing,
    csv_labeler,
    stillmix_bias_set,
)
from albar.data.io import read_clip
from albar.data.lists import read_list
from albar.synthetic.render import StripeParams, draw_stripes, stripe_params


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    return write_inputs(tmp_path_factory.mktemp("biasgen_inputs"))


@pytest.fixture(scope="module")
def albar_set(inputs, tmp_path_factory):
    out = tmp_path_factory.mktemp("built") / "albar"
    spec = BiasSetSpec("UCF101", "Stripe", per_video=2, conflfg=1, seed=5)
    return build_bias_set(inputs["list"], MaskFolder(inputs["masks"]), out, spec, progress=False)


def _zip_frames(path):
    with zipfile.ZipFile(path) as zf:
        names = sorted(zf.namelist())
        return np.stack([np.asarray(Image.open(io.BytesIO(zf.read(n))).convert("RGB")) for n in names]), zf


def _tree(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_composite_keeps_exactly_the_masked_pixels(inputs):
    frames = read_clip(inputs["list"].parent / "videos" / "walk_b.mp4", lambda n: range(n))
    masks = video_masks(MaskFolder(inputs["masks"]), "walk_b", len(frames), frames.shape[1:3])
    assert masks.shape == (T, H, W) and all((masks[t] == square_mask("walk_b", t)).all() for t in range(T))
    bg = np.full((H, W, 3), 7, np.uint8)
    out = composite(frames, masks, bg)
    assert (out[masks] == frames[masks]).all() and (out[~masks] == 7).all()
    with pytest.raises(ValueError, match="shapes differ"):
        composite(frames, masks[:, :, :-1], bg)


def test_scuba_on_disk_is_actor_over_the_recorded_stripes(inputs, albar_set):
    m = albar_set.manifest
    assert m["counts"]["used"] == 4 and m["counts"]["scuba"] == 8
    for key in VIDEOS:
        frames = read_clip(inputs["list"].parent / "videos" / f"{key}.mp4", lambda n: range(n)).astype(float)
        for ckey, rec in m["videos"][key]["composites"].items():
            got, zf = _zip_frames(albar_set.out / "UCF101_SCUBA_Stripe" / f"{ckey}.zip")
            assert got.shape == (T, H, W, 3)
            params = StripeParams(**{**rec["background"]["stripes"],
                                     "colour": tuple(rec["background"]["stripes"]["colour"])})
            bg = draw_stripes(params, (W, H))
            for t in range(T):
                inside = square_mask(key, t)
                core = inside.copy()  # away from the edge, where JPEG blurs actor and stripes together
                core[1:-1, 1:-1] = inside[:-2, 1:-1] & inside[2:, 1:-1] & inside[1:-1, :-2] & inside[1:-1, 2:]
                assert np.abs(got[t][core] - frames[t][core]).mean() < 4
                grown = Image.fromarray(inside.astype(np.uint8) * 255).filter(ImageFilter.MaxFilter(5))
                far = ~np.asarray(grown).astype(bool)
                assert np.abs(got[t][far] - bg[far]).mean() < 8  # stripes are sharp-edged: JPEG ringing
                assert np.abs(got[t][far] - frames[t][far]).mean() > 20  # the original background is gone
    # the two composites of a video get different backgrounds
    recs = list(m["videos"]["walk_a"]["composites"].values())
    assert recs[0]["background"] != recs[1]["background"]


def test_stripe_parameters_in_the_generators_ranges(albar_set):
    drawn = [stripe_params(np.random.default_rng(i)) for i in range(300)]
    drawn += [StripeParams(**{**r["background"]["stripes"], "colour": tuple(r["background"]["stripes"]["colour"])})
              for v in albar_set.manifest["videos"].values() for r in v["composites"].values()]
    for p in drawn:
        assert 10 <= p.amplitude <= 110 and 5 <= p.half_width <= 20
        assert 3 <= p.spacing / (2 * p.half_width) <= 5
    # drawn unrotated at canvas scale, a column crosses lines 2 * half_width px thick, spacing apart
    p = StripeParams((0.1, 0.1, 0.1), 8.0, 60.0, 50.0, 0.01, 0.3, 0.0)
    col = draw_stripes(p, 256)[:, 100, 0] > 128
    edges = np.flatnonzero(np.diff(col.astype(int)))
    runs = np.diff(edges)
    assert set(np.round(runs[col[edges[:-1] + 1]]).astype(int)) <= {16, 17}
    assert abs(np.diff(edges[::2]).mean() - 60) < 1.5


def test_albar_layout_reads_back_paired_and_labelled(inputs, albar_set):
    out = albar_set.out
    label_of = csv_labeler(out / "labels.csv")
    scuba = albar_bias_set(out, "UCF101", "SCUBA", "Stripe", label_of, CLASSES)
    scufo = albar_bias_set(out, "UCF101", "SCUFO", "Stripe", label_of, CLASSES)
    assert len(scuba.items) == 8 and check_pairing(scuba, scufo).ok
    assert {it.key for it in scuba.items} == {f"{k}__{n}" for k in VIDEOS for n in range(2)}
    assert all(it.label == VIDEOS[it.key.split("__")[0]][0] for it in scuba.items)
    # the SCUFO still is the recorded frame of its SCUBA composite
    for it in scufo.items:
        rec = albar_set.manifest["videos"][it.key.split("__")[0]]["composites"][it.key]
        clip, _ = _zip_frames(out / "UCF101_SCUBA_Stripe" / f"{it.key}.zip")
        still = np.asarray(Image.open(it.source).convert("RGB"), float)
        diffs = [np.abs(still - clip[t]).mean() for t in range(T)]
        assert int(np.argmin(diffs)) == rec["scufo_frame"] and diffs[rec["scufo_frame"]] < 1
    conf = albar_bias_set(out, "UCF101", "ConflFG", "Stripe", label_of, CLASSES)
    assert len(conf.items) == 4
    for it in conf.items:
        rec = albar_set.manifest["conflfg"][it.key]
        assert it.label == rec["label"] == VIDEOS[rec["moving"]][0]
        assert it.extra["conflict_label"] == rec["conflict_label"] == VIDEOS[rec["pasted"]][0] != it.label
        # the pasted still actor sits at its recorded offset, in its own colour, in every frame, and the
        # moving actor (drawn over it) covers none of it here: the squares have room to stay apart
        clip, _ = _zip_frames(it.source)
        dy, dx = rec["offset"]
        pm = np.roll(square_mask(rec["pasted"], rec["pasted_frame"]), (dy, dx), axis=(0, 1))
        assert pm.sum() == SQUARE * SQUARE and rec["visible_share"] == 1.0
        assert not (pm & np.any([square_mask(rec["moving"], t) for t in range(T)], axis=0)).any()
        colour = np.array(VIDEOS[rec["pasted"]][1], float)
        assert np.abs(clip[:, pm].mean(axis=1) - colour).max() < 25
    listed = read_list(albar_set.lists["conflfg"], root=out, key="stem")
    assert {(it.key, it.label, it.extra["conflict_label"]) for it in listed} == \
        {(it.key, it.label, it.extra["conflict_label"]) for it in conf.items}
    for name in ("scuba", "scufo"):
        assert [it.key for it in read_list(albar_set.lists[name], root=out, key="stem")] == \
            sorted(it.key for it in scuba.items)


def test_stillmix_layout_reads_back(inputs, tmp_path):
    spec = BiasSetSpec("HMDB51", "Places365", per_video=1, conflfg=1, layout="stillmix", seed=1)
    bgdir = tmp_path / "bgs"
    bgdir.mkdir()
    for i in range(3):
        Image.fromarray(np.full((30, 40, 3), 40 + 70 * i, np.uint8)).save(bgdir / f"b{i}.png")
    res = build_bias_set(inputs["list"], BoxTable(inputs["boxes"]), tmp_path / "sm", spec, ImageBackgrounds(bgdir),
                         classes=CLASSES, progress=False)
    scuba = stillmix_bias_set(res.lists["scuba"], res.out, CLASSES)
    scufo = stillmix_bias_set(res.lists["scufo"], res.out, CLASSES)
    conf = stillmix_bias_set(res.lists["conflfg"], res.out, CLASSES)
    assert check_pairing(scuba, scufo).ok and len(scuba.items) == 4
    assert all(it.extra["num_frames"] == T and it.source.is_dir() for it in scuba.items)
    assert all(it.extra["conflict_label"] != it.label for it in conf.items) and len(conf.items) == 4
    assert (res.out / "classes.txt").read_text().split() == CLASSES
    for it in scuba.items:
        key = it.key.split("__")[0]
        rec = res.manifest["videos"][key]["composites"][it.key]
        level = 40 + 70 * int(rec["background"]["file"][1])
        frame = np.asarray(Image.open(it.source / "frame000001.jpg"), float)
        x1, y1, x2, y2 = square_box(key, 0)
        outside = np.ones((H, W), bool)
        outside[max(0, y1 - 2):y2 + 2, max(0, x1 - 2):x2 + 2] = False
        diff = np.abs(frame[outside] - level)
        assert np.median(diff) <= 1 and diff.mean() < 2  # JPEG rings a little near the box


def test_same_seed_same_bytes_other_seed_other_bytes(inputs, tmp_path):
    spec = BiasSetSpec("UCF101", "Stripe", per_video=1, conflfg=1, seed=3)
    a = build_bias_set(inputs["list"], MaskFolder(inputs["masks"]), tmp_path / "a", spec, progress=False)
    b = build_bias_set(inputs["list"], MaskFolder(inputs["masks"]), tmp_path / "b", spec, workers=2, progress=False)
    ta, tb = _tree(a.out), _tree(b.out)
    assert ta.keys() == tb.keys() and all(ta[k] == tb[k] for k in ta)
    spec4 = BiasSetSpec("UCF101", "Stripe", per_video=1, conflfg=1, seed=4)
    c = build_bias_set(inputs["list"], MaskFolder(inputs["masks"]), tmp_path / "c", spec4, progress=False)
    tc = _tree(c.out)
    scuba = [k for k in ta if k.startswith("UCF101_SCUBA_Stripe/")]
    assert scuba and all(k in tc and ta[k] != tc[k] for k in scuba)
    with zipfile.ZipFile(a.out / scuba[0]) as zf:
        assert {i.date_time for i in zf.infolist()} == {(2025, 1, 1, 0, 0, 0)}
    assert not list(tmp_path.glob(".*building*"))


def test_skip_rules_counted_and_named(inputs, tmp_path):
    root = inputs["list"].parent
    masks = tmp_path / "masks"
    for key in VIDEOS:
        (masks / key).mkdir(parents=True)
    tiny = np.zeros((H, W), np.uint8)
    tiny[:3, :3] = 255  # 9 px: below 1% of the frame
    for t in range(T):
        Image.fromarray(tiny).save(masks / "walk_a" / f"{t + 1:05d}.png")
        Image.fromarray(square_mask("jump_a", t).astype(np.uint8) * 255).save(masks / "jump_a" / f"{t + 1:05d}.png")
    for t in range(T + 6):  # 6 masks past the end of a 10-frame video: another video's masks
        Image.fromarray(square_mask("walk_b", 0).astype(np.uint8) * 255).save(masks / "walk_b" / f"{t + 1:05d}.png")
    for t in range(4):  # masks for 4 of 10 frames: 6 frames small > 50%
        Image.fromarray(square_mask("jump_b", t).astype(np.uint8) * 255).save(masks / "jump_b" / f"{t + 1:05d}.png")
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00" * 500)
    lst = tmp_path / "list.txt"
    lst.write_text("".join(f"{root}/videos/{k}.mp4 {v[0]}\n" for k, v in VIDEOS.items())
                   + f"{bad} 0\n{tmp_path}/missing_video.mp4 0\n")
    res = build_bias_set(lst, MaskFolder(masks), tmp_path / "out", BiasSetSpec("UCF101", "Stripe"), progress=False)
    c = res.counts
    assert c["videos"] == 6 and c["used"] == 1 and c["scuba"] == 1
    assert c["skipped"] == {"unreadable": 2, "no_masks": 0, "mask_mismatch": 1, "mask_too_small": 2}
    s = res.manifest["skipped"]
    assert s["walk_a"]["rule"] == "mask_too_small" and "10 of 10 frames" in s["walk_a"]["reason"]
    assert s["jump_b"]["rule"] == "mask_too_small" and "6 of 10" in s["jump_b"]["reason"]
    assert "6 masks past" in s["walk_b"]["reason"] and "broken.mp4" in s["broken"]["reason"]
    # more permissive rules keep jump_b
    res2 = build_bias_set(lst, MaskFolder(masks), tmp_path / "out2", BiasSetSpec("UCF101", "Stripe",
                          max_small_fraction=0.7), progress=False)
    assert res2.counts["skipped"]["mask_too_small"] == 1 and "jump_b" in res2.manifest["videos"]
    assert res2.manifest["videos"]["jump_b"]["small_frames"] == 6


def test_mask_frame_rules(tmp_path):
    folder = tmp_path / "m" / "vid"
    folder.mkdir(parents=True)
    big = np.zeros((24, 32), np.uint8)
    big[4:12, 8:16] = 255
    for n in (0, 1, 3, 10, 11):  # SAM-Track style 0-based names; frame 2 missing; 10, 11 past a 10-frame video
        Image.fromarray(big).save(folder / f"{n:05d}.png")
    masks = video_masks(MaskFolder(tmp_path / "m", first_index=0), "vid", 10, (48, 64))
    assert masks.shape == (10, 48, 64)
    assert masks[0].sum() == 16 * 16 and masks[0][8:24, 16:32].all()  # resized nearest to the frame
    assert not masks[2].any() and not masks[4].any() and masks[3].any()
    with pytest.raises(MaskMismatch, match="3 masks past"):
        Image.fromarray(big).save(folder / "00012.png")
        video_masks(MaskFolder(tmp_path / "m", first_index=0), "vid", 10, (48, 64))
    with pytest.raises(MaskMismatch, match="no masks"):
        video_masks(MaskFolder(tmp_path / "m"), "other", 10, (48, 64))
    with pytest.raises(ValueError, match="below the first index 1"):
        MaskFolder(tmp_path / "m", first_index=1).frame_numbers("vid")


def test_box_files_and_their_errors(tmp_path):
    js = tmp_path / "boxes.json"
    js.write_text(json.dumps({"v": {"1": [[1.5, 2, 4, 5]], "2": [[0, 0, 2, 2], [3, 3, 5, 5]]}}))
    boxes = BoxTable(js)
    m = video_masks(boxes, "v", 3, (8, 8))
    assert m[0].sum() == 3 * 3 and m[0][2:5, 1:4].all()  # x 1.5 covers column 1
    assert m[1].sum() == 8 and not m[2].any()
    bad = tmp_path / "bad.csv"
    bad.write_text("key,frame,x1,y1,x2,y2\nv,1,0,0,4,4\nv,2,5,5,3,9\n")
    with pytest.raises(ValueError, match=r"bad.csv:3: box .* is empty"):
        BoxTable(bad)
    bad.write_text("key,frame,x,y\n")
    with pytest.raises(ValueError, match="bad.csv: header must have"):
        BoxTable(bad)


def test_leakage_of_boxes_against_exact_masks(inputs, tmp_path):
    # hand count: a 20x20 box around a 16x16 square leaks 400 - 256 = 144 px per 48x64 frame
    res = build_bias_set(inputs["list"], BoxTable(inputs["boxes"]), tmp_path / "box", BiasSetSpec("UCF101", "Stripe"),
                         leakage_masks=MaskFolder(inputs["masks"]), progress=False)
    leak = json.loads((res.out / "leakage.json").read_text())
    assert leak == res.manifest["leakage"]
    for key in VIDEOS:
        v = leak["videos"][key]
        assert v["leaked_pixels"] == 144 * T and v["kept_pixels"] == 400 * T
        assert v["fraction"] == pytest.approx(144 / (H * W)) and v["fraction_of_kept"] == pytest.approx(0.36)
    assert leak["overall"]["fraction"] == pytest.approx(144 / (H * W)) and leak["overall"]["videos"] == 4
    exact = build_bias_set(inputs["list"], MaskFolder(inputs["masks"]), tmp_path / "mask",
                           BiasSetSpec("UCF101", "Stripe"), leakage_masks=MaskFolder(inputs["masks"]), progress=False)
    assert exact.manifest["leakage"]["overall"]["leaked_pixels"] == 0
    assert video_leakage(np.ones((2, 2), bool), np.eye(2, dtype=bool))["fraction"] == 0.5
    alone = measure_leakage(inputs["list"], BoxTable(inputs["boxes"]), MaskFolder(inputs["masks"]))
    assert alone["overall"] == leak["overall"] and alone["videos"] == leak["videos"] and not alone["errors"]


def test_cli_builds_and_refuses_a_used_folder(inputs, tmp_path, capsys):
    out = tmp_path / "cli"
    args = ["make-bias-set", "--videos", str(inputs["list"]), "--boxes", str(inputs["boxes"]), "--stripes",
            "--dataset", "UCF101", "--out", str(out), "--leakage-masks", str(inputs["masks"]), "--conflfg", "1",
            "--classes", str(inputs["classes"]), "--workers", "1", "--no-progress"]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "4 of 4 videos used" in text and "wrote 4 SCUBA, 4 SCUFO, 4 ConflFG" in text and "leakage" in text
    assert (out / "UCF101_SCUBA_Stripe").is_dir() and (out / "lists" / "conflfg.txt").is_file()
    assert main(args) == 2
    assert "exists and is not empty" in capsys.readouterr().err
    missing = [a if a != str(inputs["boxes"]) else str(tmp_path / "nope.csv") for a in args]
    missing[missing.index(str(out))] = str(tmp_path / "cli2")
    assert main(missing) == 2 and "nope.csv" in capsys.readouterr().err


def test_keys_checked(inputs, tmp_path):
    lst = tmp_path / "l.txt"
    lst.write_text(f"{inputs['list'].parent}/videos/walk_a.mp4 0\n{inputs['list'].parent}/videos/walk_a.mp4 1\n")
    with pytest.raises(ValueError, match="two videos have the key 'walk_a'"):
        build_bias_set(lst, MaskFolder(inputs["masks"]), tmp_path / "o", BiasSetSpec("UCF101", "Stripe"),
                       progress=False)
    with pytest.raises(ValueError, match="source must be letters"):
        BiasSetSpec("UCF101", "Places-365")


def test_cli_leakage_masks_with_their_own_first_index(inputs, tmp_path, capsys):
    zero = tmp_path / "zero_based"  # SAM-Track style names (00000.png first) against 1-based boxes
    for key in VIDEOS:
        (zero / key).mkdir(parents=True)
        for t in range(T):
            (zero / key / f"{t:05d}.png").write_bytes((inputs["masks"] / key / f"{t + 1:05d}.png").read_bytes())
    args = ["make-bias-set", "--videos", str(inputs["list"]), "--boxes", str(inputs["boxes"]), "--stripes",
            "--dataset", "UCF101", "--leakage-masks", str(zero), "--leakage-first-index", "0", "--workers", "1",
            "--no-progress"]
    assert main([*args, "--out", str(tmp_path / "a")]) == 0
    leak = json.loads((tmp_path / "a" / "leakage.json").read_text())["overall"]
    assert leak["fraction"] == pytest.approx(144 / (H * W))
    capsys.readouterr()
    assert main([*args[:-5], "--workers", "1", "--no-progress", "--out", str(tmp_path / "b")]) == 2
    assert "00000.png: frame number 00000 is below the first index 1" in capsys.readouterr().err
    assert not (tmp_path / "b").exists() and not list(tmp_path.glob(".b.building*"))


def test_frame_folders_and_zips_as_videos(inputs, tmp_path):
    """JHMDB's frames come as PNG folders: lossless sources, so the composite's actor is the frame's, to
    within the output JPEG's loss only."""
    frames = render("walk_a")
    (tmp_path / "frames" / "walk_a").mkdir(parents=True)
    for t, f in enumerate(frames):
        Image.fromarray(f).save(tmp_path / "frames" / "walk_a" / f"{t + 1:05d}.png")
    write_zip(tmp_path / "jump_a.zip", render("jump_a"))
    lst = tmp_path / "list.txt"
    lst.write_text("frames/walk_a 0\njump_a.zip 1\n")
    res = build_bias_set(lst, MaskFolder(inputs["masks"]), tmp_path / "out", BiasSetSpec("HMDB51", "Stripe"),
                         progress=False)
    assert res.counts["used"] == 2
    got, _ = _zip_frames(res.out / "HMDB51_SCUBA_Stripe" / "walk_a__0.zip")
    for t in range(T):
        inside = square_mask("walk_a", t)
        inner = np.zeros_like(inside)
        inner[1:-1, 1:-1] = inside[:-2, 1:-1] & inside[2:, 1:-1] & inside[1:-1, :-2] & inside[1:-1, 2:]
        assert np.abs(got[t][inner].astype(float) - frames[t][inner]).max() < 12


def test_place_pasted_by_hand():
    # 2x8 frames; the moving actor covers columns 0-5 in frame 0 and 2-7 in frame 1; the still actor is a
    # 2x2 square at columns 2-3, under the moving actor in both frames (visible share 0 in place).
    moving = np.zeros((2, 2, 8), bool)
    moving[0, :, 0:6] = True
    moving[1, :, 2:8] = True
    pasted = np.zeros((2, 8), bool)
    pasted[:, 2:4] = True
    # left column x: covered share per frame, by hand: x=0: (1, 0); x=1: (1, .5); x=2..4: (1, 1); x=5: (.5, 1);
    # x=6: (0, 1). Least mean covered: x=0 and x=6 (0.5 each; worst frame 1 for both); x=0 moves least.
    got = place_pasted(moving, pasted, np.random.default_rng(0))
    assert got == {"offset": [0, -2], "visible_share": 0.5, "visible_share_min": 0.0,
                   "visible_share_at_origin": 0.0}
    # a tie in every criterion but the draw: the still actor in the middle of a 1x5 frame, the moving one on it
    # -> columns 1 and 3 are equally good and equally far; the seed decides, the same seed decides the same
    mid = np.zeros((1, 5), bool)
    mid[0, 2] = True
    picks = {seed: place_pasted(mid[None], mid, rng_for(seed, "k"))["offset"][1] for seed in range(12)}
    assert set(picks.values()) == {-1, 1}
    assert all(place_pasted(mid[None], mid, rng_for(seed, "k"))["offset"][1] == picks[seed] for seed in picks)
    with pytest.raises(ValueError, match="mask is empty"):
        place_pasted(moving, np.zeros((2, 8), bool), np.random.default_rng(0))


# a still actor hidden under the moving one at its own place: 16x24 frames, flat colours, PNG frames (lossless)
HID_H, HID_W, HID_T = 16, 24, 4
HIDDEN = {"run": (0, (250, 40, 200), (0, 16, 0, 16)),  # label, colour, rows y0:y1, columns x0:x1
          "sit": (1, (30, 220, 230), (2, 14, 2, 14))}  # inside run's square: fully covered where it stands


def _hidden_inputs(root):
    lines = []
    for key, (label, colour, (y0, y1, x0, x1)) in HIDDEN.items():
        (root / "frames" / key).mkdir(parents=True)
        (root / "masks" / key).mkdir(parents=True)
        mask = np.zeros((HID_H, HID_W), bool)
        mask[y0:y1, x0:x1] = True
        frame = np.full((HID_H, HID_W, 3), 128, np.uint8)
        frame[mask] = colour
        for t in range(HID_T):
            Image.fromarray(frame).save(root / "frames" / key / f"{t + 1:05d}.png")
            Image.fromarray(mask.astype(np.uint8) * 255).save(root / "masks" / key / f"{t + 1:05d}.png")
        lines.append(f"frames/{key} {label}\n")
    (root / "videos.txt").write_text("".join(lines))
    return root / "videos.txt", MaskFolder(root / "masks")


def _colour_share(clip, colour, area):
    """Per frame: pixels showing ``colour`` (JPEG at quality 100: within a few levels) over ``area``."""
    near = np.abs(clip.astype(int) - np.array(colour)).max(axis=-1) < 30
    return near.reshape(len(clip), -1).sum(axis=1) / area


def test_conflfg_pasted_actor_moved_out_from_under_the_moving_one(tmp_path, capsys):
    videos, masks = _hidden_inputs(tmp_path)
    spec = BiasSetSpec("HMDB51", "Stripe", conflfg=1, seed=0, quality=100)
    res = build_bias_set(videos, masks, tmp_path / "out", spec, progress=False)
    conf = res.manifest["conflfg"]
    assert set(conf) == {"run__sit__0", "sit__run__0"} and res.counts["conflfg_skipped"] == 0
    # sit (12x12) pasted under run (columns 0-15, all rows): the most it can show is columns 16-23 of its 12,
    # at offset (0, +10) (the rows it may take tie, staying put wins): 8 * 12 / 144 = 2/3 in every frame
    a = conf["run__sit__0"]
    assert a["visible_share_at_origin"] == 0.0  # hidden where it stood (the old build reported 37.5% area)
    assert a["offset"] == [0, 10] and a["visible_share"] == pytest.approx(2 / 3, abs=1e-6)
    assert a["visible_share_min"] == pytest.approx(2 / 3, abs=1e-6)
    # run (16x16) pasted under sit (rows/columns 2-13): best at columns 8-23, 6 of its 16 columns x 12 rows
    # covered: 1 - 72 / 256
    b = conf["sit__run__0"]
    assert b["offset"] == [0, 8] and b["visible_share"] == pytest.approx(184 / 256, abs=1e-6)
    assert b["visible_share_at_origin"] == pytest.approx(1 - 144 / 256, abs=1e-6)
    # what the written frames show equals the manifest: decode the zips and count the pasted colour
    for name, pasted, area in (("run__sit__0", "sit", 144), ("sit__run__0", "run", 256)):
        clip, _ = _zip_frames(res.out / "HMDB51_ConflFG_Stripe" / f"{name}.zip")
        shown = _colour_share(clip, HIDDEN[pasted][1], area)
        assert np.abs(shown - conf[name]["visible_share"]).max() < 0.01, (name, shown)
        moving = name.split("__")[0]
        y0, y1, x0, x1 = HIDDEN[moving][2]
        assert (_colour_share(clip[:, y0:y1, x0:x1], HIDDEN[moving][1], (y1 - y0) * (x1 - x0)) > 0.99).all()
    assert res.manifest["conflfg_visible_share"] == {"mean": pytest.approx((2 / 3 + 184 / 256) / 2, abs=1e-6),
                                                     "min": pytest.approx(2 / 3, abs=1e-6)}
    # a stricter threshold skips the 2/3-visible pairing and counts it; the other stays
    strict = tmp_path / "strict"
    assert main(["make-bias-set", "--videos", str(videos), "--masks", str(tmp_path / "masks"), "--stripes",
                 "--dataset", "HMDB51", "--conflfg", "1", "--min-visible", "0.7", "--out", str(strict),
                 "--workers", "1", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "1 ConflFG" in printed and "ConflFG pairings skipped: 1" in printed and "mean 71.9%" in printed
    m = json.loads((strict / "manifest.json").read_text())
    assert set(m["conflfg"]) == {"sit__run__0"} and m["counts"]["conflfg_skipped"] == 1
    assert "'sit' at most 66.7% visible" in m["conflfg_skipped"]["run__0"]
    assert not (strict / "HMDB51_ConflFG_Stripe" / "run__sit__0.zip").exists()
    assert [it.key for it in read_list(strict / "lists" / "conflfg.txt", root=strict, key="stem")] == ["sit__run__0"]


def test_place_pasted_agrees_with_an_exhaustive_search():
    rng = np.random.default_rng(7)
    moving = rng.random((5, 12, 14)) < 0.35
    pasted = np.zeros((12, 14), bool)
    pasted[3:8, 4:9] = rng.random((5, 5)) < 0.7
    pasted[3, 4] = pasted[7, 8] = True  # the bounding box is rows 3-7, columns 4-8
    ys, xs = np.nonzero(pasted)
    best = None
    for dy in range(-3, 12 - 7):
        for dx in range(-4, 14 - 8):
            covered = np.array([moving[t, ys + dy, xs + dx].sum() for t in range(5)])
            key = (covered.sum(), covered.max(), dy * dy + dx * dx)
            if best is None or key < best[0]:
                best = (key, [dy, dx])
    got = place_pasted(moving, pasted, np.random.default_rng(0))
    assert got["visible_share"] == pytest.approx(1 - best[0][0] / (5 * len(ys)))
    assert got["visible_share_min"] == pytest.approx(1 - best[0][1] / len(ys))
    dy, dx = got["offset"]
    assert (dy * dy + dx * dx) == best[0][2]


def test_keys_with_double_underscores_build_and_read_back(inputs, tmp_path):
    """HMDB51 names hold '__' (FORMATS.md): make-bias-set accepts them and its ConflFG names read back as the
    right (moving, pasted) pair, resolved against the dataset's keys."""
    import shutil

    names = {"walk_a": "_I_ll_Just_Wave_My_Hand__sung_by_Jill_wave_u_cm_np1_fr_goo_0",
             "walk_b": "(Rad)Schlag_die_Bank!__wave_f_cm_np1_le_med_1",
             "jump_a": "Jump_&_Run__3_jump_f_cm_np1_ri_bad_0", "jump_b": "jump_b"}
    src = inputs["list"].parent
    (tmp_path / "videos").mkdir()
    lines = []
    for old, new in names.items():
        shutil.copy(src / "videos" / f"{old}.mp4", tmp_path / "videos" / f"{new}.mp4")
        shutil.copytree(inputs["masks"] / old, tmp_path / "masks" / new)
        lines.append(f"videos/{new}.mp4 {VIDEOS[old][0]}\n")
    (tmp_path / "videos.txt").write_text("".join(lines))
    spec = BiasSetSpec("HMDB51", "Stripe", per_video=1, conflfg=2, seed=1)
    built = build_bias_set(tmp_path / "videos.txt", MaskFolder(tmp_path / "masks"), tmp_path / "out", spec,
                           progress=False)
    assert built.manifest["counts"]["conflfg"] == 8 and not built.manifest["conflfg_skipped"]
    label_of = csv_labeler(tmp_path / "out" / "labels.csv")
    scuba = albar_bias_set(tmp_path / "out", "HMDB51", "SCUBA", "Stripe", label_of, CLASSES)
    assert {it.key for it in scuba.items} == {f"{n}__0" for n in names.values()}
    conf = albar_bias_set(tmp_path / "out", "HMDB51", "ConflFG", "Stripe", label_of, CLASSES)
    assert len(conf.items) == 8
    for it in conf.items:
        rec = built.manifest["conflfg"][it.key]
        assert (it.label, it.extra["conflict_label"]) == (rec["label"], rec["conflict_label"])
