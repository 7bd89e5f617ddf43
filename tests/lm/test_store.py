"""`[run] store = "packed"`: iteration models kept in the packed form, read back as the dense store's;
with either store the prune keeps only its masks (iter<N>/keep.safetensors), which rebuild the pruned
model for `--step finetune --force`.

Two tiny-llama campaigns of the same name, settings and seed, one per store, run through the real steps
in this process (iterations 1 and 2, each pruned, fine-tuned one short epoch and evaluated).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch

from tests.export.conftest import run_steps
from tests.helpers import make_campaign
from tierctl.campaign.layout import CampaignLayout
from tierctl.campaign.plan import RunRequest, plan_run
from tierctl.campaign.state import campaign_status
from tierctl.core.metrics import read_metrics
from tierctl.errors import BadInput
from tierctl.lm.models import load_model, prunable_linears
from tierctl.lm.store import stored_tensors

SCHEDULE = """iteration,dense,mid_2_4,topk,epochs
1,0.90,0.10,0.00,1
2,0.35,0.45,0.20,1
"""
PACKED_FILE = "tierctl-packed.safetensors"


def build(root: Path, store: str, method: str = "progressive", schedule: str = SCHEDULE) -> CampaignLayout:
    layout = make_campaign(root, name="camp", schedule=schedule, run={"store": store}, prune={"method": method},
                           data={"nsamples": 2, "seqlen": 32, "batch_size": 2, "eval_windows": 2},
                           finetune={"batch_size": 2, "seqlen": 32, "tokens_per_epoch": 128})
    for n in range(1, schedule.count("\n")):
        run_steps(layout, n)
    return layout


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> dict[str, CampaignLayout]:
    root = tmp_path_factory.mktemp("stores")
    return {store: build(root / store, store) for store in ("dense", "packed")}


def disk_bytes(root: Path) -> int:
    """Bytes of the files under `root`, each inode once (hard links are not a second copy)."""
    seen, total = set(), 0
    for p in root.rglob("*"):
        st = p.lstat()
        if p.is_file() and (st.st_dev, st.st_ino) not in seen:
            seen.add((st.st_dev, st.st_ino))
            total += st.st_size
    return total


def assert_same_tensors(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a and set(a) == set(b)
    for key, t in a.items():
        assert b[key].dtype == t.dtype and torch.equal(b[key], t), key


@pytest.mark.slow
@pytest.mark.parametrize("n", [1, 2])
def test_packed_store_keeps_the_export_directory_and_no_dense_weights(stores, n):
    model_dir = stores["packed"].model(n)
    dense_dir = stores["dense"].model(n)
    names = {p.name for p in model_dir.iterdir()}
    assert PACKED_FILE in names and not any(name.endswith(".safetensors") and name != PACKED_FILE for name in names)
    # The same side files as the dense store's save_pretrained, byte for byte (config, tokenizer, ledger aside).
    dense_names = {p.name for p in dense_dir.iterdir()} - {"model.safetensors"}
    assert names - {PACKED_FILE} == dense_names
    for name in dense_names - {"finetune.json"}:
        assert (model_dir / name).read_bytes() == (dense_dir / name).read_bytes(), name


@pytest.mark.slow
@pytest.mark.parametrize("n", [1, 2])
def test_packed_store_iteration_models_equal_the_dense_store_bit_for_bit(stores, n):
    assert_same_tensors(stored_tensors(stores["dense"].model(n)), stored_tensors(stores["packed"].model(n)))


@pytest.mark.slow
def test_steps_load_a_packed_iteration_as_the_dense_one(stores):
    from tierctl.lm.models import load_model

    dense, _ = load_model(str(stores["dense"].model(2)), device="cpu")
    packed, tokenizer = load_model(str(stores["packed"].model(2)), device="cpu")
    assert_same_tensors(dense.state_dict(), packed.state_dict())
    assert type(packed.model.layers[0].mlp.up_proj) is torch.nn.Linear and tokenizer("def f").input_ids
    dense_metrics, packed_metrics = read_metrics(stores["dense"].metrics(2)), read_metrics(stores["packed"].metrics(2))
    assert packed_metrics.ppl == dense_metrics.ppl and packed_metrics.ppl_pruned == dense_metrics.ppl_pruned


def files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.slow
@pytest.mark.parametrize("store", ["dense", "packed"])
def test_the_prune_keeps_one_bit_per_prunable_weight_and_no_second_model(stores, store):
    layout = stores[store]
    assert {p.name for p in layout.iter_dir(2).iterdir()} == {"act_norms.safetensors", "events.jsonl",
                                                              "keep.safetensors", "metrics.json", "model",
                                                              "tiers.safetensors"}
    model, _ = load_model("tiny-llama", device="cpu")
    bits = sum((lin.weight.numel() + 7) // 8 for lin in prunable_linears(model).values())
    raw = layout.keep(2).read_bytes()
    header = int.from_bytes(raw[:8], "little")  # safetensors: u64 header length, JSON header, the tensors
    assert len(raw) == 8 + header + bits


@pytest.mark.slow
def test_the_keep_file_rebuilds_the_pruned_model_from_its_input(stores):
    """Iteration 1's masks on the base model give the pruned model the prune measured."""
    from tierctl.lm.keep_file import apply_keep_file, model_sha256, read_keep

    keep = read_keep(stores["dense"].keep(1))
    assert keep.meta["input"] == "tiny-llama" and read_keep(stores["dense"].keep(2)).meta["input"] == "iter1/model"
    model, _ = load_model("tiny-llama", device="cpu")
    apply_keep_file(model, keep, stores["dense"].keep(1))
    assert model_sha256(model) == keep.sha256
    weights = [lin.weight for lin in prunable_linears(model).values()]
    zeros = sum(int((w == 0).sum()) for w in weights)
    assert zeros / sum(w.numel() for w in weights) == read_metrics(stores["dense"].metrics(1)).sparsity


