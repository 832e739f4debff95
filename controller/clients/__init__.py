"""Clients of the services mfrm talks to: the OpenWhisk REST API and the Prometheus HTTP API."""
