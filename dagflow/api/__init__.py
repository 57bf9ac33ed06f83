"""The HTTP API: ``dagflow api`` serves JSON under ``/api/v1`` (see :mod:`dagflow.api.app`)."""
