import argparse
import json
import os
from pathlib import Path

from data_fixtures import corrupt, empty, truncate, write_faststart_mp4
from helpers import numbered_frames, write_folder, write_video, write_zip
from PIL import Image

from albar.cli.check_data import add_parser, run
from albar.data.bias_sets import bias_dir


def parse(argv):
    parser = argparse.ArgumentParser(prog="albar")
    add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["check-data", "--no-progress", *map(str, argv)])


def build_tree(root, planted=True):
    """A UCF101 split, an mmaction2 list and an HMDB51 bias root; with ``planted``, one of every problem."""
    videos, lists = root / "UCF-101", root / "ucfTrainTestlist"
    lists.mkdir(parents=True)
    (lists / "classInd.txt").write_text("1 Archery\n2 Fencing\n")
    for cls in ("Archery", "Fencing"):
        (videos / cls).mkdir(parents=True)
        for g in (1, 2):
            write_video(videos / cls / f"v_{cls}_g{g:02d}_c01.avi", numbered_frames(12), "mpeg4")
    train = ["Archery/v_Archery_g01_c01.avi 1", "Fencing/v_Fencing_g01_c01.avi 2"]
    test = ["Archery/v_Archery_g02_c01.avi", "Fencing/v_Fencing_g02_c01.avi"]
    bad: dict[str, str] = {}
    if planted:
        corrupt(videos / "Archery" / "v_Archery_g03_c01.avi")
        empty(videos / "Fencing" / "v_Fencing_g03_c01.avi")
        full = write_faststart_mp4(root / "full.mp4", numbered_frames(24))
        truncate(full, videos / "Fencing" / "v_Fencing_g04_c01.mp4", 0.7)
        train += ["Archery/v_Archery_g03_c01.avi 1", "Fencing/v_Fencing_g03_c01.avi 2"]
        test += ["Fencing/v_Fencing_g04_c01.mp4", "Archery/v_Archery_g09_c01.avi"]  # truncated, missing
        bad.update({"v_Archery_g03_c01.avi": "cannot open video", "v_Fencing_g03_c01.avi": "empty file",
                    "v_Fencing_g04_c01.mp4": "truncated", "v_Archery_g09_c01.avi": "no such file"})
    (lists / "trainlist01.txt").write_text("\n".join(train) + "\n")
    (lists / "testlist01.txt").write_text("\n".join(test) + "\n")
    # an mmaction2 list (0-based) with a frame folder and, planted, a label out of range and a short video
    frames = root / "frames"
    write_folder(frames / "clipA", numbered_frames(6))
    write_video(root / "short.mp4", numbered_frames(3))
    lines = ["frames/clipA 6 0"]
    if planted:
        write_folder(frames / "clipB", numbered_frames(5))
        lines += ["frames/clipB 9 1", "short.mp4 1", "frames/clipA 6 5"]
        bad.update({"clipB": "list says 9 frames, found 5", "short.mp4": "too short: 3 frames",
                    "clipA": "label 5 out of range for 2 classes"})
    (root / "list.txt").write_text("\n".join(lines) + "\n")
    # bias sets of the UCF101 test videos, planted with an unpaired key and a broken still, beside another
    # dataset's sets (a shared root): those are skipped, not reported
    scuba = bias_dir(root / "bias", "UCF101", "SCUBA", "Stripe")
    scufo = bias_dir(root / "bias", "UCF101", "SCUFO", "Stripe")
    other = bias_dir(root / "bias", "HMDB51", "SCUBA", "Stripe")
    for folder in (scuba, scufo, other):
        folder.mkdir(parents=True)
    for stem in ("v_Archery_g02_c01__1", "v_Fencing_g02_c01__1"):
        write_zip(scuba / f"{stem}.zip", numbered_frames(6))
        Image.fromarray(numbered_frames(1)[0]).save(scufo / f"{stem}.jpg")
    (other / "Fence_x_1__1.zip").write_bytes(b"")  # not this dataset's: never probed
    if planted:
        write_zip(scuba / "v_Fencing_g04_c01__1.zip", numbered_frames(6))  # no SCUFO partner
        (scufo / "v_Fencing_g02_c01__1.jpg").write_bytes(b"not a jpeg")
        bad.update({"v_Fencing_g04_c01__1": "no SCUFO partner", "v_Fencing_g02_c01__1.jpg": "cannot decode image"})
    args = ["--ucf101", lists, "--video-root", videos, "--list", root / "list.txt", "--root", root,
            "--bias-root", root / "bias", "--classes", lists / "classInd.txt",
            "--num-frames", 4, "--stride", 2, "--min-frames", 4, "--workers", 2, "--json", root / "report.json"]
    return args, bad


def test_check_data_names_every_planted_problem(tmp_path, capsys):
    args, bad = build_tree(tmp_path)
    assert run(parse(args)) == 1
    out = capsys.readouterr().out
    lines = out.splitlines()
    for name, reason in bad.items():
        assert any(name in line and reason in line for line in lines), (name, reason, out)
    assert "ucf101_split1_test: 4 items, 2 classes" in out
    assert "skipped 1 set(s) of other datasets under the bias root: HMDB51_SCUBA_Stripe" in out
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["ok"] is False and len(report["problems"]) == len(bad)
    assert report["sets"]["ucf101_split1_train"]["class_counts"] == {"Archery": 2, "Fencing": 2}
    kinds = {p["kind"] for p in report["problems"]}
    assert kinds == {"unreadable", "missing", "frames", "pairing", "label"}
    # a label problem in a split file is reported with its line, not raised
    lists = tmp_path / "ucfTrainTestlist"
    (lists / "trainlist01.txt").write_text("Archery/v_Archery_g01_c01.avi 7\n")
    assert run(parse(args)) == 1
    assert "LABEL" in capsys.readouterr().out
    assert "label '7' out of range 1..2" in (tmp_path / "report.json").read_text()


def test_check_data_passes_a_clean_tree(tmp_path, capsys):
    args, bad = build_tree(tmp_path, planted=False)
    assert not bad
    assert run(parse(args)) == 0
    assert "check-data: OK" in capsys.readouterr().out
    assert json.loads((tmp_path / "report.json").read_text())["problems"] == []


def test_check_data_runs_as_a_command(tmp_path):
    """The module entry point, in a fresh process (as ``albar check-data`` will run it)."""
    import subprocess
    import sys

    args, _ = build_tree(tmp_path)
    cmd = [sys.executable, "-m", "albar.cli.check_data", "--no-progress", *map(str, args)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src")})
    assert done.returncode == 1, done.stderr
    assert "v_Fencing_g04_c01.mp4: truncated: stream ended after 1 of 24 declared frames" in done.stdout


def test_check_data_reports_a_wrong_root(tmp_path, capsys):
    bad = tmp_path / "absent"
    assert run(parse(["--bias-root", bad, "--workers", 1])) == 1
    assert f"LAYOUT {bad}: no <DS>_<SCUBA|SCUFO|ConflFG>_<Source> folders" in capsys.readouterr().out
