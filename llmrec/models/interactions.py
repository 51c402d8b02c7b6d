"""The user-item interaction matrix the collaborative-filtering baselines are built from."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import scipy.sparse as sp
import torch


def interaction_matrix(histories: Sequence[np.ndarray], num_columns: int) -> sp.csr_matrix:
    """[len(histories), num_columns] binary CSR: row r has a 1 at every item index in `histories[r]` (repeats
    count once; column 0 is padding and stays empty)."""
    rows = np.repeat(np.arange(len(histories)), [len(h) for h in histories])
    cols = np.concatenate([np.asarray(h, dtype=np.int64) for h in histories]) if len(histories) else np.array([])
    matrix = sp.csr_matrix((np.ones(len(cols), dtype=np.float32), (rows, cols)),
                           shape=(len(histories), num_columns))
    matrix.sum_duplicates()
    matrix.data[:] = 1.0
    return matrix


def to_torch(matrix: sp.spmatrix) -> torch.Tensor:
    """A scipy sparse matrix as a torch sparse COO tensor (float32)."""
    coo = matrix.tocoo()
    indices = torch.as_tensor(np.vstack([coo.row, coo.col]), dtype=torch.long)
    values = torch.as_tensor(coo.data, dtype=torch.float32)
    return torch.sparse_coo_tensor(indices, values, coo.shape, check_invariants=True).coalesce()
