"""Train a G2P config on the CMU Pronouncing Dictionary, decode the test words with beam search, and score them
(what ``make g2p`` runs).

    python demos/g2p/run.py [CONFIG] --out returnn_ls_out/g2p [--backend torch] [--beam-size 4] [++key value ...]

Writes into ``--out``: the training's own files (checkpoints, ``metrics.json``, ``model.npz``),
``test_hyps.tsv`` (per test word: the word, a tab, the best hypothesis's phones separated by spaces; every test
word once, sorted) and ``report.json``: ``per``/``wer`` (:mod:`returnn_ls.training.g2p_scoring`: several
references per word), ``nll``/``ece`` of the per-phone posteriors with every test pronunciation fed to the decoder
(its end-of-sequence step included), and the seconds of training and decoding. A rerun resumes the training after
its last checkpoint (a finished one only decodes again).

The config defines the dims ``letters_dim`` and ``phones_dim`` and a ``Model``: an attention model with
``encode(letters, spatial_dim=)`` -> encoder dict, ``decode(prev_labels, spatial_dim=, enc=)`` -> (logits, state)
and ``step(labels, state, enc)`` -> (log probs, state) (``demos/g2p/attention.config``: beam search), or a CTC
model called as ``model(letters, spatial_dim=)`` -> (logits, frames dim) (``demos/g2p/ctc.config``: the best path;
NLL is the CTC loss per reference phone, ECE that of the best path's labels aligned to the reference).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

import numpy as np

import returnn_ls as rf
from returnn_ls import Dim
from returnn_ls.training.config import load_config, parse_overrides
from returnn_ls.training.datasets.cmudict import PHONE_VOCAB, CMUDictDataset, encode_word
from returnn_ls.training.engine import Engine
from returnn_ls.training.g2p_scoring import posterior_scores, score_hypotheses
from returnn_ls.training.setup import build_setup

HERE = os.path.dirname(os.path.abspath(__file__))
DECODE_BATCH = 500


def _tensors(
    arrays: list[np.ndarray], sparse_dim: Dim, name: str, batch: Dim | None = None
) -> tuple[rf.Tensor, Dim, Dim]:
    """:return: the padded sequences as a Tensor [batch, time] with its dims (time dynamic; ``batch`` if given)"""
    lens = np.array([len(a) for a in arrays], dtype=np.int32)
    padded = np.zeros((len(arrays), lens.max()), dtype=np.int32)
    for i, a in enumerate(arrays):
        padded[i, : len(a)] = a
    batch = batch or Dim(len(arrays), name="batch")
    time_dim = Dim(rf.convert_to_tensor(lens, dims=[batch]), name=f"{name}_time")
    return rf.convert_to_tensor(padded, dims=[batch, time_dim], sparse_dim=sparse_dim), batch, time_dim


def decode_words(model: Any, config: Any, words: list[str], beam_size: int) -> dict[str, list[str]]:
    """:return: word -> the phones of the best hypothesis of beam search"""
    letters_dim, phones_dim = config.get("letters_dim"), config.get("phones_dim")
    eos = config.get("EOS", 0)
    out: dict[str, list[str]] = {}
    ordered = sorted(words, key=len)
    for start in range(0, len(ordered), DECODE_BATCH):
        chunk = ordered[start : start + DECODE_BATCH]
        letters, batch, time_dim = _tensors([encode_word(w) for w in chunk], letters_dim, "letters")
        enc = model.encode(letters, spatial_dim=time_dim)
        max_len = time_dim.dyn_size_ext * 2 + 3
        seqs, _, out_dim, beam = rf.beam_search(
            lambda labels, state, enc=enc: model.step(labels, state, enc), initial_state={"dec": None, "post": None},
            batch_dims=[batch], vocab_dim=phones_dim, beam_size=beam_size, max_seq_len=max_len, bos_idx=eos,
            eos_idx=eos,
        )  # fmt: skip
        best = rf.gather(seqs, indices=0, axis=beam)
        labels = best.copy_transpose([batch, out_dim]).numpy()
        lens = rf.gather(out_dim.dyn_size_ext, indices=0, axis=beam).numpy()
        for i, word in enumerate(chunk):
            out[word] = [PHONE_VOCAB[k] for k in labels[i, : lens[i]]]
    return out


def teacher_forced_posteriors(model: Any, config: Any, dataset: CMUDictDataset) -> dict:
    """:return: NLL, ECE, accuracy and reliability bins of the decoder fed every pronunciation of ``dataset``"""
    letters_dim, phones_dim = config.get("letters_dim"), config.get("phones_dim")
    dataset.init_seq_order(1)
    seqs = [dataset.get_seq(i) for i in range(dataset.num_seqs)]
    rows, targets = [], []
    for start in range(0, len(seqs), DECODE_BATCH):
        chunk = seqs[start : start + DECODE_BATCH]
        letters, batch, letters_time = _tensors([s["data"] for s in chunk], letters_dim, "letters")
        phones, _, phones_time = _tensors([s["classes"] for s in chunk], phones_dim, "phones", batch)
        enc = model.encode(letters, spatial_dim=letters_time)
        prev = rf.shift_right(phones, axis=phones_time, pad_value=config.get("BOS", 0))
        logits, _ = model.decode(prev, spatial_dim=phones_time, enc=enc)
        log_probs = rf.log_softmax(logits, axis=phones_dim).copy_transpose([batch, phones_time, phones_dim]).numpy()
        for i, seq in enumerate(chunk):
            rows.append(log_probs[i, : len(seq["classes"])])
            targets.append(seq["classes"])
    return posterior_scores(np.concatenate(rows), np.concatenate(targets))


def _ctc_log_probs(model: Any, config: Any, arrays: list[np.ndarray]) -> tuple[rf.Tensor, Dim, Dim, Any]:
    """:return: the CTC model's logits for letter sequences, the batch and frame dims, and log probs as numpy
    ``[B, frames, classes]`` with the frame lengths"""
    phones_dim = config.get("phones_dim")
    letters, batch, time_dim = _tensors(arrays, config.get("letters_dim"), "letters")
    logits, frames = model(letters, spatial_dim=time_dim)
    log_probs = rf.log_softmax(logits, axis=phones_dim).copy_transpose([batch, frames, phones_dim]).numpy()
    return logits, batch, frames, (log_probs, frames.dyn_size_ext.copy_transpose([batch]).numpy())


def ctc_decode_words(model: Any, config: Any, words: list[str]) -> dict[str, list[str]]:
    """:return: word -> the phones of the CTC model's best path (repeats merged, blanks removed)"""
    blank, out, words = config.get("BLANK", 0), {}, sorted(words, key=len)
    for start in range(0, len(words), DECODE_BATCH):
        chunk = words[start : start + DECODE_BATCH]
        _, _, _, (log_probs, lens) = _ctc_log_probs(model, config, [encode_word(w) for w in chunk])
        for i, word in enumerate(chunk):
            best = log_probs[i, : lens[i]].argmax(-1)
            keep = (best != blank) & np.concatenate([[True], best[1:] != best[:-1]])
            out[word] = [PHONE_VOCAB[k] for k in best[keep]]
    return out