def restore(layout: CampaignLayout, n: int) -> int:
    """The restore `--step finetune --force` launches (tierctl/campaign/restore.py), in this process."""
    from tierctl.steps.__main__ import main

    return main(["restore", "--campaign", str(layout.root), "--iter", str(n)])


@pytest.mark.slow
def test_finetune_force_on_the_packed_store_redoes_the_fine_tune_bit_for_bit(stores, tmp_path):
    layout = CampaignLayout(tmp_path / "camp")
    shutil.copytree(stores["packed"].root, layout.root)
    before = stored_tensors(layout.model(2))
    assert plan_run(layout, campaign_status(layout), RunRequest(iteration=2, step="finetune", force=True)) == \
        [(2, "finetune")]
    assert restore(layout, 2) == 0
    # iter2/model is the pruned model again (rebuilt from iter1/model and the masks), the fine-tune pending.
    assert read_metrics(layout.metrics(2)).ppl is None
    assert campaign_status(layout).iteration(2).steps == {"prune": "done", "finetune": "pending", "eval": "pending"}
    run_steps(layout, 2, ("finetune",))
    assert_same_tensors(before, stored_tensors(layout.model(2)))
    assert read_metrics(layout.metrics(2)).finetune["final_loss"] == \
        read_metrics(stores["packed"].metrics(2)).finetune["final_loss"]


@pytest.mark.slow
def test_cli_finetune_force_on_the_dense_store_redoes_the_fine_tune_bit_for_bit(stores, tmp_path):
    from typer.testing import CliRunner

    from tierctl.cli import app

    layout = CampaignLayout(tmp_path / "camp")
    shutil.copytree(stores["dense"].root, layout.root)
    before = stored_tensors(layout.model(1))
    r = CliRunner().invoke(app, ["run", str(layout.root), "--iter", "1", "--step", "finetune", "--force",
                                 "--no-check"], env={"NO_COLOR": "1"})
    assert r.exit_code == 0, r.stderr
    assert layout.iterations_on_disk() == [1]  # iteration 2 descended from the fine-tune redone
    assert campaign_status(layout).iteration(1).steps == {"prune": "done", "finetune": "done", "eval": "pending"}
    assert_same_tensors(before, stored_tensors(layout.model(1)))  # the pruned weights' -0.0 included


@pytest.mark.slow
def test_a_changed_input_model_is_refused_in_one_line_writing_nothing(stores, tmp_path, capsys):
    from safetensors.torch import load_file, save_file

    layout = CampaignLayout(tmp_path / "camp")
    shutil.copytree(stores["dense"].root, layout.root)
    weights_file = layout.model(1) / "model.safetensors"
    tensors = load_file(str(weights_file))
    tensors["model.norm.weight"][0] += 1  # iter1/model edited after iteration 2 was pruned from it
    save_file(tensors, str(weights_file), metadata={"format": "pt"})
    before = files(layout.root)
    capsys.readouterr()
    assert restore(layout, 2) == 2
    assert capsys.readouterr().err == (
        f"{layout.keep(2)}: iter1/model with these masks is not iteration 2's pruned model (sha256 differs: the "
        f"input model changed since the prune); redo the prune: tierctl run {layout.root} --iter 2 --force\n")
    assert files(layout.root) == before


def test_the_restores_refusal_reaches_the_run_as_bad_input(tmp_path):
    from tierctl.campaign.restore import run_restore

    layout = CampaignLayout(tmp_path / "nothing")
    layout.root.mkdir()
    with pytest.raises(BadInput, match=rf"^--campaign {layout.root}: no campaign.toml there$"):
        run_restore(layout, 1)
    assert os.listdir(layout.root) == []


