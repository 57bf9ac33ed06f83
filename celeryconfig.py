"""Celery's settings for dagflow (``celery -A dagflow worker`` reads this module).

Only Celery's own keys live here; dagflow's environment variables are in
``dagflow/settings.py``. The broker comes from ``DAGFLOW_BROKER_URL`` and the result backend
from ``DAGFLOW_RESULT_BACKEND`` (default: the broker's Redis).
"""

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
broker_transport_options = {"visibility_timeout": VISIBILITY_TIMEOUT_S}
result_backend_transport_options = {"visibility_timeout": VISIBILITY_TIMEOUT_S}
broker_connection_retry_on_startup = True
# On a lost broker connection kombu gives the worker's unacknowledged messages back while
# their steps still run. dagflow lets those steps run on and commit: the step's lease drops
# the given-back copy when it arrives, and fencing refuses a late end. Celery's alternative,
# cancelling them, cost a whole lease per step after a blip (the cancelled attempt kept its
# lease) and crashed workers when Redis was killed under load (kombu's restore on a closed
# channel; celery/celery#9250, #7185). See the README's Guarantees.
worker_cancel_long_running_tasks_on_connection_loss = False
result_expires = 24 * 3600

timezone = "UTC"
enable_utc = True

# `celery -A dagflow beat` reads the schedules directory with dagflow's scheduler.
beat_scheduler = "dagflow.beat:DagflowScheduler"

# Celery's own task events cost ~3 kB on the broker per task (dagflow has its own event log).
# Flower switches them on in running workers when it starts (its --enable_events default);
# `celery -A dagflow worker -E` turns them on from the start.
worker_send_task_events = False
task_send_sent_event = False
