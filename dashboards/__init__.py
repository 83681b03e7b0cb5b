"""Grafana dashboards as code (``build``), their query expansion and check against a warehouse
(``macros``, ``check``), and publishing to a Grafana server (``push``). See dashboards/README.md."""
