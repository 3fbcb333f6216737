"""The official ALBAR training step, re-created beside ours and timed in the same process (issue 13, item 4).

Source read for the re-creation (GitHub UCF-CRCV/ALBAR, commit c6751fa; re-written here, nothing copied):
- ``train.py``, ``Trainer._train_epoch`` (the body of its batch loop) and ``setup_training`` (AdamW, CE);
- ``entropy_loss.py``, ``entropy_loss`` (softmax, then log) and ``compute_gradient_penalty`` (autograd.grad of the
  logits with a ones ``grad_outputs``, ``create_graph=True``; sqrt(sum g^2 over dims 1, 2, 3 + 1e-12), mean);
- ``model_loaders.py``, ``load_model`` (torchvision ``swin3d_t``, head replaced by Linear(768, num_classes));
- ``params_debias.py`` (batch 6, AdamW lr 1e-5, weight decay 0.05, weights 1 / 1 / 4.25 / 10, static frame 16
  of 32); ``multi_dataset_dl.py``, ``VideoDataset.process_data`` (the static clip is made in the loader: one
  frame tiled over time, (T, C, H, W) like the motion clip).

What one official step does, and what this re-creation does the same way:
- both clips arrive (B, T, C, H, W) and are permuted to (B, C, T, H, W) views (not made contiguous);
- ``optimizer.zero_grad()``; motion forward; CE;
- the static clip gets ``requires_grad``; static forward; gradient penalty (the norm is
  ``albar.objectives.gradient_penalty(..., norm="official")``, the same formula); entropy as softmax then log;
  static CE; loss = CE - 1 * static CE + 4.25 * entropy + 10 * GP; ``backward`` (accelerate's, which is a plain
  backward without mixed precision); ``optimizer.step()``;
- host syncs every step as its logging does: ``loss.item()``, the motion argmax ``.cpu()``, ``labels.cpu()``;
- fp32, no autocast (``Accelerator()`` without mixed precision), TF32 as torch's defaults: off for matmul
  (``torch.set_float32_matmul_precision("highest")``), on for cuDNN convolutions;
- each batch is copied from (unpinned) host memory to the device: two clips per sample there.
Ours is albar's training step as ``albar.training.trainer`` runs it, under bf16 autocast (and once more in fp32,
to separate what the precision buys from what the loop does): ``ALBARLoss`` (the static clip cut on the device
from the motion clip, the same objective with w_ent = 4.25 here so the losses can be compared),
a finiteness check, backward, the logged scalars (one ``.item()`` per term), the accuracy count, the gradient-norm
check, AdamW, ``zero_grad(set_to_none=True)``; one clip per sample copied to the device. Plain CE is the same step
with all static weights 0. Every loop starts from the same initial weights; the models train (stochastic depth on).

Before timing, both losses are computed on the same weights and batch in fp32 with stochastic depth off: the
re-creation must give our objective's value (it prints the relative difference).

One command, CPU or GPU (defaults follow the device):
    python benchmarks/official_step.py                  # GPU: 32 x 224, batch 6 and 8; CPU: 16 x 112, batch 2
    python benchmarks/official_step.py --device cpu --threads 1 --steps 5   # a shared CPU: one thread each
    python benchmarks/official_step.py --compile inductor --warmup 3   # also our loops compiled
Prints s/step, clips/s and peak memory (torch.cuda.max_memory_allocated; n/a on CPU) per loop and batch, and
each loop's clips/s relative to the official one and its step time relative to (eager) plain CE. ``--json PATH``
saves them. Besides the exact objective, our loops include the cost options of issue 13: ``motion_first`` (exact)
and the recommended cheaper penalty (``gp_batch`` B/4 with ``motion_first``), and with ``--compile`` plain CE and
that option with the first-order passes compiled (at the largest batch).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from albar.models import build_model
from albar.objectives import ALBARLoss, gradient_penalty
from albar.utils import atomic_write_text

NUM_CLASSES = 51  # HMDB51, as params_debias.py
W_ADV, W_ENT, W_GP = 1.0, 4.25, 10.0  # params_debias.py: spatial_weight, entropy_weight, gradpen_weight


def official_model(num_classes: int) -> nn.Module:
    """``load_model``: torchvision's swin3d_t with a new Linear(768, num_classes) head (random weights here)."""
    from torchvision.models.video import swin3d_t

    model = swin3d_t(weights=None)
    model.head = nn.Linear(768, num_classes)
    return model


def official_entropy(logits: Tensor) -> Tensor:
    """The official negative entropy: probabilities first, then their log (NaN once one underflows)."""
    p = F.softmax(logits, dim=1)
    return (p * torch.log(p)).sum(dim=1).mean()


