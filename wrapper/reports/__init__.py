"""Reports: one document writer, plots, the run report and the comparison of runs."""
