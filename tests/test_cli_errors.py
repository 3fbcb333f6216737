"""Every documented failure of the `albar` command is a clean exit naming the file or key; bugs keep tracebacks.

Exit 2: the user's input is wrong; exit 1: the run failed while running (see albar.cli's docstring).
"""

import errno
import os
import subprocess
import sys

import pytest
import torch
from helpers import write_config

from albar.cli import _exit_code, _message, main
from albar.training.checkpoint import load_resume_state


def error_of(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.startswith("albar: error: "), err
    return err.removeprefix("albar: error: ").rstrip("\n")


# --- config files ------------------------------------------------------------------------------------------

def test_binary_config_file(tmp_path, capsys):
    path = tmp_path / "model.yaml"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe")  # a PNG renamed .yaml
    assert main(["train", "--config", str(path)]) == 2
    err = error_of(capsys)
    assert str(path) in err and "UTF-8" in err


def test_duplicate_yaml_key_names_key_and_line(tmp_path, capsys):
    path = tmp_path / "cfg.yaml"
    path.write_text("optim:\n  lr: 1.0e-3\n  batch_size: 4\n  lr: 2.0e-3\n")
    assert main(["train", "--config", str(path)]) == 2
    err = error_of(capsys)
    assert str(path) in err and "'lr'" in err and "line 4" in err


BILLION_LAUGHS = "\n".join(
    [f'a: &a [{",".join(["lol"] * 9)}]']
    + [f"{b}: &{b} [{','.join([f'*{a}'] * 9)}]" for a, b in zip("abcdefgh", "bcdefghi")]
) + "\n"


@pytest.mark.parametrize("where", ["file", "override"])
def test_yaml_alias_bomb_is_refused_with_a_short_message(tmp_path, capsys, where):
    assert len(BILLION_LAUGHS.encode()) < 500  # 9^9 = 387 million strings once expanded
    path = tmp_path / "bomb.yaml"
    if where == "file":
        path.write_text(BILLION_LAUGHS)
        args = ["train", "--config", str(path)]
    else:
        args = ["train", "model.kwargs={" + BILLION_LAUGHS.replace("\n", ", ").rstrip(", ") + "}"]
    assert main(args) == 2
    err = error_of(capsys)
    assert len(err) < 500 and "alias" in err
    assert (str(path) if where == "file" else "model.kwargs") in err


def test_many_aliases_are_refused(tmp_path, capsys):
    path = tmp_path / "aliases.yaml"
    path.write_text("x: &x 1\nlog:\n  project: [" + ", ".join(["*x"] * 150) + "]\n")
    assert main(["train", "--config", str(path)]) == 2
    assert "aliases" in error_of(capsys)


@pytest.mark.parametrize("override,key", [
    ("optim.grad_clip=-1", "optim.grad_clip"),
    ("optim.grad_clip=0", "optim.grad_clip"),
    ("optim.lr=.inf", "optim.lr"),
    ("optim.lr=.nan", "optim.lr"),
    ("optim.betas=[0.9, 1.0]", "optim.betas"),
    ("optim.betas=[-0.1, 0.999]", "optim.betas"),
    ("eval.batch_size=-1", "eval.batch_size"),
    ("eval.batch_size=0", "eval.batch_size"),
    ("data.std=[0, 0, 0]", "data.std"),  # torchvision's "std evaluated to zero" at step 1 before
    ("data.mean=[.nan, 0, 0]", "data.mean"),
    ("seed=-1", "seed"),  # numpy's "expected non-negative integer" at build time before
    ("objective.w_gp=.nan", "objective.w_gp"),  # a "non-finite loss" naming no key before
    ("objective.w_ent=-1", "objective.w_ent"),
])
def test_config_values_are_validated(override, key, capsys):
    assert main(["train", override]) == 2
    assert key in error_of(capsys)


# --- the run folder, the model, resuming ------------------------------------------------------------------

def test_out_dir_under_a_file(tiny_benchmark, tmp_path, capsys):
    blocker = tmp_path / "notes.txt"
    blocker.write_text("not a folder")
    cfg = write_config(tmp_path, tiny_benchmark, "run", out_dir=str(blocker / "run"))
    assert main(["train", "--config", str(cfg), "--no-progress"]) == 2
    assert str(blocker) in error_of(capsys)


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores file permissions")
def test_out_dir_without_permission(tiny_benchmark, tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    cfg = write_config(tmp_path, tiny_benchmark, "run", out_dir=str(locked / "run"))
    assert main(["train", "--config", str(cfg), "--no-progress"]) == 2
    assert str(locked / "run") in error_of(capsys)


def test_unknown_model_kwargs_key(tiny_benchmark, tmp_path, capsys):
    cfg = write_config(tmp_path, tiny_benchmark, "run")
    assert main(["train", "--config", str(cfg), "--no-progress", "model.kwargs.widht=[8, 8, 8, 8]"]) == 2
    err = error_of(capsys)
    assert "model.kwargs.widht" in err and "widths" in err  # the key, and the accepted ones


def test_model_kwargs_the_architecture_sets_itself_or_of_a_wrong_type():
    from albar.models import build_model

    with pytest.raises(ValueError, match=r"^model\.kwargs\.layers: set by the r3d_18 architecture itself"):
        build_model("r3d_18", 4, layers=[1, 1, 1, 1])
    with pytest.raises(ValueError, match=r"^model\.kwargs\.widths: rejected by small3d"):
        build_model("small3d", 4, widths=8)


def test_resume_from_a_missing_file(tmp_path, capsys):
    assert main(["train", "--resume", str(tmp_path / "last.pt"), f"out_dir={tmp_path / 'run'}"]) == 2
    assert str(tmp_path / "last.pt") in error_of(capsys)
    assert not (tmp_path / "run").exists()  # refused before any work


@pytest.fixture(scope="module")
def finished_run(tiny_benchmark, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("finished")
    cfg = write_config(tmp, tiny_benchmark, "run", **{"optim.epochs": 1, "checkpoint.every_steps": 0})
    assert main(["train", "--config", str(cfg), "--no-progress"]) == 0
    return cfg, tmp / "run"


@pytest.mark.parametrize("what", ["best.pt", "foreign"])
def test_resume_from_a_checkpoint_that_cannot_resume(finished_run, tmp_path, capsys, what):
    cfg, run = finished_run
    if what == "best.pt":
        ckpt = run / "best.pt"
    else:
        ckpt = tmp_path / "other.pt"
        torch.save({"state_dict": {"w": torch.zeros(2)}, "epoch": 3}, ckpt)  # another program's checkpoint
    with pytest.raises(ValueError) as expected:
        load_resume_state(ckpt)
    out = tmp_path / "resumed"
    assert main(["train", "--config", str(cfg), "--no-progress", "--resume", str(ckpt), f"out_dir={out}"]) == 2
    err = error_of(capsys)
    assert err == str(expected.value)  # the whole message, to its last character
    assert str(ckpt) in err


def test_full_disk_while_saving_is_a_runtime_failure_naming_the_file(tiny_benchmark, tmp_path):
    """A file-size limit makes the checkpoint write fail the way a full disk does (EFBIG instead of ENOSPC)."""
    cfg = write_config(tmp_path, tiny_benchmark, "run", **{"optim.epochs": 1})
    code = ("import resource, signal, sys; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
            "resource.setrlimit(resource.RLIMIT_FSIZE, (64_000, 64_000)); from albar.cli import main; "
            f"sys.exit(main(['train', '--config', {str(cfg)!r}, '--no-progress']))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith("albar: error: ") and str(tmp_path / "run") in line and ".pt" in line
    assert "too large" in line.lower()


# --- the error rule ----------------------------------------------------------------------------------------

def test_key_errors_lose_their_repr_quotes_but_not_the_closing_quote():
    import numpy as np

    from albar.evaluation.metrics import Predictions, contrasted_correct

    def preds(keys):
        return Predictions(keys=keys, labels=np.zeros(len(keys)), scores=np.zeros((len(keys), 2)))

    with pytest.raises(KeyError) as info:
        contrasted_correct(preds(["v1__1"]), preds(["v2"]))
    assert str(info.value).startswith("\"")  # KeyError's repr quoting, which the CLI stripped with a quote too many
    assert _exit_code(info.value) == 2
    assert _message(info.value) == "1 SCUBA keys have no SCUFO partner, e.g. 'v1__1'"


def test_errors_from_inside_libraries_and_lookups_keep_their_traceback():
    from albar.config import TrainConfig
    from albar.training.checkpoint import set_rng_state

    with pytest.raises(ValueError) as torch_err:  # torch's own ValueError: a bug in the caller
        torch.nn.functional.cross_entropy(torch.zeros(2, 3), torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError) as pydantic_err:
        TrainConfig.model_validate({"optim": {"lr": "fast"}})
    with pytest.raises(KeyError) as lookup_err:  # a dict lookup in albar's code, not a raise
        set_rng_state({})
    assert _exit_code(torch_err.value) is None
    assert _exit_code(pydantic_err.value) is None
    assert _exit_code(lookup_err.value) is None


def test_os_errors_naming_a_file(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(OSError) as under_file:
        (tmp_path / "file" / "x.txt").write_text("")  # the user's path: exit 2
    assert _exit_code(under_file.value) == 2
    assert _message(under_file.value) == f"{tmp_path / 'file' / 'x.txt'}: Not a directory"
    full = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/data/run/last.pt")
    assert _exit_code(full) == 1 and _message(full) == f"/data/run/last.pt: {os.strerror(errno.ENOSPC)}"
    assert _exit_code(OSError(errno.EINVAL, "no file named")) is None  # neither albar's nor about a file


# --- the command itself ------------------------------------------------------------------------------------

def test_version(capsys):
    import albar

    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"albar {albar.__version__}"


def test_the_parser_does_not_import_torch():
    code = ("import sys, albar, albar.cli; albar.cli.build_parser(full=False); "
            "print(sorted(m for m in ('torch', 'numpy', 'av', 'torchvision') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_lazy_package_attributes_still_work():
    import albar

    assert albar.ALBARLoss.__name__ == "ALBARLoss" and callable(albar.albar_loss) and callable(albar.static_clip)
    with pytest.raises(AttributeError):
        albar.no_such_thing  # noqa: B018
