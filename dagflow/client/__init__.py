"""The client side: submit a run, wait for it, read its status from any host."""
