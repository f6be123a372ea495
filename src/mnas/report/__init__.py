"""What a finished (or running) search shows: summary, Pareto front, plots, an HTML page, exports."""
