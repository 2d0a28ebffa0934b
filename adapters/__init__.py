"""Adapters that plug snn_parallel neurons into snnTorch and SpikingJelly.

Installed as ``snn_parallel.adapters``; each framework module is imported only on request.
"""
