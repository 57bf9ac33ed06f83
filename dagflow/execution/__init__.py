"""What a worker does: run a step under a lease, publish, start and end runs, recover."""
