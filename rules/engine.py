"""The supervision engine: (case state, event) -> (state, findings, notes); (case state, now) -> findings.

Work in progress: the API below is the contract the drivers (embedded, live, replay) code against.
"""
