"""The datasets a config can name in ``train`` / ``dev``, and :func:`make_dataset`, the one registry of them.

=====================  =========================================================  ===================
class                  options (besides the shared ones of :class:`Dataset`)      ``batch_size`` counts
=====================  =========================================================  ===================
``Task12AXDataset``    ``num_seqs``                                               frames
``CMUDictDataset``     ``subset``, ``seq_postfix``, ``num_seqs``, ``dict_file``   frames
``HDFDataset``         ``files``, ``cache_byte_size`` (no effect)                 frames
``synthetic``          ``num_seqs``, ``seed``, ``task_seed``, ``min_labels``,     sequences
                       ``max_labels``, ``noise``, ``input_dim``, ``num_labels``
=====================  =========================================================  ===================
"""

from __future__ import annotations

from typing import Any

from returnn_ls.training.datasets.base import BASE_OPTIONS, NOOP_OPTIONS, DataKey, Dataset
from returnn_ls.training.datasets.cmudict import CMUDictDataset
from returnn_ls.training.datasets.hdf import HDFDataset
from returnn_ls.training.datasets.seq_order import check_seq_ordering
from returnn_ls.training.datasets.synthetic import DATASET_OPTIONS, SyntheticDataset
from returnn_ls.training.datasets.task12ax import Task12AXDataset

__all__ = [
    "CMUDictDataset",
    "DATASET_CLASSES",
    "DATASET_OPTIONS",
    "DataKey",
    "Dataset",
    "HDFDataset",
    "SyntheticDataset",
    "Task12AXDataset",
    "make_dataset",
]

_REQUIRED = object()
#: class name -> (class, its own options with defaults; ``_REQUIRED`` where there is none)
DATASET_CLASSES: dict[str, tuple[type[Dataset], dict[str, Any]]] = {
    "Task12AXDataset": (Task12AXDataset, {"num_seqs": _REQUIRED}),
    "HDFDataset": (HDFDataset, {"files": _REQUIRED, "cache_byte_size": None}),
    "synthetic": (SyntheticDataset, DATASET_OPTIONS),
    "CMUDictDataset": (CMUDictDataset, {"subset": "train", "seq_postfix": (0,), "num_seqs": None, "dict_file": None}),
}
#: RETURNN dataset classes that are not available here (they get a message saying so).
_RETURNN_ONLY = (
    "OggZipDataset", "MetaDataset", "CombinedDataset", "ConcatDataset", "ConcatSeqsDataset", "ExternSprintDataset",
    "SprintCacheDataset", "LmDataset", "TranslationDataset", "NextGenHDFDataset", "SiameseHDFDataset",
    "DistributeFilesDataset", "PostprocessingDataset", "MultiProcDataset", "VariableDataset", "StaticDataset",
    "DummyDataset", "DummyGenericDataset", "TaskEpisodicCopyDataset", "TaskXmlModelingDataset",
    "TaskVariableAssignmentDataset", "TaskNumberBaseConvertDataset", "LibriSpeechCorpus", "TimitDataset",
    "BlissDataset", "NumpyDumpDataset", "RawWavDataset", "MapDatasetWrapper", "HuggingFaceDataset",
)  # fmt: skip
_EVAL_SEQ_ORDERING = "sorted"


def make_dataset(
    opts: dict[str, Any],
    *,
    name: str = "dataset",
    batching: str | None = None,
    input_dim: int | None = None,
    num_labels: int | None = None,
) -> Dataset:
    """Create the dataset of a config's ``train`` / ``dev`` dict, with RETURNN's defaults per role.

    The sequence order is the dict's ``seq_ordering`` if it sets one; else, for ``name="train"``, the config's
    ``batching`` (``"default"`` if None), and for any other name ``"sorted"`` (RETURNN's default for dev and eval
    data: batches of similar lengths; generating datasets such as 12AX keep their order).

    Example: ``make_dataset({"class": "Task12AXDataset", "num_seqs": 1000}, name="train", batching="random")``.

    :param opts: the dict, e.g. ``{"class": "HDFDataset", "files": ["train.hdf"]}`` (not modified)
    :param name: ``"train"``, ``"dev"``, ... (for the default order and for messages)
    :param batching: the config's ``batching`` (checked by :func:`returnn_ls.training.batching.parse_batching`)
    :param input_dim: the dim of extern_data ``data``, for datasets that need it (``synthetic``)
    :param num_labels: the dim of the sparse targets, for datasets that need it (``synthetic``)
    :raise ValueError: for an unknown class or option (naming it, the known ones and the closest), or a bad value
    """
    cls, kwargs = _check_opts(opts, name)
    if "seq_ordering" not in kwargs:
        train_order = "default" if batching is None else check_seq_ordering(batching, "batching")
        kwargs["seq_ordering"] = train_order if name == "train" else _EVAL_SEQ_ORDERING
    own = DATASET_CLASSES[opts["class"]][1]
    for option, hint in (("input_dim", input_dim), ("num_labels", num_labels)):
        if option in own and kwargs.get(option) is None and hint is not None:
            kwargs[option] = hint
    missing = [option for option, default in own.items() if default is _REQUIRED and option not in kwargs]
    if missing:
        raise ValueError(f"{name}: {opts['class']} needs the option {missing[0]!r}")
    try:
        return cls(**kwargs)
    except ValueError as exc:
        raise ValueError(f"{name}: {exc}") from None


def _check_opts(opts: Any, name: str) -> tuple[type[Dataset], dict[str, Any]]:
    """:return: the class and the constructor arguments of ``opts`` (without the no-op RETURNN options)"""
    from returnn_ls.training.config import suggest

    if not isinstance(opts, dict) or "class" not in opts:
        raise ValueError(f"{name}: a dataset must be a dict with a 'class', e.g. {{'class': 'HDFDataset', 'files': "
                         f"['train.hdf']}}, got {opts!r}")  # fmt: skip
    class_name = opts["class"]
    if class_name not in DATASET_CLASSES:
        if class_name in _RETURNN_ONLY:
            raise ValueError(f"{name}: RETURNN's dataset class {class_name!r} is not supported by returnn-ls; "
                             f"supported: {sorted(DATASET_CLASSES)}")  # fmt: skip
        raise ValueError(f"{name}: unknown dataset class {class_name!r}; known: {sorted(DATASET_CLASSES)}"
                         f"{suggest(class_name, DATASET_CLASSES)}")  # fmt: skip
    cls, own = DATASET_CLASSES[class_name]
    label = class_name if class_name.endswith("Dataset") else f"{class_name} dataset"
    known = sorted({*own, *BASE_OPTIONS})
    kwargs: dict[str, Any] = {}
    for option, value in opts.items():
        if option == "class":
            continue
        if option in NOOP_OPTIONS:
            noop = NOOP_OPTIONS[option]
            if value != noop and not (option == "chunking" and value in (None, 0)):
                raise ValueError(f"{name}: {label} option {option}={value!r} is not supported by returnn-ls "
                                 f"(only {noop!r})")  # fmt: skip
            continue
        if option not in known:
            raise ValueError(f"{name}: unknown {label} option {option!r}; known: {known}{suggest(option, known)}")
        kwargs[option] = value
    return cls, kwargs
