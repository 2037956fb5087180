"""`modelfleet-convert`: eager TorchServe archives (model.py + pickled weights) to archives ModelFleet serves.

Runs in the user's own environment, never inside the server: it imports the archive's model code and
reads its weights, so it is for archives the user trusts. The server never imports this package.
"""