def official_loss(model: nn.Module, motion_btchw: Tensor, static_btchw: Tensor,
                  labels: Tensor) -> tuple[Tensor, Tensor]:
    """The official objective on one batch: (total loss, motion logits). Inputs as the loader gives them."""
    motion = motion_btchw.permute(0, 2, 1, 3, 4)
    static = static_btchw.permute(0, 2, 1, 3, 4)
    logits = model(motion)
    ce = F.cross_entropy(logits, labels)
    static.requires_grad_(True)
    static_logits = model(static)
    gp = gradient_penalty(static_logits, static, norm="official")
    static.requires_grad_(False)
    ent = official_entropy(static_logits)
    static_ce = F.cross_entropy(static_logits, labels)
    return 1.0 * ce - W_ADV * static_ce + W_ENT * ent + W_GP * gp, logits


class Loop:
    """One training loop's step: ``step(batch)`` runs it, host syncs included."""

    def __init__(self, name: str, model: nn.Module, device: torch.device) -> None:
        self.name, self.model, self.device = name, model.to(device).train(), device

    def step(self, batch: dict[str, Tensor]) -> None:
        raise NotImplementedError(f"{type(self).__name__} must implement step(batch)")


class Official(Loop):
    def __init__(self, model: nn.Module, device: torch.device) -> None:
        super().__init__("official (fp32)", model, device)
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=1e-5, weight_decay=0.05)
        self.seen: list = []

    def step(self, batch: dict[str, Tensor]) -> None:
        motion = batch["motion_btchw"].to(self.device)
        static = batch["static_btchw"].to(self.device)
        labels = batch["labels"].to(self.device)
        self.seen.extend(labels.cpu())
        self.opt.zero_grad()
        loss, logits = official_loss(self.model, motion, static, labels)
        loss.backward()
        self.opt.step()
        self.seen.append(loss.item())
        self.seen.extend(torch.max(logits, dim=1).indices.cpu())


class Ours(Loop):
    def __init__(self, name: str, model: nn.Module, device: torch.device, criterion: ALBARLoss,
                 bf16: bool = True, compile_backend: str | None = None) -> None:
        super().__init__(name, model, device)
        self.criterion, self.bf16 = criterion, bf16
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=1e-5, weight_decay=0.05)
        # as compile.enabled does: the step calls the compiled module, the exact penalty's pass runs it eager
        self.call = torch.compile(self.model, backend=compile_backend, dynamic=False) if compile_backend else self.model
        self.sums: dict[str, float] = {}

    def step(self, batch: dict[str, Tensor]) -> None:
        clip = batch["clip"].to(self.device, non_blocking=True)
        labels = batch["labels"].to(self.device, non_blocking=True)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            terms = self.criterion(self.call, clip, labels)
        if not torch.isfinite(terms.total):
            raise FloatingPointError(f"{self.name}: non-finite loss {terms.scalars()}")
        terms.total.backward()
        for k, v in terms.scalars().items():
            self.sums[k] = self.sums.get(k, 0.0) + v
        self.sums["correct"] = self.sums.get("correct", 0) + int((terms.logits.argmax(1) == labels).sum())
        norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), float("inf"))
        if not torch.isfinite(norm):
            raise FloatingPointError(f"{self.name}: non-finite gradient norm")
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)