def ctc_posteriors(model: Any, config: Any, dataset: CMUDictDataset) -> dict:
    """:return: ``nll`` (the CTC loss per reference phone) and the ECE of the best path's labels"""
    from returnn_ls.training.metrics import MetricAccumulator

    dataset.init_seq_order(1)
    seqs = [dataset.get_seq(i) for i in range(dataset.num_seqs)]
    acc, total_loss, total_phones = MetricAccumulator(frame_level=False), 0.0, 0
    for start in range(0, len(seqs), DECODE_BATCH):
        chunk = seqs[start : start + DECODE_BATCH]
        logits, batch, frames, (log_probs, lens) = _ctc_log_probs(model, config, [s["data"] for s in chunk])
        phones, _, phones_time = _tensors([s["classes"] for s in chunk], config.get("phones_dim"), "phones", batch)
        loss = rf.ctc_loss(logits=logits, targets=phones, input_spatial_dim=frames, targets_spatial_dim=phones_time,
                           blank_index=config.get("BLANK", 0))  # fmt: skip
        total_loss += float(loss.numpy().sum())
        total_phones += sum(len(s["classes"]) for s in chunk)
        targets = phones.copy_transpose([batch, phones_time]).numpy()
        acc.add(log_probs, lens, targets, np.array([len(s["classes"]) for s in chunk]), blank=config.get("BLANK", 0))
    result = acc.result()
    return {"nll": total_loss / max(total_phones, 1), "ece": result["ece"], "accuracy": 1.0 - result["error_rate"],
            "reliability": result["reliability"]}  # fmt: skip


