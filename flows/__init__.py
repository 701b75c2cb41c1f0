"""Prefect flows around the ``pipeline.run`` stage functions.

Importing this package does not import Prefect: ``flows.pipeline`` holds the flows
(``landcover_pipeline`` and its sub-flows, and the ``batch_map`` flow that
``landcover serve`` runs), ``flows.serve`` the ``serve`` subcommand. See
``flows/README.md``.
"""