@pytest.mark.slow
def test_finetune_force_without_a_keep_file_is_refused_naming_it_and_the_prune_command(stores, tmp_path):
    layout = CampaignLayout(tmp_path / "camp")
    shutil.copytree(stores["dense"].root, layout.root)
    layout.keep(2).unlink()
    with pytest.raises(BadInput, match=rf"^--force --step finetune: {layout.keep(2)} is missing, so the pruned "
                                       rf"model under the fine-tuned weights of {layout.model(2)} cannot be rebuilt; "
                                       rf"redo iteration 2 from its prune: tierctl run .* --iter 2 --force$"):
        plan_run(layout, campaign_status(layout), RunRequest(iteration=2, step="finetune", force=True))


@pytest.mark.slow
@pytest.mark.parametrize("format", ["packed", "dense"])
def test_export_from_the_packed_store_writes_the_bytes_of_an_export_from_the_dense_store(stores, tmp_path, format):
    from tierctl.export.source import resolve_iteration
    from tierctl.export.writer import export_iteration

    for store in ("dense", "packed"):
        export_iteration(resolve_iteration(f"{stores[store].root}@2"), tmp_path / store, format=format)
    files = sorted(p.name for p in (tmp_path / "dense").iterdir())
    assert files == sorted(p.name for p in (tmp_path / "packed").iterdir())
    for name in files:
        assert (tmp_path / "dense" / name).read_bytes() == (tmp_path / "packed" / name).read_bytes(), name


@pytest.mark.slow
def test_a_packed_model_directory_is_smaller_than_the_dense_one(stores):
    for n in (1, 2):
        assert disk_bytes(stores["packed"].model(n)) < disk_bytes(stores["dense"].model(n))


@pytest.mark.slow
def test_a_baseline_with_packed_store_keeps_dense_models_and_says_so_once(tmp_path):
    from tierctl.campaign.runner import run_campaign

    layout = build(tmp_path, "packed", method="wanda-nm", schedule="iteration,dense,mid_2_4,topk,epochs\n1,1,0,0,0\n")
    assert (layout.model(1) / "model.safetensors").is_file() and not (layout.model(1) / PACKED_FILE).exists()
    assert layout.keep(1).is_file()  # its masks are element-wise bits too
    warnings: list[str] = []
    outcome = run_campaign(layout, RunRequest(iteration=1), check=False, on_warning=warnings.append)
    assert outcome.exit_code == 0
    assert warnings == [f"{layout.config}: [run] store packed: [prune] method 'wanda-nm' has no tier map to pack by, "
                        f"so this campaign's iteration models are kept dense"]


def test_a_failed_packed_write_leaves_no_model_directory(tmp_path):
    """Side files are written first, then the packed file: a failure in between (here a tier map of the
    wrong shape) removes the temporary directory, so no half-written model looks complete."""
    from tierctl.lm.models import load_model
    from tierctl.lm.store import Packing, store_model

    model, tokenizer = load_model("tiny-llama", device="cpu")
    maps = {"model.layers.0.mlp.up_proj": torch.zeros(3, 3, dtype=torch.uint8)}  # it has 12 x 4 blocks
    with pytest.raises(BadInput, match=r"camp@1: .*up_proj"):
        store_model(model, tokenizer, tmp_path / "model", Packing(maps, 16, 10, "camp@1", "tiny-llama"))
    assert os.listdir(tmp_path) == []


@pytest.mark.slow
def test_a_fork_of_a_packed_store_campaign_redoes_a_fine_tune_without_touching_its_source(stores, tmp_path):
    from tierctl.campaign.fork import fork_campaign

    source = stores["packed"]
    inode = (source.model(2) / PACKED_FILE).stat().st_ino
    fork = fork_campaign(source, 2, "fork", parent=tmp_path).layout
    assert fork.keep(2).stat().st_ino == source.keep(2).stat().st_ino  # shared
    req = RunRequest(iteration=2, step="finetune", force=True)
    assert plan_run(fork, campaign_status(fork), req) == [(2, "finetune")]
    assert restore(fork, 2) == 0  # what invalidate(fork, req) launches, in this process
    assert not (fork.model(2) / "finetune.json").exists()
    assert (source.model(2) / "finetune.json").is_file() and (source.model(2) / PACKED_FILE).stat().st_ino == inode
    assert campaign_status(source).iteration(2).complete


@pytest.mark.slow
def test_a_wanda_baselines_masks_rebuild_its_pruned_model_too(tmp_path):
    """Element-wise masks need no tier map: with epochs 0 the model after the restore is the one the prune wrote."""
    layout = build(tmp_path, "dense", method="wanda-unstructured",
                   schedule="iteration,dense,mid_2_4,topk,epochs\n1,1,0,0,0\n")
    before = stored_tensors(layout.model(1))
    assert restore(layout, 1) == 0
    assert campaign_status(layout).iteration(1).steps == {"prune": "done", "finetune": "pending", "eval": "pending"}
    after = stored_tensors(layout.model(1))
    assert_same_tensors(before, after)
    assert all(torch.equal(before[k].view(torch.int32), after[k].view(torch.int32))  # -0.0 stays -0.0
               for k in before if before[k].dtype == torch.float32)