def evaluate(setup: Any, beam_size: int, test_seqs: int | None) -> tuple[dict, dict[str, list[str]]]:
    """Decode and score the test set with the trained model; :return: the scores and the hypotheses"""
    config, model = setup.config, setup.task.model
    train_opts = config.get("train")
    train_opts = train_opts if isinstance(train_opts, dict) else {}
    # the targets as in training: with the end-of-sequence label for an attention decoder, none for CTC (whose
    # class 0 is the blank)
    test = CMUDictDataset(subset="test", num_seqs=test_seqs, dict_file=train_opts.get("dict_file"),
                          seq_postfix=train_opts.get("seq_postfix", [0]))  # fmt: skip
    refs = test.references()
    if test_seqs is not None:
        test.init_seq_order(1)
        kept = {test.get_seq(i)["seq_tag"].split("(")[0] for i in range(test.num_seqs)}
        refs = {w: r for w, r in refs.items() if w in kept}
    setup.task.set_train_flag(False)
    rf.init_forward_step_run_ctx()
    try:
        with setup.trainer.no_grad():
            begin = time.perf_counter()
            ctc = not hasattr(model, "step")
            hyps = ctc_decode_words(model, config, sorted(refs)) if ctc else \
                decode_words(model, config, sorted(refs), beam_size)  # fmt: skip
            decode_seconds = time.perf_counter() - begin
            posteriors = (ctc_posteriors if ctc else teacher_forced_posteriors)(model, config, test)
    finally:
        rf.reset_run_ctx()
    scores = score_hypotheses(hyps, refs)
    return {
        **scores,
        "nll": posteriors["nll"],
        "ece": posteriors["ece"],
        "phone_accuracy": posteriors["accuracy"],
        "reliability": posteriors["reliability"],
        "decode_seconds": decode_seconds,
    }, hyps


def main(argv: list[str] | None = None) -> int:
    """Train, decode, score, write ``test_hyps.tsv`` and ``report.json``; :return: the exit code"""
    args_list, overrides = parse_overrides(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config", nargs="?", default=os.path.join(HERE, "attention.config"))
    parser.add_argument("--out", default="returnn_ls_out/g2p")
    parser.add_argument("--backend", default=None, help="default: the config's backend")
    parser.add_argument("--beam-size", type=int, default=None, help="default: the config's beam_size")
    parser.add_argument("--test-seqs", type=int, default=None, help="score only this many test sequences (quick)")
    args = parser.parse_args(args_list)
    config = load_config(args.config, overrides)
    backend = args.backend or config.get("backend") or "torch"
    begin, cpu_begin = time.perf_counter(), time.process_time()
    setup = build_setup(config, backend, out_dir=args.out)
    metrics = Engine(setup, args.out, progress=False).run()
    train_seconds = time.perf_counter() - begin
    beam_size = args.beam_size or config.get("beam_size", 4)
    scores, hyps = evaluate(setup, beam_size, args.test_seqs)
    with open(os.path.join(args.out, "test_hyps.tsv"), "w", encoding="utf-8") as f:
        f.writelines(f"{word}\t{' '.join(hyps[word])}\n" for word in sorted(hyps))
    report = {
        "per": scores.pop("per"), "wer": scores.pop("wer"), "nll": scores.pop("nll"), "ece": scores.pop("ece"),
        "seconds": {"train": train_seconds, "decode": scores.pop("decode_seconds"),
                    "total": time.perf_counter() - begin, "cpu_total": time.process_time() - cpu_begin},
        "epoch_seconds": [h.get("seconds") for h in metrics.get("history", [])],
        "backend": backend, "device": setup.device, "beam_size": beam_size, "config": args.config,
        "overrides": dict(overrides), "num_epochs": setup.num_epochs,
        "label_smoothing": config.get("label_smoothing"), **scores,
    }  # fmt: skip
    with open(os.path.join(args.out, "report.json"), "w", encoding="utf-8") as f:
        json.dump(report, f, indent=1)
    print(f"test PER {report['per']:.2%}  WER {report['wer']:.2%}  NLL {report['nll']:.4f}  ECE {report['ece']:.4f}"
          f"  ({report['seconds']['total']:.0f} s; {args.out}/report.json)")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