def make_batch(b: int, t: int, size: int, seed: int) -> dict[str, Tensor]:
    """One host batch in both loaders' layouts: ours (B, C, T, H, W); the official one (B, T, C, H, W) plus its
    static clip, frame T // 2 tiled (``frame_choice = 16`` of 32), made in its loader."""
    g = torch.Generator().manual_seed(seed)
    clip = torch.randn(b, 3, t, size, size, generator=g)
    motion_btchw = clip.permute(0, 2, 1, 3, 4).contiguous()
    static_btchw = motion_btchw[:, t // 2: t // 2 + 1].repeat(1, t, 1, 1, 1)
    labels = torch.randint(0, NUM_CLASSES, (b,), generator=g)
    return {"clip": clip, "labels": labels, "motion_btchw": motion_btchw, "static_btchw": static_btchw}


def check_same_objective(device: torch.device, t: int, size: int) -> float:
    """Relative difference between the official loss and ours (fp32, same weights and batch, eval mode)."""
    torch.manual_seed(0)
    model = official_model(NUM_CLASSES).to(device).eval()
    batch = {k: v.to(device) for k, v in make_batch(2, t, size, seed=1).items()}
    theirs, _ = official_loss(model, batch["motion_btchw"], batch["static_btchw"], batch["labels"])
    ours = ALBARLoss(W_ADV, W_ENT, W_GP, frame="middle", gp_norm="official")(model, batch["clip"], batch["labels"])
    a, b = theirs.item(), ours.total.item()
    diff = abs(a - b) / max(abs(b), 1e-12)
    print(f"same objective: official {a:.6f}, ours {b:.6f} (fp32, eval mode): "
          f"relative difference {diff:.2e}", flush=True)
    del model
    return diff


def time_loops(makers: dict[str, Callable[[], Loop]], batch: dict[str, Tensor], steps: int, warmup: int,
               device: torch.device) -> dict[str, dict[str, float | str]]:
    """Median seconds per step (and, on CPU, CPU seconds per step) of each loop on ``batch``.

    GPU: one loop after the other, each alone on the card, so its peak memory is its own. CPU: the loops built
    once and stepped in turn, round by round, so that other work on a shared machine slows them alike.
    """
    cuda = device.type == "cuda"
    out: dict[str, dict[str, float | str]] = {}
    if cuda:
        for name, make in makers.items():
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
            loop = None
            try:
                loop = make()
                times = []
                for i in range(warmup + steps):
                    torch.cuda.synchronize()
                    t0 = time.perf_counter()
                    loop.step(batch)
                    torch.cuda.synchronize()
                    if i >= warmup:
                        times.append(time.perf_counter() - t0)
                out[name] = {"s_per_step": statistics.median(times),
                             "peak_gib": torch.cuda.max_memory_allocated() / 2**30}
            except torch.OutOfMemoryError:
                out[name] = {"error": "out of memory"}
            finally:
                del loop
                torch.cuda.empty_cache()
            print(f"  {name}, batch {len(batch['labels'])}: {out[name]}", flush=True)
        return out
    loops = {name: make() for name, make in makers.items()}
    wall: dict[str, list[float]] = {name: [] for name in loops}
    cpu: dict[str, list[float]] = {name: [] for name in loops}
    for i in range(warmup + steps):
        for name, loop in loops.items():
            t0, c0 = time.perf_counter(), time.process_time()
            loop.step(batch)
            if i >= warmup:
                wall[name].append(time.perf_counter() - t0)
                cpu[name].append(time.process_time() - c0)
        print(f"  round {i + 1}/{warmup + steps}: " + ", ".join(f"{n} {wall[n][-1]:.2f} s" for n in loops
                                                               if wall[n]), flush=True)
    for name in loops:
        out[name] = {"s_per_step": statistics.median(wall[name]), "cpu_s_per_step": statistics.median(cpu[name]),
                     "min_s_per_step": min(wall[name]), "peak_gib": float("nan")}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--frames", type=int, help="default 32 on GPU, 16 on CPU")
    ap.add_argument("--size", type=int, help="default 224 on GPU, 112 on CPU")
    ap.add_argument("--batches", help="comma-separated; default 6,8 on GPU, 2 on CPU")
    ap.add_argument("--steps", type=int, help="timed steps per loop and batch; default 10 on GPU, 3 on CPU")
    ap.add_argument("--warmup", type=int, help="untimed steps first; default 3 on GPU, 1 on CPU")
    ap.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    ap.add_argument("--no-fp32", action="store_true", help="leave out our loop in fp32")
    ap.add_argument("--json", type=Path, help="also write the numbers here")
    ap.add_argument("--compile", metavar="BACKEND", help="also our loops with the model under torch.compile "
                    "(e.g. inductor; the first steps compile: give --warmup >= 2)")
    args = ap.parse_args()
    device = torch.device(args.device)
    gpu = device.type == "cuda"
    t = args.frames or (32 if gpu else 16)
    size = args.size or (224 if gpu else 112)
    batches = [int(b) for b in (args.batches or ("6,8" if gpu else "2")).split(",")]
    steps, warmup = args.steps or (10 if gpu else 3), args.warmup if args.warmup is not None else (3 if gpu else 1)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.set_float32_matmul_precision("highest")  # torch's default: no TF32 in fp32 matmuls
    cpu = f"{platform.processor() or 'CPU'}, {torch.get_num_threads()} threads"
    what = torch.cuda.get_device_name(device) if gpu else cpu
    print(f"{what}; torch {torch.__version__}; Swin3D-T, {t} x {size} x {size}, batches {batches}, "
          f"median of {steps} steps after {warmup}; matmul TF32 {torch.backends.cuda.matmul.allow_tf32}, "
          f"cuDNN TF32 {torch.backends.cudnn.allow_tf32}", flush=True)
    diff = check_same_objective(device, t, min(size, 112) if gpu else size)

    torch.manual_seed(0)
    init = official_model(NUM_CLASSES).state_dict()

    def fresh(builder: Callable[[], nn.Module]) -> nn.Module:
        model = builder()
        model.load_state_dict(init)
        return model

    def ours(name: str, weights: tuple[float, float, float], bf16: bool = True, compiled: bool = False,
             **options: object) -> Callable[[], Loop]:
        return lambda: Ours(name, fresh(lambda: build_model("swin3d_t", NUM_CLASSES)), device,
                            ALBARLoss(*weights, frame="middle", gp_norm="official", **options), bf16,
                            args.compile if compiled else None)

    def loops_for(b: int) -> dict[str, Callable[[], Loop]]:
        albar, sub = (W_ADV, W_ENT, W_GP), max(1, b // 4)
        loops: dict[str, Callable[[], Loop]] = {
            "official (fp32)": lambda: Official(fresh(lambda: official_model(NUM_CLASSES)), device),
            "ours ALBAR (bf16)": ours("ours ALBAR (bf16)", albar),
            "ours plain CE (bf16)": ours("ours plain CE (bf16)", (0, 0, 0)),
            # the cost options (issue 13): exact and leaner; the recommended cheaper penalty
            "ours ALBAR motion_first (bf16)": ours("ours ALBAR motion_first (bf16)", albar, motion_first=True),
            f"ours gp_batch {sub}/{b} + mf (bf16)": ours(f"ours gp_batch {sub}/{b} + mf (bf16)", albar,
                                                        motion_first=True, gp_batch=sub),
        }
        if args.compile and b == max(batches):  # the first-order passes compiled, as compile.enabled does (at
            # the largest batch only: compiling Swin3D-T takes minutes)
            loops[f"ours plain CE (bf16, {args.compile})"] = ours("ours plain CE (bf16, compiled)", (0, 0, 0),
                                                                   compiled=True)
            loops[f"ours gp_batch {sub}/{b} + mf (bf16, {args.compile})"] = ours(
                "ours gp_batch + mf (bf16, compiled)", albar, compiled=True, motion_first=True, gp_batch=sub)
        if not args.no_fp32:  # what the precision alone buys: our loop in the official precision
            loops["ours ALBAR (fp32)"] = ours("ours ALBAR (fp32)", albar, bf16=False)
        return loops

    rows: list[dict] = []
    for b in batches:
        measured = time_loops(loops_for(b), make_batch(b, t, size, seed=b), steps, warmup, device)
        for name, r in measured.items():
            if "s_per_step" in r:
                r["clips_per_s"] = b / r["s_per_step"]
            rows.append({"loop": name, "batch": b, **r})

    print(f"\n{'loop':40s} {'batch':>5s} {'s/step':>8s} {'clips/s':>8s} {'peak GiB':>9s} {'x official':>11s} "
          f"{'x CE step':>10s}" + ("" if gpu else f" {'CPU s/step':>11s} {'best s/step':>12s} {'best x off.':>12s}"))
    for r in rows:
        if "error" in r:
            print(f"{r['loop']:40s} {r['batch']:5d} {r['error']}")
            continue
        same = {x["loop"]: x for x in rows if x["batch"] == r["batch"] and "error" not in x}
        off = same.get("official (fp32)")
        ce = same.get("ours plain CE (bf16)")
        rel = f"{r['clips_per_s'] / off['clips_per_s']:.2f}x" if off else "-"
        vs_ce = f"{r['s_per_step'] / ce['s_per_step']:.2f}x" if ce else "-"
        best_rel = f"{off['min_s_per_step'] / r['min_s_per_step']:.2f}x" if off and "min_s_per_step" in r else "-"
        mem = "n/a" if r["peak_gib"] != r["peak_gib"] else f"{r['peak_gib']:.1f}"
        print(f"{r['loop']:40s} {r['batch']:5d} {r['s_per_step']:8.3f} {r['clips_per_s']:8.2f} {mem:>9s} "
              f"{rel:>11s} {vs_ce:>10s}" + ("" if gpu else f" {r['cpu_s_per_step']:11.2f} {r['min_s_per_step']:12.3f} "
                                              f"{best_rel:>12s}"))
    if args.json:
        atomic_write_text(args.json, json.dumps({
            "device": what, "torch": torch.__version__, "frames": t, "size": size, "steps": steps, "warmup": warmup,
            "objective_relative_difference": diff, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
