"""When runs start: cron maths, schedule files, the tick, jobs and Celery Beat."""
