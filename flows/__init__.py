"""Prefect flows around the library (``pipeline``); the library never imports this package.

Importing this package does not import Prefect: ``flows.pipeline`` holds ``landcover_pipeline``
and its sub-flows (``landcover run``), ``flows.batch`` the ``batch_map`` flow that
``landcover serve`` runs, ``flows.serve`` the ``serve`` subcommand, ``flows.engine`` what the
flows share. ``flows.pipeline`` and ``flows.batch`` never import each other.
"""
