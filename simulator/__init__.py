"""Traffic simulator (办件流量模拟): realistic case events for one or more service centers, and the truth.

``simulate(...)`` plans a deterministic run (same arguments and seed, same bytes); ``write(...)``
writes its JSON Lines events and the ground-truth file that lists every finding the injected
violations should raise, so the engine can be checked for exact precision and recall.
"""

from simulator.simulation import DEFAULT_START, Simulation, Summary, malformed_line, simulate, write
from simulator.timeline import SimulationError

__all__ = ["DEFAULT_START", "Simulation", "SimulationError", "Summary", "malformed_line", "simulate", "write"]
