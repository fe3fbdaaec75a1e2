"""The data layer: readers, the prepared store, protocols, long-tailed splits, transforms.

Modules: ``store`` (the memory-mapped store), ``ntu_raw``/``ntu_parse``/``ntu_denoise`` (NTU
RGB+D ``.skeleton`` files), ``ntu_npz`` (CTR-GCN's processed files), ``ucla`` and
``ucla_transforms`` (NW-UCLA), ``synth`` (the embedded synthetic set), ``protocols``,
``splits`` (long-tailed lists), ``lt`` (train/test rows for a run), ``transforms``,
``samplers`` and ``loader`` (batched training input). ``python -m benchmark data --help``.
"""
