"""Prometheus metrics: what ``dagflow metrics`` exports, and how events become counts.

* :mod:`~dagflow.metrics.catalog`: every metric's name, type, labels and source (pure);
* :mod:`~dagflow.metrics.mapping`: one stream entry to metric updates (pure);
* :mod:`~dagflow.metrics.exporter`: the counting thread, the scrape-time collector and the
  HTTP app (``/metrics``, ``/health``); its Redis side is :mod:`dagflow.stores.metrics`.
"""
