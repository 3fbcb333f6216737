"""The cost of ALBAR's gradient penalty and of its cost options (issue 13), on CPU.

    python benchmarks/gp_cost.py cost     [--models small3d swin3d_t] [--steps 3] [--threads 1]
    python benchmarks/gp_cost.py cosine   [--models small3d swin3d_t] [--draws 3]

``cost``: each variant in a fresh subprocess (so that peak memory is its own): seconds per training step
(forward + backward + SGD step, after one warm-up step) and the process's peak RSS (``ru_maxrss``; "base" is the
RSS after building the model and the batch), and the ratio of both to plain CE. Variants: plain CE, exact ALBAR,
exact + motion_first, exact + motion_first + checkpoint_static, gp_batch (a quarter of the batch, at least 1),
finite-difference penalty; with ``--compile BACKEND`` also plain CE and the cheaper options with the model under
torch.compile (the exact penalty's pass eager; "1st step s" then includes compiling). ``cosine``: the cosine of
each option's full parameter gradient (all ALBAR terms) to the exact one's, same random draws. Shapes: small3d at
the synthetic benchmark's size (32 x 3 x 8 x 32 x 32), Swin3D-T at 2 x 3 x 16 x 112 x 112 (random init, 8
classes). Paper weights (1, 4, 10), official GP norm. CPU timings on a shared machine are noisy: compare
ratios within one run.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

SHAPES = {"small3d": (32, 3, 8, 32, 32), "swin3d_t": (2, 3, 16, 112, 112)}
WEIGHTS = {"w_adv": 1.0, "w_ent": 4.0, "w_gp": 10.0, "gp_norm": "official"}


def variants(batch: int, compile_backend: str | None = None) -> dict[str, dict]:
    """Variant name -> ALBAR options (None: plain CE); with ``compile_backend``, also the compiled versions of
    plain CE and the cheaper options (option ``compile``: the model under torch.compile, the exact penalty eager)."""
    sub = max(1, batch // 4)
    out = {
        "ce": None,
        "exact": {},
        "exact+motion_first": {"motion_first": True},
        "exact+motion_first+ckpt": {"motion_first": True, "checkpoint_static": True},
        f"gp_batch={sub}/{batch}": {"gp_batch": sub},
        f"gp_batch={sub}/{batch}+motion_first": {"gp_batch": sub, "motion_first": True},
        "finite_difference": {"gp_mode": "finite_difference"},
        "finite_difference forward": {"gp_mode": "finite_difference", "fd_scheme": "forward"},
    }
    if compile_backend:
        for name in ("ce", "exact+motion_first", f"gp_batch={sub}/{batch}+motion_first",
                     "finite_difference forward"):
            out[f"{name} compiled"] = {**(out[name] or {"ce": True}), "compile": compile_backend}
    return out


def _setup(model_name: str, threads: int, seed: int = 0, batch: int | None = None):
    import torch

    from albar.models import build_model

    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    model = build_model(model_name, 8).train()
    g = torch.Generator().manual_seed(seed)
    shape = (batch or SHAPES[model_name][0], *SHAPES[model_name][1:])
    clip = torch.randn(shape, generator=g)
    labels = torch.randint(0, 8, (shape[0],), generator=g)
    return model, clip, labels


def _criterion(options: dict | None):
    from albar.objectives import ALBARLoss

    if options is None or options.get("ce"):
        return ALBARLoss(0, 0, 0)  # plain CE through the same code (same numbers as objective ce)
    return ALBARLoss(WEIGHTS["w_adv"], WEIGHTS["w_ent"], WEIGHTS["w_gp"], gp_norm=WEIGHTS["gp_norm"], **options)


def child(model_name: str, options: dict | None, steps: int, threads: int, batch: int) -> dict:
    """One variant in this process: s/step and peak RSS."""
    import torch

    model, clip, labels = _setup(model_name, threads, batch=batch)
    options = dict(options) if options is not None else None
    backend = options.pop("compile", None) if options else None
    call = torch.compile(model, backend=backend, dynamic=False) if backend else model
    crit = _criterion(options)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    times, compile_s = [], 0.0
    for i in range(steps + 1):
        t0 = time.perf_counter()
        terms = crit(call, clip, labels, generator=torch.Generator().manual_seed(i))
        terms.total.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if i:  # the first step warms up allocator and kernels (and compiles)
            times.append(time.perf_counter() - t0)
        else:
            compile_s = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"s_per_step": sum(times) / len(times), "peak_mb": peak / 1024, "base_mb": base / 1024,
            "first_step_s": compile_s}


def cost(models: list[str], steps: int, threads: int, batch: int | None = None, only: list[str] | None = None,
         compile_backend: str | None = None) -> None:
    for name in models:
        b = batch or SHAPES[name][0]
        shape = (b, *SHAPES[name][1:])
        print(f"\n{name} {shape}, {steps} timed steps, {threads} thread(s), fresh process per variant")
        print(f"{'variant':34s} {'s/step':>8s} {'x CE':>6s} {'peak MB':>8s} {'x CE':>6s} {'over base':>9s} "
              f"{'x CE':>6s} {'1st step s':>10s}")
        ref = None
        for label, options in variants(b, compile_backend).items():
            if only and label not in only:
                continue
            out = subprocess.run([sys.executable, __file__, "_child", name, json.dumps(options), str(steps),
                                  str(threads), str(b)], capture_output=True, text=True)
            if out.returncode != 0:
                print(f"{label:34s} FAILED: {out.stderr.strip().splitlines()[-1:]}")
                continue
            r = json.loads(out.stdout.strip().splitlines()[-1])
            r["extra_mb"] = r["peak_mb"] - r["base_mb"]
            ref = ref or r
            print(f"{label:34s} {r['s_per_step']:8.3f} {r['s_per_step'] / ref['s_per_step']:6.2f} "
                  f"{r['peak_mb']:8.0f} {r['peak_mb'] / ref['peak_mb']:6.2f} {r['extra_mb']:9.0f} "
                  f"{r['extra_mb'] / max(ref['extra_mb'], 1e-9):6.2f} {r['first_step_s']:10.1f}", flush=True)


def cosines(models: list[str], draws: int, threads: int) -> None:
    import torch
    import torch.nn.functional as F

    def grad(model, crit, clip, labels, gen_seed: int) -> torch.Tensor:
        model.zero_grad(set_to_none=True)
        torch.manual_seed(123)  # the same stochastic-depth draws for every variant
        crit(model, clip, labels, generator=torch.Generator().manual_seed(gen_seed)).total.backward()
        return torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]).double()

    for name in models:
        model, clip, labels = _setup(name, threads)
        exact = grad(model, _criterion({}), clip, labels, 0)
        print(f"\n{name} {SHAPES[name]}: cosine of the full ALBAR gradient to the exact penalty's")
        for label, options in variants(SHAPES[name][0]).items():
            if options is None:
                options_list, label = [None], "ce (no static terms)"
            elif "gp_batch" in options:
                options_list = [options] * draws
            else:
                options_list = [options]
            cos = [float(F.cosine_similarity(grad(model, _criterion(o), clip, labels, d), exact, dim=0))
                   for d, o in enumerate(options_list)]
            print(f"  {label:34s} " + " ".join(f"{c:.4f}" for c in cos), flush=True)
        for step in (1e-2, 1e-3):
            for scheme in ("forward", "central"):
                g = grad(model, _criterion({"gp_mode": "finite_difference", "fd_step": step, "fd_scheme": scheme}),
                         clip, labels, 0)
                c = float(F.cosine_similarity(g, exact, dim=0))
                print(f"  {'finite_difference ' + scheme + ' step=' + format(step, 'g'):34s} {c:.4f}")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_child":
        name, options, steps, threads, b = sys.argv[2], json.loads(sys.argv[3]), *map(int, sys.argv[4:7])
        print(json.dumps(child(name, options, steps, threads, b)))
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["cost", "cosine"])
    ap.add_argument("--models", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--draws", type=int, default=3, help="gp_batch draws for the cosine")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=None, help="batch size (default: small3d 32, swin3d_t 2)")
    ap.add_argument("--only", nargs="+", default=None, help="variant names to run (cost; default: all)")
    ap.add_argument("--compile", default=None, metavar="BACKEND",
                    help="also time the compiled variants (cost), e.g. inductor; ratios stay to eager plain CE")
    args = ap.parse_args()
    if args.what == "cost":
        cost(args.models, args.steps, args.threads, args.batch, args.only, args.compile)
    else:
        cosines(args.models, args.draws, args.threads)


if __name__ == "__main__":
    main()
