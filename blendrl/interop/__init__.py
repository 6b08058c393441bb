"""Exchange with other offline-RL tools' dataset formats (docs/MINARI.md).

* :mod:`~blendrl.interop.minari_common` -- what export and import share: the spaces of an
  environment, the metadata key, opening a Minari dataset by id;
* :mod:`~blendrl.interop.minari_export` -- a project dataset -> a Minari dataset
  (``python dataset_utils.py export-minari``);
* :mod:`~blendrl.interop.minari_import` -- a Minari dataset -> a project dataset in a cache folder,
  which the offline scripts then train on (``--minari_dataset``).

``minari`` (and ``h5py``, ``jax``) are imported inside the functions that need them: the rest of the
project, its tests included, runs without them.
"""
