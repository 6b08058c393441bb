"""The offline data layer: chunked datasets written by the online runs and read in place by the
offline runs (format in ``docs/FORMATS.md``).

* :mod:`~blendrl.datasets.layout` -- row layout, file names, the chunk pools (where each state lives);
* :mod:`~blendrl.datasets.manifest` -- ``manifest.json`` and its checks;
* :mod:`~blendrl.datasets.chunks` -- encoding, atomic writing, safe opening and indexing of a chunk;
* :mod:`~blendrl.datasets.writer` / :mod:`~blendrl.datasets.reader` -- ``DatasetWriter``, ``DatasetReader``;
* :mod:`~blendrl.datasets.verify` -- ``summarize``, ``verify``, the cheap file check;
* :mod:`~blendrl.datasets.feed` -- minibatches on the training device (imports torch; not imported here);
* :mod:`~blendrl.datasets.device_pool` -- a prefix kept on the training device (``DevicePool``);
* :mod:`~blendrl.datasets.claims` -- GPU memory claims of the jobs sharing a GPU (``DeviceClaims``);
* :mod:`~blendrl.datasets.cuda_sync` -- CUDA events on the training device only (``CudaSync``);
  these three import torch too and are not imported here.

``dataset_utils.py`` is the entry point: its CLI and the names the scripts import.
"""

from blendrl.datasets.chunks import safe_load_pickle
from blendrl.datasets.layout import FORMAT_VERSION, LOCK_NAME, MANIFEST_NAME, DatasetError, Layout
from blendrl.datasets.manifest import (has_life_lost, pool_bytes, read_manifest, writer_finished,
                                       writer_stopped)
from blendrl.datasets.reader import Batch, DatasetReader
from blendrl.datasets.verify import check_files, summarize, verify, verify_chunks
from blendrl.datasets.writer import DatasetWriter

__all__ = ["FORMAT_VERSION", "LOCK_NAME", "MANIFEST_NAME", "Batch", "DatasetError", "DatasetReader",
           "DatasetWriter", "Layout", "check_files", "has_life_lost", "pool_bytes", "read_manifest",
           "safe_load_pickle", "summarize", "verify", "verify_chunks", "writer_finished",
           "writer_stopped"]
