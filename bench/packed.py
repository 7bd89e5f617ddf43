"""Running from the packed form: weight memory, peak RSS, decode and prefill speed, packed vs dense.

Model: smollm2-135m pruned once to 35/45/20 (the seed schedule's last composition) by a one-iteration
campaign with 0 epochs, exported packed; the campaign and the export are made once under --work and
reused. Each measurement runs in a fresh process (so peak RSS is the model's own), rounds alternate
dense / packed and which goes first, so a shared machine's load hits both alike.

- dense: the `--format dense` export through plain transformers; packed: load_packed(materialize=False);
- weight bytes held: the prunable matrices' tensors (nn.Linear weights, or TieredLinear's packed buffers),
  and every parameter and buffer of the model;
- peak RSS of the process (ru_maxrss) after load, decode and prefill;
- decode tokens/s: batch 1, one new token at a time with the KV cache, after a chat-template prompt;
- prefill tokens/s: one forward of 1 x 512 tokens;
- greedy generation of 32 tokens must be identical token for token (checked, printed);
- the 210 prunable matrices alone, one thread, CPU time (robust to a shared machine's load);
- the alternatives for one matrix (mlp.up_proj of layer 0, 1536 x 576): torch dense, CSR, BSR (b=16),
  TieredLinear's torch strips and its numba kernel, microseconds per batch-1 call and bytes held.
Run: .venv/bin/python bench/packed.py [--rounds 2] [--decode 32] [--work DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

SCHEDULE = "iteration,dense,mid_2_4,topk,epochs\n1,0.35,0.45,0.20,0\n"


def prepare(work: Path) -> Path:
    """Packed and dense exports of smollm2-135m at 35/45/20 (made once: a campaign with one 0-epoch iteration)."""
    out = work / "packed"
    if (out / "tierctl-packed.safetensors").is_file() and (work / "dense" / "model.safetensors").is_file():
        return out
    work.mkdir(parents=True, exist_ok=True)
    camp = work / "smol-35-45-20"
    tierctl = [sys.executable, "-m", "tierctl"]
    if not (camp / "campaign.toml").is_file():
        (work / "schedule.csv").write_text(SCHEDULE)
        subprocess.run([*tierctl, "init", camp.name, "--dir", str(work), "--schedule", str(work / "schedule.csv"),
                        "--device", "cpu", "--nsamples", "8", "--seqlen", "256"], check=True)
    subprocess.run([*tierctl, "run", str(camp), "--all", "--json"], check=True, stdout=subprocess.DEVNULL)
    for fmt, dest in (("packed", out), ("dense", work / "dense")):
        if not dest.exists():
            subprocess.run([*tierctl, "export", str(camp), "--out", str(dest), "--format", fmt], check=True)
    return out


def weight_bytes(model) -> tuple[int, int]:
    """(bytes of the prunable matrices as held, bytes of every parameter and buffer)."""
    from tierctl.export import TieredLinear
    from tierctl.lm.models import decoder_layers

    layers, _ = decoder_layers(model)
    prunable = 0
    for m in layers.modules():
        if isinstance(m, TieredLinear):
            prunable += m.weight_bytes()
        elif type(m).__name__ == "Linear":
            prunable += m.weight.numel() * m.weight.element_size()
    seen, total = set(), 0
    for t in [*model.parameters(), *model.buffers()]:
        if t.data_ptr() not in seen:
            seen.add(t.data_ptr())
            total += t.numel() * t.element_size()
    return prunable, total


def worker(kind: str, export: Path, decode: int) -> dict:
    """One measurement in this (fresh) process."""
    import resource

    import torch

    from tierctl.export import load_packed

    torch.manual_seed(0)
    if kind == "dense":  # the dense export, as plain transformers loads it
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(export.parent / "dense", dtype=torch.float32).eval()
    else:
        model = load_packed(export, materialize=False)
    prunable, total = weight_bytes(model)
    from transformers import AutoTokenizer

    from tierctl.export.sample import prompt_ids

    tokenizer = AutoTokenizer.from_pretrained(export)
    prompt = prompt_ids(tokenizer, "What does a Python decorator do?")
    import inspect

    new_api = "cache" in inspect.signature(model.forward).parameters  # transformers 5 renamed past_key_values

    def step(ids: torch.Tensor, cache: object) -> tuple[object, torch.Tensor]:
        kw = {} if cache is None else {"cache" if new_api else "past_key_values": cache}
        out = model(ids, use_cache=True, **kw)
        return (out.cache if new_api else out.past_key_values), out.logits[:, -1:].argmax(-1)

    with torch.no_grad():
        model(prompt[:, :1])  # warm-up (numba loads its compiled kernels)
        model(prompt[:, :8])
        t0 = time.perf_counter()
        cache, nxt = step(prompt, None)
        tokens = [int(nxt)]
        t1 = time.perf_counter()
        for _ in range(decode - 1):
            cache, nxt = step(nxt, cache)
            tokens.append(int(nxt))
        t2 = time.perf_counter()
        long = torch.randint(100, 40000, (1, 512))
        t3 = time.perf_counter()
        model(long, use_cache=False)
        t4 = time.perf_counter()
    return {"kind": kind, "prunable_bytes": prunable, "total_bytes": total, "tokens": tokens,
            "text": tokenizer.decode(tokens),
            "decode_tok_s": (decode - 1) / (t2 - t1), "prefill_tok_s": 512 / (t4 - t3), "first_s": t1 - t0,
            "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}


def alternatives(export: Path, calls: int = 50) -> list[tuple[str, float, int]]:
    """(name, microseconds per batch-1 call, bytes held) for one prunable matrix."""
    import torch

    from tierctl.export.packed_file import read_checkpoint
    from tierctl.export.tiered_linear import TieredLinear

    ckpt = read_checkpoint(export / "tierctl-packed.safetensors")
    key = next(k for k in ckpt.matrices if k.endswith("mlp.up_proj.weight"))
    m = ckpt.matrices[key]
    w = m.unpack()
    x = torch.randn(1, w.shape[1])
    csr = w.to_sparse_csr()
    bsr = w.to_sparse_bsr((16, 16))

    def nbytes(*ts: torch.Tensor) -> int:
        return sum(t.numel() * t.element_size() for t in ts)

    cases = [
        ("dense F.linear", lambda: torch.nn.functional.linear(x, w), nbytes(w)),
        ("torch CSR (int64 indices)", lambda: (csr @ x.T).T,
         nbytes(csr.values(), csr.col_indices(), csr.crow_indices())),
        ("torch BSR 16x16", lambda: (bsr @ x.T).T, nbytes(bsr.values(), bsr.col_indices(), bsr.crow_indices())),
        ("TieredLinear torch strips", TieredLinear(m, use_kernel=False), None),
        ("TieredLinear numba kernel", TieredLinear(m, use_kernel=True), None),
    ]
    out = []
    with torch.no_grad():
        for name, fn, held in cases:
            if isinstance(fn, TieredLinear):
                layer, held = fn, fn.weight_bytes()
                if name.endswith("kernel") and not layer.use_kernel:
                    continue

                def fn(layer=layer):
                    return layer(x)
            ref = torch.nn.functional.linear(x, w)
            torch.testing.assert_close(fn(), ref, rtol=1e-4, atol=1e-4)
            best = float("inf")
            for _ in range(3):
                t0 = time.perf_counter()
                for _ in range(calls):
                    fn()
                best = min(best, (time.perf_counter() - t0) / calls)
            out.append((name, best * 1e6, held))
    return out


def matrices_cpu(export: Path, rounds: int = 5) -> tuple[float, float]:
    """(dense, packed) seconds of CPU, one thread, for one batch-1 product with each of the 210 prunable
    matrices: the kernel against F.linear without the rest of the model, and robust to a shared machine's
    load (CPU time, not wall time; the best of `rounds`, alternating)."""
    import torch

    from tierctl.export import kernels
    from tierctl.export.packed_file import read_checkpoint
    from tierctl.export.tiered_linear import TieredLinear

    torch.set_num_threads(1)
    kernels.PARALLEL_MIN_BLOCKS = 1 << 62  # the serial kernel
    ckpt = read_checkpoint(export / "tierctl-packed.safetensors")
    mats = [(TieredLinear(m), m.unpack(), torch.randn(1, m.shape[1])) for m in ckpt.matrices.values()]

    def cpu(fn) -> float:
        t0 = time.process_time()
        fn()
        return time.process_time() - t0

    best = [float("inf"), float("inf")]
    with torch.no_grad():
        for layer, w, x in mats:
            torch.testing.assert_close(layer(x), torch.nn.functional.linear(x, w), rtol=1e-4, atol=1e-4)
        for _ in range(rounds):
            best[0] = min(best[0], cpu(lambda: [torch.nn.functional.linear(x, w) for _, w, x in mats]))
            best[1] = min(best[1], cpu(lambda: [layer(x) for layer, _, x in mats]))
    return best[0], best[1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--decode", type=int, default=32)
    p.add_argument("--work", type=Path, default=Path(os.environ.get("TIERCTL_CACHE", Path.home() / ".cache/tierctl"))
                   / "bench-packed")
    p.add_argument("--worker", choices=("dense", "packed", "matrices"), help=argparse.SUPPRESS)
    p.add_argument("--export", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker == "matrices":
        print(json.dumps(matrices_cpu(args.export)))
        return
    if args.worker:
        print(json.dumps(worker(args.worker, args.export, args.decode)))
        return

    export = prepare(args.work)
    runs: dict[str, list[dict]] = {"dense": [], "packed": []}
    for r in range(args.rounds):
        for kind in (("dense", "packed") if r % 2 == 0 else ("packed", "dense")):
            proc = subprocess.run([sys.executable, __file__, "--worker", kind, "--export", str(export),
                                   "--decode", str(args.decode)], check=True, capture_output=True, text=True)
            runs[kind].append(json.loads(proc.stdout.strip().splitlines()[-1]))
    d, k = runs["dense"][0], runs["packed"][0]
    same = all(run["tokens"] == d["tokens"] for run in runs["dense"] + runs["packed"])

    def mean(kind: str, key: str) -> float:
        return statistics.mean(run[key] for run in runs[kind])

    import numba

    print(f"smollm2-135m at 35/45/20, float32, {args.rounds} rounds alternating (load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs; numba {numba.__version__}, threading layer "
          f"{numba.config.THREADING_LAYER})")
    print(f"greedy {args.decode} tokens identical, dense vs packed: {same}: {d['text']!r}")
    rows = [
        ("prunable weight bytes", d["prunable_bytes"], k["prunable_bytes"]),
        ("all parameters + buffers", d["total_bytes"], k["total_bytes"]),
        ("peak RSS", mean("dense", "peak_rss"), mean("packed", "peak_rss")),
        ("decode tok/s (batch 1)", mean("dense", "decode_tok_s"), mean("packed", "decode_tok_s")),
        ("prefill tok/s (1 x 512)", mean("dense", "prefill_tok_s"), mean("packed", "prefill_tok_s")),
    ]
    print(f"{'':28}{'dense':>16}{'packed':>16}{'packed/dense':>14}")
    for name, a, b in rows:
        print(f"{name:28}{a:16,.1f}{b:16,.1f}{b / a:13.3f}x")
    proc = subprocess.run([sys.executable, __file__, "--worker", "matrices", "--export", str(export)], check=True,
                          capture_output=True, text=True)
    dense_cpu, packed_cpu = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"\n210 prunable matrices, one batch-1 product each, 1 thread, CPU time: dense F.linear "
          f"{dense_cpu * 1e3:.1f} ms, packed kernel {packed_cpu * 1e3:.1f} ms ({packed_cpu / dense_cpu:.3f}x)")
    print("\none matrix (layer 0 mlp.up_proj, 1536 x 576), batch-1 call:")
    for name, us, held in alternatives(export):
        print(f"  {name:30}{us:10.1f} us   {held / 1e6:8.3f} MB held")


if __name__ == "__main__":
    main()
