"""The command line's outputs: unwritable paths are usage errors before training starts; a checkpoint that cannot
be written (a full disk) is reported with its epoch and leaves the previous checkpoint usable; the epoch line names
the backend; the unsmoothed dev loss of several losses says it is their sum; ``compare`` on rf-style configs."""

from __future__ import annotations

import errno
import json
import os
import sys
import zipfile

import pytest

from returnn_ls.cli import main
from returnn_ls.training import plots
from returnn_ls.training.checkpoints import find_checkpoints, read_checkpoint
from returnn_ls.training.outputs import unwritable_reason

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from _engine_helpers import NETWORK_CONFIG, RF_CONFIG, write_config  # noqa: E402

pytestmark = pytest.mark.usefixtures("cli_isolated")
QUIET = ["--no-progress", "++num_epochs", "1"]


def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_unwritable_reason_names_the_blocking_file(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert unwritable_reason(str(blocker / "sub" / "out"), kind="folder") == f"{blocker} is a file, not a folder"
    assert unwritable_reason(str(blocker), kind="folder") == f"{blocker} exists and is not a folder"
    assert unwritable_reason(str(tmp_path), kind="file") == f"{tmp_path} is a folder"
    assert unwritable_reason(str(tmp_path / "new" / "deeper"), kind="folder") is None  # created later
    assert unwritable_reason(str(blocker), kind="file") is None  # overwritten later
    assert not (tmp_path / "new").exists()  # the check creates nothing
    with pytest.raises(ValueError, match="kind must be"):
        unwritable_reason(str(tmp_path), kind="dir")


@pytest.mark.parametrize(
    "option, key",
    [
        (["--out", "{blocker}/out"], "--out"),
        (["++model", "{blocker}/m/model"], "model"),
        (["++learning_rate_file", "{tmp}"], "learning_rate_file"),
    ],
)
def test_an_unwritable_output_is_a_usage_error_before_training(backend, tmp_path, capsys, option, key):
    config = write_config(tmp_path, RF_CONFIG, backend=backend.name)
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where a folder should be")
    option = [o.format(blocker=blocker, tmp=tmp_path) for o in option]
    argv = ["train", str(config), *QUIET, *option] + ([] if key == "--out" else ["--out", str(tmp_path / "o")])
    assert main(argv) == 2
    line = _error_line(capsys)
    assert line.startswith("returnn-ls: error: ") and f"{key} '{option[1]}' cannot be written" in line, line
    assert not (tmp_path / "o").exists()  # nothing trained, nothing written


def test_etc_passwd_as_out_folder_exits_2_with_one_line(capsys):
    if not os.path.isfile("/etc/passwd"):
        pytest.skip("no /etc/passwd on this system")
    assert main(["train", "--backend", "torch", "--out", "/etc/passwd/x", "--no-progress"]) == 2
    assert _error_line(capsys) == (
        "returnn-ls: error: --out '/etc/passwd/x' cannot be written: /etc/passwd is a file, not a folder"
    )


def _full_disk_at(monkeypatch, epoch: int) -> None:
    """Make writing the checkpoint of ``epoch`` fail halfway with ENOSPC, as a full disk does."""
    real = zipfile.ZipFile.writestr

    def writestr(self, name, data, *args, **kwargs):
        target = getattr(self.fp, "name", "") or ""
        if name.startswith("params/") and target.split(".tmp")[0].endswith(f".{epoch:03d}"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(self, name, data, *args, **kwargs)

    monkeypatch.setattr(zipfile.ZipFile, "writestr", writestr)


def test_a_full_disk_names_the_epoch_and_a_rerun_resumes(backend, tmp_path, capsys, monkeypatch):
    config = write_config(tmp_path, RF_CONFIG, backend=backend.name)
    out = tmp_path / "out"
    argv = ["train", str(config), "--out", str(out), "--no-progress", "++num_epochs", "3"]
    with monkeypatch.context() as patch:
        _full_disk_at(patch, 2)
        assert main(argv) == 1
    captured = capsys.readouterr()
    error = captured.err.strip().splitlines()[-1]
    assert error.startswith(f"returnn-ls: error: epoch 2: cannot write the checkpoint {out / 'model.002'}: ")
    assert "No space left on device" in error and f"the checkpoint of epoch 1 ({out / 'model.001'}) is intact" in error
    assert [e for e, _ in find_checkpoints(str(out / "model"))] == [1]
    assert not [p for p in os.listdir(out) if ".tmp" in p]  # the half-written file is gone
    assert read_checkpoint(str(out / "model.001")).epoch == 1  # complete and readable
    assert main(argv) == 0
    assert f"resuming after epoch 1 from {out / 'model.001'}" in capsys.readouterr().out
    history = json.loads((out / "metrics.json").read_text())["history"]
    assert [h["epoch"] for h in history] == [1, 2, 3]
    assert [e for e, _ in find_checkpoints(str(out / "model"))] == [3, 2, 1]


def test_the_epoch_line_names_the_backend_and_rf_configs_say_what_is_not_computed(backend, tmp_path, capsys):
    config = write_config(tmp_path, RF_CONFIG, backend=backend.name)
    assert main(["train", str(config), "--out", str(tmp_path / "out"), *QUIET]) == 0
    lines = capsys.readouterr().out.splitlines()
    epoch_line = next(line for line in lines if line.startswith("epoch 1 "))
    assert epoch_line.endswith(f" backend {backend.name}"), epoch_line
    notes = [line for line in lines if "unsmoothed dev loss" in line]
    assert len(notes) == 1 and "network dicts only" in notes[0] and "rf-style" in notes[0], lines


TWO_LOSSES = NETWORK_CONFIG.replace(
    '"loss_opts": {{"label_smoothing": 0.1}}}},',
    '"loss_opts": {{"label_smoothing": 0.1}}}},\n'
    '    "second": {{"class": "softmax", "from": "enc", "target": "alignment", "loss": "ce"}},',
)


def test_the_unsmoothed_dev_loss_of_two_losses_says_it_is_their_sum(backend, tmp_path):
    assert TWO_LOSSES != NETWORK_CONFIG
    config = write_config(tmp_path, TWO_LOSSES, backend=backend.name)
    assert main(["train", str(config), "--out", str(tmp_path / "out"), *QUIET]) == 0
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["dev_loss_terms"] == ["output", "second"]
    assert plots._terms(metrics) == ", sum of output + second"
    assert plots._terms({"dev_loss_terms": ["output"]}) == ""
    single = write_config(tmp_path, NETWORK_CONFIG, name="one.config", backend=backend.name)
    assert main(["train", str(single), "--out", str(tmp_path / "one"), *QUIET]) == 0
    assert "dev_loss_terms" not in json.loads((tmp_path / "one" / "metrics.json").read_text())


RF_SMOOTHING = RF_CONFIG.replace("smoothing = 0.0 if epoch < 2 else 0.1", "smoothing = label_smoothing")


def test_compare_on_an_rf_config_without_label_smoothing_says_what_it_needs(backend, tmp_path, capsys):
    config = write_config(tmp_path, RF_CONFIG, backend=backend.name)
    assert main(["compare", str(config), "--out", str(tmp_path / "cmp"), *QUIET]) == 1
    line = _error_line(capsys)
    assert "rf-style config" in line and "label_smoothing = ..." in line and "network has no" not in line, line
    assert not (tmp_path / "cmp").exists()


def test_compare_varies_label_smoothing_of_an_rf_config(backend, tmp_path):
    assert RF_SMOOTHING != RF_CONFIG
    config = write_config(tmp_path, RF_SMOOTHING + "label_smoothing = 0.0\n", backend=backend.name)
    out = tmp_path / "cmp"
    assert main(["compare", str(config), "--out", str(out), "--smoothing", "0", "0.5", *QUIET]) == 0
    runs = json.loads((out / "compare.json").read_text())["runs"]
    assert [r["smoothing"] for r in runs] == [0.0, 0.5]
    first, second = (r["history"][0]["train_scores"]["ce"] for r in runs)
    assert second > first + 0.05, (first, second)  # the smoothed target's loss is larger: the value arrived
    assert (out / "compare.png").exists()


def test_the_train_function_checks_its_outputs_too(tmp_path):
    from returnn_ls.training.config import load_config_text
    from returnn_ls.training.train import OutputPathError, train

    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    config = load_config_text(RF_CONFIG.format(backend="torch") + f"learning_rate_file = {str(blocker / 'lr')!r}\n",
                              str(tmp_path / "c.config"))  # fmt: skip
    with pytest.raises(OutputPathError, match=r"c\.config:\d+: learning_rate_file '.*/blocker/lr' cannot be written"):
        train(config, backend="torch", out_dir=str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()
