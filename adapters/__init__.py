"""Framework adapters, installed as ``snn_parallel.adapters``.

This package will hold the snnTorch and SpikingJelly skins around :mod:`snn_parallel.neurons`
(one module per framework, imported only on request). It holds none in this release.
"""
