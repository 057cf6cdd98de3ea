"""Loss curves: event files -> scalars -> smoothing -> verdicts."""
