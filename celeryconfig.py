"""Celery's settings for dagflow (``celery -A dagflow worker`` reads this module).

Only Celery's own keys live here; dagflow's environment variables are in
``dagflow/settings.py``. The broker comes from ``DAGFLOW_BROKER_URL`` and the result backend
from ``DAGFLOW_RESULT_BACKEND`` (default: the broker's Redis).
"""

from dagflow.redis_url import transport_options
from dagflow.settings import VISIBILITY_TIMEOUT_S, Settings

_settings = Settings.from_env()

broker_url = _settings.broker_url or "memory://"
result_backend = _settings.result_backend

# Security: JSON only, never pickle.
task_serializer = "json"
result_serializer = "json"
accept_content = ["json"]
result_accept_content = ["json"]

# Reliability: a step is acknowledged only after it ran, and goes back to the queue if its
# worker process dies; each worker process holds one message at a time.
task_acks_late = True
task_reject_on_worker_lost = True
worker_prefetch_multiplier = 1

# Redis redelivers a message unacknowledged for longer than this. dagflow does not rely on it
# (leases and the sweeper recover steps whose worker died), so it stays above any step's
# run time to avoid needless copies. RabbitMQ's own limit is consumer_timeout (30 min by
# default): raise it on the server for steps that run longer (see the README).
# A sentinel:// URL also needs the primary's name (DAGFLOW_REDIS_MASTER_NAME): kombu and
# Celery's result backend refuse to connect without it.
broker_transport_options = {
    "visibility_timeout": VISIBILITY_TIMEOUT_S,
    **transport_options(_settings.broker_url, _settings.redis_master_name),
}
result_backend_transport_options = {
    "visibility_timeout": VISIBILITY_TIMEOUT_S,
    **transport_options(_settings.result_backend, _settings.redis_master_name),
}
broker_connection_retry_on_startup = True
# On a lost broker connection the steps in flight run on and commit: their leases keep any
# other copy out, and fencing refuses a late end. Celery's alternative, cancelling them, cost
# a whole lease per step after a blip (the cancelled attempt kept its lease).
worker_cancel_long_running_tasks_on_connection_loss = False
result_expires = 24 * 3600
# Celery's consumer exits the worker when the broker's Redis dies under an unacknowledged
# message (a killed server, a Sentinel failover: kombu restores through a closed channel;
# celery/celery#9250, #7185). dagflow's leaves such messages in kombu's unacked hash instead:
# a step still running commits, and the sweeper re-sends one that no worker runs.
worker_consumer = "dagflow.execution.consumer:Consumer"

timezone = "UTC"
enable_utc = True

# `celery -A dagflow beat` reads the schedules directory with dagflow's scheduler.
beat_scheduler = "dagflow.scheduling.beat:DagflowScheduler"

# Celery's own task events cost ~3 kB on the broker per task (dagflow has its own event log).
# Flower switches them on in running workers when it starts (its --enable_events default);
# `celery -A dagflow worker -E` turns them on from the start.
worker_send_task_events = False
task_send_sent_event = False
