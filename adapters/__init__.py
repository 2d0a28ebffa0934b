"""Framework adapters, installed as ``snn_parallel.adapters``.

- :mod:`snn_parallel.adapters.snntorch`: ``snn.Leaky`` subclasses around the neurons;
- :mod:`snn_parallel.adapters.spikingjelly`: SpikingJelly memory modules around them.

Each imports its framework, so import the one you use; ``import snn_parallel`` imports
neither, and nothing is registered into a framework until its ``register()`` is called.
"""
