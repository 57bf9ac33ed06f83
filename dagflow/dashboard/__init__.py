"""The dagflow dashboard: a Dash + Plotly app over the event log, state store and broker.

Run it with ``dagflow dashboard`` (``--host``, ``--port``,
``--events``, ``--state``). Modules, by role:

* :mod:`~dagflow.dashboard.app` builds the app and serves it (never in Dash debug mode);
* :mod:`~dagflow.dashboard.layout` builds components from table rows (text, never HTML);
* :mod:`~dagflow.dashboard.figures` builds Plotly figures (pure);
* :mod:`~dagflow.dashboard.callbacks` turns events into what each callback outputs;
* :mod:`~dagflow.dashboard.sources` re-reads the JSONL files only when they change;
* :mod:`~dagflow.stores.queue_stats` counts messages and results in Redis;
* :mod:`~dagflow.dashboard.auth` adds optional HTTP basic auth;
* :mod:`~dagflow.dashboard.actions` adds the run page's Cancel and Retry (a guarded POST).

Importing this package does not import Dash, so Flower's config and the CLI stay fast.
"""
