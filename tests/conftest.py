"""Suite-wide settings: one thread for torch and BLAS.

Tests run many tiny tensor operations; on a small shared machine thread start-up and
oversubscription cost more than they give (measured: 47-71 s -> 13 s for test_potentials.py).
"""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

import torch  # noqa: E402

torch.set_num_threads(1)
