"""forcefit: fit interatomic force fields.

Data flows one way: io -> neighbors -> descriptors -> data -> models -> train -> deploy.
"""

from .io import ReadError, read, write_extxyz
from .saved import load
from .neighbors import Edges, Graph, build_graph, neighbor_list
from .structure import Structure, StructureError

__version__ = "0.1.0"

__all__ = [
    "Edges", "Graph", "ReadError", "Structure", "StructureError", "build_graph", "neighbor_list",
    "load", "read", "write_extxyz", "__version__",
]
