"""The corpus of bad inputs: every one is refused through the real CLI with exit 2, exactly one line on
stderr naming what is wrong, no traceback, and the campaign's files unchanged (a hash of the tree).

Cases are grouped by what is bad: campaign.toml, schedule.csv, command-line flags, damaged campaign
files, tier-map files, and what only the check step can see (model, device, text windows). Most run
in-process through Typer's CliRunner, which goes through the same root command class (tierctl/cli_shell.py)
as the installed script; a sample runs as real subprocesses (tests at the end).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file
from typer.testing import CliRunner

from tests.campaign.step_files import iteration_done
from tests.helpers import SPEC_SCHEDULE_CSV, make_campaign
from tierctl.campaign.config import dumps_config, load_config
from tierctl.campaign.layout import CampaignLayout
from tierctl.cli import app

ENV = {"COLUMNS": "100", "NO_COLOR": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
Setup = Callable[[CampaignLayout], None]


@dataclass(frozen=True)
class Case:
    """`argv` ({root} = the campaign, {tmp} = its parent) run after `setup` edited a fresh campaign."""

    id: str
    argv: tuple[str, ...]
    says: str  # a substring of the one stderr line (what it names and why)
    setup: Setup | None = None
    done: int = 0  # iterations already complete (as their steps leave them) before `setup`


def tree_hash(root: Path) -> str:
    """Every path, file content and symlink target under `root`, hashed (what "nothing written" means)."""
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        h.update(str(p.relative_to(root)).encode())
        if p.is_symlink():
            h.update(b"->" + os.readlink(p).encode())
        elif p.is_file():
            h.update(p.read_bytes())
    return h.hexdigest()


# --- setups ---------------------------------------------------------------------------------------


def toml(text: str) -> Setup:
    """campaign.toml replaced by `text` (a complete file)."""
    return lambda layout: layout.config.write_text(text, encoding="utf-8")


def key(table: str, line: str) -> Setup:
    """`key = value` set in [table] of the valid campaign.toml (replacing the key's line: TOML refuses
    a key twice)."""
    def edit(layout: CampaignLayout) -> None:
        text = layout.config.read_text(encoding="utf-8")
        name = line.split("=")[0].strip()
        lines, out, current = text.splitlines(), [], None
        for raw in lines:
            s = raw.strip()
            if s.startswith("["):
                current = s.strip("[]")
            if current == table and s.split("=")[0].strip() == name:
                continue
            out.append(raw)
            if s == f"[{table}]":
                out.append(line)
        layout.config.write_text("\n".join(out) + "\n", encoding="utf-8")
    return edit


def schedule(text: str | bytes) -> Setup:
    def edit(layout: CampaignLayout) -> None:
        if isinstance(text, bytes):
            layout.schedule.write_bytes(text)
        else:
            layout.schedule.write_text(text, encoding="utf-8")
    return edit


def file_at(rel: str, data: bytes) -> Setup:
    def edit(layout: CampaignLayout) -> None:
        path = layout.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return edit


def tiers_file(rel: str, maps: dict[str, np.ndarray], meta: dict[str, str] | None = None) -> Setup:
    def edit(layout: CampaignLayout) -> None:
        path = layout.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        save_file(maps, str(path), metadata=meta if meta is not None else
                  {"block_size": "16", "topk_per_block": "10", "iteration": "1"})
    return edit


def symlink(rel: str, target_rel: str, make_target: bool = True) -> Setup:
    def edit(layout: CampaignLayout) -> None:
        target = layout.root.parent / target_rel
        if make_target:
            target.mkdir(parents=True, exist_ok=True)
        path = layout.root / rel
        if path.is_dir():
            shutil.copytree(path, target, dirs_exist_ok=True)
            shutil.rmtree(path)
        elif path.exists():
            shutil.copy(path, target)
            path.unlink()
        path.symlink_to(target)
    return edit


def truncate(rel: str, keep: int = 10) -> Setup:
    def edit(layout: CampaignLayout) -> None:
        path = layout.root / rel
        path.write_bytes(path.read_bytes()[:keep])
    return edit


TIER = {"model.layers.0.mlp.up_proj": np.zeros((2, 4), dtype=np.uint8)}
RUN1 = ("run", "{root}", "--iter", "1")
RUN2 = ("run", "{root}", "--iter", "2")
SHOW = ("show", "{root}/t.safetensors")

# --- campaign.toml: refused at load, naming the file, [table] and key -----------------------------

TOML_CASES = [
    Case("toml-invalid", RUN1, "campaign.toml: invalid TOML", toml("[model\nname = 1\n")),
    Case("toml-not-utf8", RUN1, "campaign.toml: not UTF-8 text",
         file_at("campaign.toml", b"[model]\nname = \"\xff\"\n")),
    Case("toml-unknown-table", RUN1, "unknown table [modle]", toml("[modle]\nname = 'x'\n")),
    Case("toml-unknown-key", RUN1, "[data] unknown key 'nsample'", key("data", "nsample = 4")),
    Case("toml-table-not-table", RUN1, "[model] must be a table", toml("model = 3\n")),
    Case("toml-name-empty", RUN1, "[model] name is empty", key("model", "name = ' '")),
    Case("toml-name-int", RUN1, "[model] name must be str, got 3", key("model", "name = 3")),
    Case("toml-device", RUN1, "[model] device must be one of auto, cpu, cuda", key("model", "device = 'tpu'")),
    Case("toml-dtype", RUN1, "[model] dtype must be one of", key("model", "dtype = 'int8'")),
    Case("toml-offload", RUN1, "[model] offload must be one of", key("model", "offload = 'disk'")),
    Case("toml-trust-str", RUN1, "[model] trust_remote_code must be bool", key("model", "trust_remote_code = 'yes'")),
    Case("toml-nsamples-0", RUN1, "[data] nsamples must be in 1..65536, got 0", key("data", "nsamples = 0")),
    Case("toml-nsamples-1e12", RUN1, "[data] nsamples must be in 1..65536, got 1000000000000",
         key("data", "nsamples = 1000000000000")),
    Case("toml-nsamples-2e70", RUN1, f"[data] nsamples must be in 1..65536, got {2**70}",
         key("data", f"nsamples = {2**70}")),
    Case("toml-nsamples-float", RUN1, "[data] nsamples must be int, got 4.5", key("data", "nsamples = 4.5")),
    Case("toml-nsamples-bool", RUN1, "[data] nsamples must be int, got True", key("data", "nsamples = true")),
    Case("toml-seqlen-0", RUN1, "[data] seqlen must be in 1..8192, got 0", key("data", "seqlen = 0")),
    Case("toml-seqlen-huge", RUN1, "[data] seqlen must be in 1..8192, got 100000", key("data", "seqlen = 100000")),
    Case("toml-batch-0", RUN1, "[data] batch_size must be in 1..4096, got 0", key("data", "batch_size = 0")),
    Case("toml-eval-windows-neg", RUN1, "[data] eval_windows must be in 0..1e+07, got -1",
         key("data", "eval_windows = -1")),
    Case("toml-seed-neg", RUN1, "[data] seed must be in 0..4.29497e+09, got -1", key("data", "seed = -1")),
    Case("toml-calib-int", RUN1, "[data] calib must be str", key("data", "calib = 1")),
    Case("toml-block-6", RUN1, "[tiers] block_size must be a multiple of 4", key("tiers", "block_size = 6")),
    Case("toml-block-0", RUN1, "[tiers] block_size must be in 4..4096, got 0", key("tiers", "block_size = 0")),
    Case("toml-block-huge", RUN1, "[tiers] block_size must be in 4..4096, got 8192", key("tiers", "block_size = 8192")),
    Case("toml-topk-0", RUN1, "[tiers] topk_per_block must be in 1..", key("tiers", "topk_per_block = 0")),
    Case("toml-topk-300", RUN1, "[tiers] topk_per_block must be in 1..256, got 300",
         key("tiers", "topk_per_block = 300")),
    Case("toml-method", RUN1, "[prune] method must be one of", key("prune", "method = 'magnitude'")),
    Case("toml-sparsity-1", RUN1, "[prune] sparsity must be in [0, 1), got 1.0", key("prune", "sparsity = 1.0")),
    Case("toml-sparsity-neg", RUN1, "[prune] sparsity must be in [0, 1), got -0.1", key("prune", "sparsity = -0.1")),
    Case("toml-sparsity-nan", RUN1, "[prune] sparsity must be a finite number, got nan",
         key("prune", "sparsity = nan")),
    Case("toml-n-ge-m", RUN1, "[prune] n must satisfy 1 <= n < m", key("prune", "n = 4")),
    Case("toml-m-0", RUN1, "[prune] m must be in 2..1024, got 0", key("prune", "m = 0")),
    Case("toml-lr-inf", RUN1, "[finetune] lr must be a finite number, got inf", key("finetune", "lr = inf")),
    Case("toml-lr-nan", RUN1, "[finetune] lr must be a finite number, got nan", key("finetune", "lr = nan")),
    Case("toml-lr-0", RUN1, "[finetune] lr must be in 1e-12..1, got 0.0", key("finetune", "lr = 0")),
    Case("toml-lr-neg", RUN1, "[finetune] lr must be in 1e-12..1, got -0.001", key("finetune", "lr = -1e-3")),
    Case("toml-lr-10", RUN1, "[finetune] lr must be in 1e-12..1, got 10.0", key("finetune", "lr = 10.0")),
    Case("toml-ft-batch-0", RUN1, "[finetune] batch_size must be in 1..4096, got 0", key("finetune", "batch_size = 0")),
    Case("toml-grad-accum-0", RUN1, "[finetune] grad_accum must be in 1..65536, got 0",
         key("finetune", "grad_accum = 0")),
    Case("toml-ft-seqlen-1e9", RUN1, "[finetune] seqlen must be in 1..8192, got 1000000000",
         key("finetune", "seqlen = 1000000000")),
    Case("toml-tokens-neg", RUN1, "[finetune] tokens_per_epoch must be in 0..1e+13, got -1",
         key("finetune", "tokens_per_epoch = -1")),
    Case("toml-warmup-1", RUN1, "[finetune] warmup_ratio must be in [0, 1), got 1.0",
         key("finetune", "warmup_ratio = 1.0")),
    Case("toml-wd-neg", RUN1, "[finetune] weight_decay must be in 0..10, got -0.1",
         key("finetune", "weight_decay = -0.1")),
    Case("toml-clip-inf", RUN1, "[finetune] max_grad_norm must be a finite number, got inf",
         key("finetune", "max_grad_norm = inf")),
    Case("toml-ckpt-neg", RUN1, "[finetune] checkpoint_every must be in 0..1e+09, got -1",
         key("finetune", "checkpoint_every = -1")),
    Case("toml-log-every-0", RUN1, "[finetune] log_every must be in 1..1e+09, got 0", key("finetune", "log_every = 0")),
    Case("toml-ft-seed-huge", RUN1, "[finetune] seed must be in 0..4.29497e+09", key("finetune", f"seed = {2**40}")),
    Case("toml-launcher", RUN1, "[run] launcher must be one of local, torchrun", key("run", "launcher = 'mpirun'")),
    Case("toml-nproc-0", RUN1, "[run] nproc must be in 1..4096, got 0", key("run", "nproc = 0")),
    Case("toml-strategy", RUN1, "[run] strategy must be one of", key("run", "strategy = 'zero3'")),
    Case("toml-store", RUN1, "[run] store must be one of dense, packed, got 'zip'", key("run", "store = 'zip'")),
    Case("toml-preset", RUN1, "[model] name tiny-gpt: unknown preset", key("model", "name = 'tiny-gpt'")),
    Case("toml-model-missing-dir", RUN1, "[model] name ./no/such/dir: no such file or directory",
         key("model", "name = './no/such/dir'")),
    Case("toml-calib-missing", RUN1, "[data] calib text:/no/such.txt: no such file",
         key("data", "calib = 'text:/no/such.txt'")),
    Case("toml-eval-unknown", RUN1, "[data] eval imdb: unknown text source", key("data", "eval = 'imdb'")),
    Case("toml-missing", RUN1, "no campaign.toml in this directory", lambda la: la.config.unlink()),
    Case("toml-is-dir", RUN1, "no campaign.toml in this directory",
         lambda la: (la.config.unlink(), la.config.mkdir())),
]

# --- schedule.csv: refused naming the file, line / iteration and column -----------------------------

HEADER = "iteration,dense,mid_2_4,topk,dense_to_2_4,mid_2_4_to_topk,epochs\n"
SCHEDULE_CASES = [
    Case("csv-empty", RUN1, "schedule.csv: empty file", schedule("")),
    Case("csv-header-only", RUN1, "schedule.csv: no iterations", schedule(HEADER)),
    Case("csv-binary", RUN1, "schedule.csv: line 1: not a text file", schedule(b"\x00\x01\x02")),
    Case("csv-latin1", RUN1, "schedule.csv: line 2: not UTF-8 text", schedule(HEADER.encode() + b"1,0.9\xe9\n")),
    Case("csv-semicolons", RUN1, "columns are separated by ';'",
         schedule(HEADER.replace(",", ";") + "1;0.9;0.1;0;0.1;0;2\n")),
    Case("csv-unknown-column", RUN1, "header: unknown column",
         schedule(HEADER.replace("epochs", "epoch") + "1,0.9,0.1,0,0.1,0,2\n")),
    Case("csv-missing-column", RUN1, "header: missing column epochs", schedule(
        "iteration,dense,mid_2_4,topk\n1,0.9,0.1,0\n")),
    Case("csv-duplicate-column", RUN1, "appears twice", schedule(HEADER.replace("topk,", "topk,topk,") +
                                                              "1,0.9,0.1,0,0,0.1,0,2\n")),
    Case("csv-cells", RUN1, "cells but the header has 7 columns", schedule(HEADER + "1,0.9,0.1\n")),
    Case("csv-not-number", RUN1, "schedule.csv", schedule(HEADER + "1,0.9,abc,0,0.1,0,2\n")),
    Case("csv-promotion", RUN1, "schedule.csv", schedule(SPEC_SCHEDULE_CSV.replace("2,0.80,0.10,0.10,0.10,0.10,2",
                                                                                   "2,0.95,0.05,0.00,0.10,0.10,2"))),
    Case("csv-not-summing", RUN1, "schedule.csv", schedule(HEADER + "1,0.9,0.2,0.0,0.1,0.0,2\n")),
    Case("csv-epochs-float", RUN1, "schedule.csv", schedule(HEADER + "1,0.9,0.1,0.0,0.1,0.0,1.5\n")),
    Case("csv-epochs-neg", RUN1, "schedule.csv", schedule(HEADER + "1,0.9,0.1,0.0,0.1,0.0,-1\n")),
    Case("csv-negative", RUN1, "schedule.csv", schedule(HEADER + "1,1.1,-0.1,0.0,-0.1,0.0,1\n")),
    Case("csv-nan", RUN1, "schedule.csv", schedule(HEADER + "1,nan,0.1,0.0,0.1,0.0,1\n")),
    Case("csv-iteration-gap", RUN1, "schedule.csv", schedule(HEADER + "1,0.9,0.1,0.0,0.1,0.0,1\n"
                                                                      "3,0.8,0.2,0.0,0.1,0.0,1\n")),
    Case("csv-transition", RUN1, "schedule.csv", schedule(HEADER + "1,0.9,0.1,0.0,0.2,0.0,1\n")),
    Case("csv-missing", RUN1, "schedule.csv: no such file", lambda la: la.schedule.unlink()),
    Case("csv-edited-after-run", RUN2, "iteration 1 already ran with 0.9",
         schedule(HEADER + "1,0.80,0.20,0.00,0.20,0.00,2\n2,0.70,0.20,0.10,0.10,0.10,2\n"), done=1),
    Case("csv-validate-missing", ("schedule", "validate", "{tmp}/none.csv"), "none.csv"),
    Case("csv-validate-dir", ("schedule", "validate", "{tmp}"), "{tmp}"),
]

# --- flags: usage errors and refused requests, one line each ---------------------------------------

FLAG_CASES = [
    Case("flag-iter-abc", ("run", "{root}", "--iter", "abc"), "'--iter'"),
    Case("flag-all-true", ("run", "{root}", "--all", "true"), "unexpected extra argument"),
    Case("flag-iter-0-prune", ("run", "{root}", "--iter", "0", "--step", "prune"), "iteration 0 (the reference) has "
         "only an eval step"),
    Case("flag-iter-99", ("run", "{root}", "--iter", "99"), "--iter 99: "),
    Case("flag-iter-and-all", ("run", "{root}", "--iter", "1", "--all"), "--all and --iter"),
    Case("flag-neither", ("run", "{root}"), "give --iter N or --all"),
    Case("flag-step-bogus", ("run", "{root}", "--iter", "1", "--step", "train"), "--step train: must be one of"),
    Case("flag-step-all", ("run", "{root}", "--all", "--step", "eval"), "--step runs one step"),
    Case("flag-step-early", ("run", "{root}", "--iter", "1", "--step", "eval"), "--step eval of iteration 1 needs"),
    Case("flag-launcher", ("run", "{root}", "--iter", "1", "--launcher", "mpirun"), "--launcher mpirun"),
    Case("flag-nproc-0", ("run", "{root}", "--iter", "1", "--nproc", "0"), "'--nproc'"),
    Case("flag-grace-neg", ("run", "{root}", "--iter", "1", "--grace", "-1"), "'--grace'"),
    Case("flag-nproc-huge", ("run", "{root}", "--iter", "1", "--nproc", "99999999999"), "'--nproc'"),
    Case("flag-grace-inf", ("run", "{root}", "--iter", "1", "--grace", "inf"), "'--grace'"),
    Case("flag-schedule-block", ("schedule", "show", "{root}", "--block-size", "99999999999"), "'--block-size'"),
    Case("flag-unknown", ("run", "{root}", "--iterations", "1"), "No such option"),
    Case("flag-run-nosuch", ("run", "{tmp}/nosuch", "--all"), "no such campaign"),
    Case("flag-missing-arg", ("run",), "Missing argument 'CAMPAIGN'"),
    Case("flag-unknown-command", ("frobnicate",), "No such command 'frobnicate'"),
    Case("flag-status-nosuch", ("status", "{tmp}/nosuch"), "no such campaign"),
    Case("flag-status-file", ("status", "{root}/campaign.toml"), "not a campaign directory"),
    Case("flag-show-width", ("show", "{root}@1", "--width", "1"), "'--width'"),
    Case("flag-show-reduce", ("show", "{root}/t.safetensors", "--reduce", "mean"), "--reduce mean",
         tiers_file("t.safetensors", TIER)),
    Case("flag-show-layer", ("show", "{root}/t.safetensors", "--layer", "nope"), "--layer nope: no matrix",
         tiers_file("t.safetensors", TIER)),
    Case("flag-show-no-iter", ("show", "{root}@3"), "iteration 3 has no tier map"),
    Case("flag-show-nothing", ("show", "{root}"), "no iteration has a tier map yet"),
    Case("flag-diff-nosuch", ("diff", "{tmp}/a.safetensors", "{tmp}/b.safetensors"), "no such tier map file"),
    Case("flag-report-no-out", ("report", "{root}"), "Missing option '--out'"),
    Case("flag-report-unfinished", ("report", "{root}", "--out", "{tmp}/out"), "{root}"),
    Case("flag-schedule-topk", ("schedule", "show", "{root}", "--topk", "-1"), "'--topk'"),
    Case("flag-init-name", ("init", "../x", "--dir", "{tmp}"), "campaign name '../x'"),
    Case("flag-init-exists", ("init", "camp", "--dir", "{tmp}"), "already exists"),
    Case("flag-init-nsamples", ("init", "x", "--dir", "{tmp}", "--nsamples", "0"), "--nsamples: must be in 1..65536"),
    Case("flag-init-seqlen", ("init", "x", "--dir", "{tmp}", "--seqlen", "99999"), "--seqlen: must be in 1..8192"),
    Case("flag-init-topk", ("init", "x", "--dir", "{tmp}", "--topk", "300"), "--topk: must be in 1..256"),
    Case("flag-init-seed", ("init", "x", "--dir", "{tmp}", "--seed", "-1"), "--seed: must be in 0.."),
    Case("flag-init-model", ("init", "x", "--dir", "{tmp}", "--model", "tiny-gpt"), "--model tiny-gpt: unknown preset"),
    Case("flag-init-schedule", ("init", "x", "--dir", "{tmp}", "--schedule", "{tmp}/none.csv"), "no such file"),
    Case("flag-init-dir-file", ("init", "x", "--dir", "{root}/campaign.toml"), "not a directory"),
]

# --- damaged or foreign files inside a campaign ---------------------------------------------------

DAMAGED_CASES = [
    Case("damaged-metrics-blocks-next", RUN2, "iter1/metrics.json", truncate("iter1/metrics.json"), done=1),
    Case("damaged-metrics-not-object", RUN2, "iter1/metrics.json", file_at("iter1/metrics.json", b"[1, 2]"), done=1),
    Case("symlink-iter", RUN2, "iter1: a symbolic link inside the campaign", symlink("iter1", "elsewhere"), done=1),
    Case("symlink-events", RUN2, "events.jsonl: a symbolic link", symlink("iter1/events.jsonl", "ev/x"), done=1),
    Case("symlink-model", RUN2, "model: a symbolic link", symlink("iter1/model", "m"), done=1),
    Case("symlink-logs", RUN1, "logs: a symbolic link", symlink("logs", "logs-elsewhere")),
    Case("symlink-dangling", RUN1, "iter1: a symbolic link", symlink("iter1", "gone", make_target=False)),
    Case("stale-later-iteration", RUN1, "has outputs although iteration 1 is not complete",
         lambda la: (iteration_done(la, 2), shutil.rmtree(la.iter_dir(1))), done=1),
    Case("iteration-beyond-schedule", ("status", "{root}"), "has iterations 1..1 but iteration 2 already ran",
         lambda la: (la.schedule.write_text(HEADER + "1,0.90,0.10,0.00,0.10,0.00,2\n"),
                     shutil.copytree(la.iter_dir(1), la.iter_dir(2))), done=1),
]

# --- tier-map files (show / diff) -------------------------------------------------------------------

TIERMAP_CASES = [
    Case("tiers-empty-file", SHOW, "not a readable safetensors file", file_at("t.safetensors", b"")),
    Case("tiers-garbage", SHOW, "not a readable safetensors file", file_at("t.safetensors", b"\x10\x00" * 40)),
    Case("tiers-truncated", SHOW, "not a readable safetensors file",
         lambda la: (tiers_file("t.safetensors", TIER)(la), truncate("t.safetensors", 30)(la))),
    Case("tiers-float", SHOW, "expected 2-D uint8",
         tiers_file("t.safetensors", {"a": np.zeros((2, 2), dtype=np.float32)})),
    Case("tiers-3d", SHOW, "expected 2-D uint8",
         tiers_file("t.safetensors", {"a": np.zeros((2, 2, 2), dtype=np.uint8)})),
    Case("tiers-value-3", SHOW, "holds tier 3", tiers_file("t.safetensors", {"a": np.full((2, 2), 3, dtype=np.uint8)})),
    Case("tiers-meta", SHOW, "metadata block_size='x' is not an integer",
         tiers_file("t.safetensors", TIER, {"block_size": "x", "topk_per_block": "10", "iteration": "1"})),
    Case("tiers-no-maps", SHOW, "holds no tier maps", tiers_file("t.safetensors", {})),
    Case("tiers-missing-ext", ("show", "{root}/none.safetensors"), "no such tier map file"),
    Case("tiers-bad-spec", ("show", "nothing-like-this"), "expected CAMPAIGN@N, CAMPAIGN or a tier-map"),
    Case("tiers-diff-garbage", ("diff", "{root}/t.safetensors", "{root}/t.safetensors"), "not a readable safetensors",
         file_at("t.safetensors", b"{}")),
    Case("tiers-campaign-damaged", ("show", "{root}@1"), "iter1/tiers.safetensors",
         file_at("iter1/tiers.safetensors", b"\x08\x00\x00\x00\x00\x00\x00\x00{\"a\":1}")),
]

CASES = TOML_CASES + SCHEDULE_CASES + FLAG_CASES + DAMAGED_CASES + TIERMAP_CASES


@pytest.fixture(scope="module")
def templates(tmp_path_factory) -> dict[int, Path]:
    """Fresh campaigns to copy: none done, and iteration 1 complete (as its steps leave it)."""
    base = tmp_path_factory.mktemp("templates")
    out = {}
    for done in (0, 1):
        layout = make_campaign(base / str(done))
        for n in range(1, done + 1):
            iteration_done(layout, n)
        out[done] = layout.root
    return out


def _fmt(arg: str, layout: CampaignLayout) -> str:
    return arg.format(root=layout.root, tmp=layout.root.parent)


def prepared(case: Case, templates: dict[int, Path], tmp_path: Path) -> CampaignLayout:
    layout = CampaignLayout(tmp_path / "camp")
    shutil.copytree(templates[case.done], layout.root, symlinks=True)
    if case.setup is not None:
        case.setup(layout)
    return layout


def test_the_corpus_has_at_least_100_cases_with_distinct_names() -> None:
    assert len(CASES) >= 100
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_a_bad_input_is_exit_2_one_line_no_traceback_and_nothing_written(case, templates, tmp_path, monkeypatch):
    layout = prepared(case, templates, tmp_path)
    monkeypatch.chdir(tmp_path)
    before = tree_hash(tmp_path)
    r = CliRunner().invoke(app, [_fmt(a, layout) for a in case.argv], env=ENV)
    lines = r.stderr.splitlines()
    assert r.exit_code == 2, (r.exit_code, r.stderr, r.stdout)
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("tierctl: ")
    assert _fmt(case.says, layout) in lines[0]
    assert "Traceback" not in r.output and r.exception is None or isinstance(r.exception, SystemExit)
    assert tree_hash(tmp_path) == before


# --- what only the check step sees (a tokenizer, a model config): in-process, and as the CLI runs it ---


def _model_dir(root: Path, config: bytes | None = None, auto_map: bool = False) -> Path:
    """A saved tiny-llama config + tokenizer (no weights: the check never reads them)."""
    from tierctl.lm.models import resolve_model

    config_obj, tok = resolve_model("tiny-llama")
    root.mkdir(parents=True)
    config_obj.save_pretrained(root)
    tok.save_pretrained(root)
    if auto_map:
        data = json.loads((root / "config.json").read_text())
        data["auto_map"] = {"AutoModelForCausalLM": "modeling_custom.CustomLlama"}
        (root / "config.json").write_text(json.dumps(data))
    if config is not None:
        (root / "config.json").write_bytes(config)
    return root


CHECK_CASES = [
    ("cuda", {"model": {"device": "cuda"}}, "[model] device cuda: CUDA is not available"),
    ("no-such-model", {"model": {"name": "nosuchmodel"}}, "[model] name nosuchmodel: cannot load its config"),
    ("block-too-big", {"tiers": {"block_size": 1000}}, "[tiers] block_size 1000 leaves no full block"),
    ("seqlen-beyond-text", {"data": {"calib": "text:{tmp}/short.txt", "seqlen": 64}},
     "[data] seqlen 64 is longer than the"),
    ("empty-text", {"data": {"calib": "text:{tmp}/empty.txt"}}, "[data] seqlen 64 is longer than the 0 tokens"),
    ("binary-text", {"data": {"eval": "text:{tmp}/binary.txt"}}, "[data] eval: text source text:"),
    ("eval-too-short", {"data": {"eval": "text:{tmp}/short.txt"}}, "evaluation split"),
    ("finetune-seqlen", {"finetune": {"seqlen": 4096}}, "[finetune] seqlen 4096 exceeds the model's max_position"),
    ("finetune-batch", {"finetune": {"batch_size": 4096, "tokens_per_epoch": 0}}, "[finetune] batch_size 4096"),
    ("wikitext2-offline", {"data": {"eval": "wikitext2"}}, "[data] eval wikitext2: Salesforce/wikitext is not cached"),
    ("config-not-json", {"model": {"name": "{tmp}/broken-model"}}, "config.json: not valid JSON"),
    ("not-gguf", {"model": {"name": "{tmp}/fake.gguf"}}, "not a GGUF file"),
]


@pytest.fixture(scope="module")
def check_inputs(tmp_path_factory) -> Path:
    """Texts and model files the check cases point at."""
    root = tmp_path_factory.mktemp("check-inputs")
    (root / "short.txt").write_text("a few words only\n")
    (root / "empty.txt").write_text("")
    (root / "binary.txt").write_bytes(bytes(range(256)) * 8)
    (root / "fake.gguf").write_bytes(b"PK\x03\x04 not gguf at all")
    _model_dir(root / "broken-model", config=b'{"model_type": "llama", ')
    return root


def _check_campaign(tmp_path: Path, inputs: Path, overrides: dict) -> CampaignLayout:
    tables = {t: {k: (v.format(tmp=inputs) if isinstance(v, str) else v) for k, v in kv.items()}
              for t, kv in overrides.items()}
    model = tables.pop("model", {})
    layout = make_campaign(tmp_path, model=model.pop("name", "tiny-llama"), **tables)
    if model:  # [model] keys besides the name (make_campaign's `model` is the name)
        cfg = load_config(layout.config)
        for k, v in model.items():
            setattr(cfg.model, k, v)
        layout.config.write_text(dumps_config(cfg), encoding="utf-8")
    return layout


@pytest.mark.parametrize(("name", "overrides", "says"), CHECK_CASES, ids=[c[0] for c in CHECK_CASES])
def test_the_check_step_refuses_what_needs_the_model_or_the_text(name, overrides, says, tmp_path, check_inputs,
                                                                   monkeypatch, capsys):
    from tierctl.steps import check

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    layout = _check_campaign(tmp_path, check_inputs, overrides)
    before = tree_hash(tmp_path)
    assert check.main(["--campaign", str(layout.root)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith(f"{layout.config}: ")
    assert says.format(tmp=check_inputs) in err[0]
    assert tree_hash(tmp_path) == before


def test_a_fine_tune_sent_to_slurm_by_the_command_line_needs_no_cuda_here(tmp_path, check_inputs, capsys):
    """`run --launcher slurm --step finetune` overrides [run] launcher: the check follows the override."""
    from tierctl.steps import check

    layout = _check_campaign(tmp_path, check_inputs, {"model": {"device": "cuda"}})
    args = ["--campaign", str(layout.root), "--steps", "finetune"]
    import torch

    if not torch.cuda.is_available():  # (on a machine with CUDA both pass)
        assert check.main(args) == 2  # [run] launcher is local: the fine-tune would run here, on CUDA
        assert "[model] device cuda: CUDA is not available" in capsys.readouterr().err
    assert check.main([*args, "--launcher", "slurm"]) == 0


def test_a_model_folder_with_its_own_code_is_a_warning_not_a_refusal(tmp_path, capsys):
    from tierctl.steps import check

    model = _model_dir(tmp_path / "custom", auto_map=True)
    layout = make_campaign(tmp_path, model=str(model))
    assert check.main(["--campaign", str(layout.root)]) == 0
    err = capsys.readouterr().err.splitlines()
    assert err == [f"warning: {model} has its own model code (config.json auto_map) that is not run: it loads as "
                   "model_type 'llama'; set [model] trust_remote_code = true to run its code"]


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, **ENV, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    return subprocess.run([sys.executable, "-m", "tierctl", *args], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=300, check=False)


@pytest.mark.slow
def test_run_refuses_before_the_lock_what_the_check_step_finds(tmp_path, check_inputs):
    """The real CLI, a real check subprocess: no .lock, logs/, events.jsonl or iter dir appears."""
    layout = _check_campaign(tmp_path, check_inputs, {"data": {"eval": "text:{tmp}/short.txt"}})
    before = tree_hash(tmp_path)
    r = _cli("run", str(layout.root), "--all", cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    assert r.stderr.startswith(f"tierctl: {layout.config}: [data] eval: ") or "evaluation split" in r.stderr
    assert len(r.stderr.splitlines()) == 1 and "Traceback" not in r.stderr
    assert tree_hash(tmp_path) == before
    assert sorted(p.name for p in layout.root.iterdir()) == ["campaign.toml", "schedule.csv"]


@pytest.mark.slow
def test_run_no_check_skips_the_check_step_and_the_step_meets_what_it_would_have_refused(tmp_path, check_inputs):
    layout = _check_campaign(tmp_path, check_inputs, {"data": {"eval": "text:{tmp}/short.txt"}})
    r = _cli("run", str(layout.root), "--iter", "0", "--no-check", cwd=tmp_path)
    assert r.returncode == 1, r.stderr
    assert r.stderr == (f"tierctl: iteration 0 eval failed: eval split of text:{check_inputs}/short.txt: seqlen 64 "
                        f"is longer than its 3 tokens; lower data.seqlen (log: {layout.step_log(0, 'eval')})\n")


@pytest.mark.slow
def test_init_refuses_a_model_that_does_not_resolve_and_creates_nothing(tmp_path):
    r = _cli("init", "x", "--model", "nosuchmodel", cwd=tmp_path)
    assert r.returncode == 2
    assert r.stderr.startswith("tierctl: --model nosuchmodel: cannot load its config or tokenizer (")
    assert len(r.stderr.splitlines()) == 1
    assert list(tmp_path.iterdir()) == [] or [p.name for p in tmp_path.iterdir()] == ["campaigns"] and \
        list((tmp_path / "campaigns").iterdir()) == []


@pytest.mark.slow
@pytest.mark.parametrize("argv", [("run", "{root}", "--iter", "abc"), ("run", "{root}", "--nproc", "0", "--all"),
                                  ("show", "{root}", "--width", "1"), ("run", "{root}", "--iter", "1", "--all")])
def test_usage_errors_are_one_line_from_the_installed_entry_point_too(argv, tmp_path):
    layout = make_campaign(tmp_path)
    r = _cli(*[_fmt(a, layout) for a in argv], cwd=tmp_path)
    assert r.returncode == 2
    assert len(r.stderr.splitlines()) == 1 and r.stderr.startswith("tierctl: ")
