"""Loading the smollm2-135m preset from its cache (target: under 5 s).

Converts the GGUF first if this machine has no cache yet (timed separately, once), then loads the
preset in a fresh Python process, as a step would: imports included, and the load alone.
Run: .venv/bin/python bench/load.py
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

TARGET_S = 5.0

CHILD = """
import json, time
t0 = time.perf_counter()
from tierctl.lm.models import load_model
t1 = time.perf_counter()
model, tok = load_model("smollm2-135m", device="cpu")
t2 = time.perf_counter()
print(json.dumps({"imports_s": t1 - t0, "load_s": t2 - t1, "total_s": t2 - t0}))
"""


def main() -> None:
    from tierctl.lm.models import convert_gguf, gguf_cache_path, smollm2_gguf_path

    gguf = smollm2_gguf_path()
    cached = (gguf_cache_path(gguf) / "config.json").is_file()
    t = time.perf_counter()
    path = convert_gguf(gguf)
    convert_s = time.perf_counter() - t
    print(f"cache: {path}")
    print(f"GGUF conversion: {'already cached' if cached else f'{convert_s:.1f} s (once per machine)'}")

    runs = []
    for _ in range(3):
        out = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, check=True)
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    best = min(runs, key=lambda r: r["total_s"])
    print(f"cached load, fresh process (best of 3): total {best['total_s']:.2f} s "
          f"(imports {best['imports_s']:.2f} s + load_model {best['load_s']:.2f} s)")
    print(f"ratio to the {TARGET_S:.0f} s target: {best['total_s'] / TARGET_S:.2f}x "
          f"({'ok' if best['total_s'] < TARGET_S else 'MISSED'})")


if __name__ == "__main__":
    main()
