"""The datasets a config can name in ``train`` / ``dev``."""

from returnn_ls.training.datasets.synthetic import DATASET_OPTIONS, SyntheticDataset, collate, make_dataset

__all__ = ["DATASET_OPTIONS", "SyntheticDataset", "collate", "make_dataset"]
