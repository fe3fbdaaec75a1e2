"""LT-Skeleton Bench: long-tailed skeleton action recognition on one CTR-GCN pipeline.

Built around Shap-Mix (Zhang et al., IJCAI 2024, arXiv 2407.12312). Data code lives in
``benchmark.data``; methods register themselves from the top-level ``methods`` package.
"""
__version__ = "0.1.0"
