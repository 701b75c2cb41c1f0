"""How the tree kernels walk the rows: constants shared by :mod:`pipeline.models.tree_infer`
(which sizes the threads' chunks on group borders) and the Numba kernels of
:mod:`pipeline.models._tree_kernels` (which freeze them into the compiled code). Their own
module, so that neither of the two imports the other at import time."""

GROUP = 128  # rows that descend a tree together (enough independent work to hide load latency)
STEPS = 4  # levels between two compactions of the list of rows still inside the tree
BLOCK = 256  # rows whose masks a boosted tree's splits clear together (boost_bitvector): 1 KB of masks
