"""The G2P configs (demos/g2p/): stepping the attention decoder one label at a time (what beam search does) gives
the log probs of the whole-sequence decoder used in training; and demos/g2p/run.py trains, decodes (beam search,
or the CTC model's best path) and scores end to end on a tiny dictionary, writing every test word once."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

import returnn_ls as rf
from returnn_ls import Dim
from returnn_ls.training.config import load_config
from returnn_ls.training.datasets.cmudict import split_of
from tests._nn_helpers import restore_global_state  # noqa: F401 (an autouse fixture)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(ROOT, "demos", "g2p", "attention.config")
CTC_CONFIG = os.path.join(ROOT, "demos", "g2p", "ctc.config")


def _batch(rng, lens, vocab: Dim, batch: Dim, name: str) -> tuple[rf.Tensor, Dim, np.ndarray]:
    values = rng.integers(1, vocab.dimension, size=(len(lens), max(lens))).astype("int32")
    time_dim = Dim(rf.convert_to_tensor(np.asarray(lens, "int32"), dims=[batch]), name=name)
    return rf.convert_to_tensor(values, dims=[batch, time_dim], sparse_dim=vocab), time_dim, values


def test_step_wise_decoding_equals_whole_sequence(backend):
    config = load_config(CONFIG, [("dropout", "0.0")])
    rf.set_random_seed(3)
    model = config.get("get_model")(epoch=1, step=0)
    letters_dim, phones_dim = config.get("letters_dim"), config.get("phones_dim")
    rng = np.random.default_rng(0)
    batch = Dim(3, name="batch")
    letters, letters_time, _ = _batch(rng, [5, 2, 4], letters_dim, batch, "letters")
    prev, phones_time, prev_np = _batch(rng, [4, 3, 1], phones_dim, batch, "phones")
    enc = model.encode(letters, spatial_dim=letters_time)
    logits, _ = model.decode(prev, spatial_dim=phones_time, enc=enc)
    whole = rf.log_softmax(logits, axis=phones_dim).copy_transpose([batch, phones_time, phones_dim]).numpy()
    state = {"dec": None, "post": None}
    for t in range(3):  # the step-wise decoder over the longest but one length: every sequence is valid there
        labels = rf.convert_to_tensor(prev_np[:, t], dims=[batch], sparse_dim=phones_dim)
        log_probs, state = model.step(labels, state, enc)
        step = log_probs.copy_transpose([batch, phones_dim]).numpy()
        for b, length in enumerate([4, 3, 1]):
            if t < length:
                np.testing.assert_allclose(step[b], whole[b, t], rtol=1e-4, atol=1e-5)


def _fake_dictionary(path: str) -> None:
    """A dictionary whose pronunciation is the word's letters mapped to phones (so a model can learn it)."""
    phones = "AA B K D EH F G HH IH JH".split()
    rng = np.random.default_rng(0)
    lines = []
    for _ in range(300):
        word = "".join(rng.choice(list("abcdefghij"), size=rng.integers(1, 5)))
        lines.append(f"{word} " + " ".join(phones["abcdefghij".index(c)] + "1" for c in word))
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(sorted(set(lines))) + "\n")


@pytest.mark.parametrize("config", [CONFIG, CTC_CONFIG], ids=["attention", "ctc"])
def test_run_trains_decodes_and_writes_every_test_word(tmp_path, backend, config):
    from demos.g2p.run import main

    dict_file = str(tmp_path / "fake.dict")
    _fake_dictionary(dict_file)
    out = str(tmp_path / "out")
    data = "{'class': 'CMUDictDataset', 'subset': '%s', 'dict_file': %r, 'seq_postfix': " + (
        "[]}" if config == CTC_CONFIG else "[0]}"
    )
    args = ["++train", data % ("train", dict_file), "++dev", data % ("dev", dict_file), "++num_epochs", "1"]
    assert main([config, "--out", out, "--backend", backend.name, "--beam-size", "3", *args]) == 0
    with open(os.path.join(out, "report.json"), encoding="utf-8") as f:
        report = json.load(f)
    with open(dict_file, encoding="utf-8") as f:
        words = sorted({line.split()[0] for line in f if split_of(line.split()[0]) == "test"})
    with open(os.path.join(out, "test_hyps.tsv"), encoding="utf-8") as f:
        rows = [line.rstrip("\n").split("\t") for line in f]
    assert [r[0] for r in rows] == words and report["words"] == len(words)
    assert 0.0 <= report["per"] and 0.0 <= report["wer"] <= 1.0 and report["nll"] > 0 and 0 <= report["ece"] <= 1
    assert set(report["seconds"]) == {"train", "decode", "total", "cpu_total"} and report["beam_size"] == 3


def test_ctc_report_scores_the_references_without_an_end_label(tmp_path, select):
    """The CTC model's test NLL is the CTC loss of the word's own phones (its class 0 is the blank, so the
    end-of-sequence label of the attention targets must not be appended), against torch's F.ctc_loss."""
    torch = pytest.importorskip("torch")
    from demos.g2p.run import _ctc_log_probs, evaluate
    from returnn_ls.training.datasets.cmudict import PHONE_VOCAB, encode_word
    from returnn_ls.training.engine import Engine
    from returnn_ls.training.setup import build_setup

    select("torch")
    dict_file = str(tmp_path / "fake.dict")
    _fake_dictionary(dict_file)
    data = "{'class': 'CMUDictDataset', 'subset': '%s', 'dict_file': %r, 'seq_postfix': []}"
    config = load_config(CTC_CONFIG, [("train", data % ("train", dict_file)), ("dev", data % ("dev", dict_file)),
                                      ("num_epochs", "1")])  # fmt: skip
    setup = build_setup(config, "torch", out_dir=str(tmp_path / "out"))
    Engine(setup, str(tmp_path / "out"), progress=False).run()
    scores, _ = evaluate(setup, beam_size=1, test_seqs=None)
    with open(dict_file, encoding="utf-8") as f:
        pairs = [(w, [PHONE_VOCAB.index(p.rstrip("1")) for p in ps]) for w, *ps in map(str.split, f)
                 if split_of(w) == "test"]  # fmt: skip
    setup.task.set_train_flag(False)
    rf.init_forward_step_run_ctx()
    try:
        _, _, _, (log_probs, lens) = _ctc_log_probs(setup.task.model, config, [encode_word(w) for w, _ in pairs])
    finally:
        rf.reset_run_ctx()
    targets = [torch.tensor(p) for _, p in pairs]
    loss = torch.nn.functional.ctc_loss(
        torch.tensor(log_probs).transpose(0, 1), torch.nn.utils.rnn.pad_sequence(targets, batch_first=True),
        torch.tensor(lens), torch.tensor([len(p) for _, p in pairs]), blank=0, reduction="sum")  # fmt: skip
    assert scores["nll"] == pytest.approx(float(loss) / sum(len(p) for _, p in pairs), rel=1e-4)
