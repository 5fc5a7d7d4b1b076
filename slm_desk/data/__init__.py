"""What slm-desk keeps: the store, settings, the model catalog, downloads, adapters, the pool, eval sets, review,
and what this machine can hold. Imports the contract and the foundation."""
