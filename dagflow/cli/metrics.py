"""``dagflow metrics``: serve ``/metrics`` (Prometheus) and ``/health``.

The exporter itself is :mod:`dagflow.metrics.exporter`; this command parses, builds it from
the settings and serves it with waitress until stopped.
"""

from __future__ import annotations

import click

from dagflow.cli.common import EXIT_INVALID, EXIT_OK, verbose_option

EPILOG = """\b
Examples:
  dagflow metrics                          # http://127.0.0.1:9810/metrics and /health
  dagflow metrics --host 0.0.0.0 --port 9900
  curl -s 127.0.0.1:9810/metrics | grep dagflow_runs_finished_total
"""


@click.command(short_help="serve Prometheus metrics on 127.0.0.1:9810", epilog=EPILOG)
@click.option("--host", help="address to bind (DAGFLOW_METRICS_HOST, 127.0.0.1)")
@click.option("--port", type=int, help="port (DAGFLOW_METRICS_PORT, 9810)")
@verbose_option()
def metrics(host: str | None, port: int | None) -> int:
    """Count the event stream into Redis and serve the counts and gauges to Prometheus.

    Needs a broker and DAGFLOW_EVENTS=stream: with the embedded worker (no broker) runs
    live in one process and there is nothing to scrape. Counts survive restarts; two
    exporters may run at once (they share the work, and serve the same totals).
    """
    import threading

    from waitress import create_server  # type: ignore[import-untyped]

    from dagflow.metrics.exporter import Ingester, health_check, registry_for, wsgi_app
    from dagflow.metrics.mapping import Buckets
    from dagflow.settings import Settings
    from dagflow.stores.transport import safe_url
    from dagflow.wiring import metrics_store

    settings = Settings.from_env()
    if not settings.events_via_stream:
        click.echo(
            "dagflow metrics: nothing to scrape without a broker and DAGFLOW_EVENTS=stream "
            "(the embedded worker keeps its runs in its own process)",
            err=True,
        )
        return EXIT_INVALID
    buckets = Buckets(
        settings.metrics_run_buckets, settings.metrics_task_buckets, settings.metrics_wait_buckets
    )
    store = metrics_store(settings)
    ingester = Ingester(store, buckets)
    stop = threading.Event()
    thread = threading.Thread(
        target=ingester.run, args=(stop,), name="dagflow-metrics", daemon=True
    )
    thread.start()
    app = wsgi_app(registry_for(store, buckets), health_check(ingester))
    server = create_server(
        app, host=host or settings.metrics_host, port=port or settings.metrics_port, threads=4
    )
    click.echo(
        f"dagflow metrics on http://{host or settings.metrics_host}:{server.effective_port}"
        f"/metrics (counting {safe_url(settings.redis_url)})",
        err=True,
    )
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        stop.set()
        server.close()
    return EXIT_OK


COMMANDS = (metrics,)
