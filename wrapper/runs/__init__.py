"""Runs: the one run-folder model (names, typed records, readers, atomic writes), provenance, training,
resume, queues and sweeps, where they execute (a local pool of GPUs or cores, a Slurm job array), and
watching and stopping them."""
