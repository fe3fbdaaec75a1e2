"""The data layer: readers, the prepared store, protocols, long-tailed splits, transforms.

Modules: ``store`` (the memory-mapped store), ``ntu_raw``/``ntu_parse``/``ntu_denoise`` (NTU
RGB+D ``.skeleton`` files), ``ntu_npz`` (CTR-GCN's processed files), ``ucla`` and
``ucla_transforms`` (NW-UCLA), ``pyskl`` / ``safe_pickle`` / ``pyskl_transforms`` (PYSKL
annotation pickles, read without running code; Kinetics-400), ``synth`` (the embedded
synthetic set), ``protocols``,
``splits`` (long-tailed lists), ``lt`` (train/test rows for a run), ``transforms``,
``samplers`` and ``loader`` (batched training input). ``python -m benchmark data --help``.
"""
