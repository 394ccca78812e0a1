"""Model code in RETURNN's frontend style: modules, parameters and layers (also as ``rf.Module``, ``rf.Linear``...)."""

from returnn_ls.nn.init import set_random_seed
from returnn_ls.nn.module import Functional, Module, ModuleList, Sequential
from returnn_ls.nn.parameter import Parameter

__all__ = ["Functional", "Module", "ModuleList", "Parameter", "Sequential", "set_random_seed"]
