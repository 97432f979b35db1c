"""`make bench`: size, accuracy, latency and tool overhead, measured side by side with baselines.

Heavy jobs run in their own subprocess (benchmarks.job) so wall time and peak RSS are per job
and TensorFlow's import cost is counted the same way for us and for the baselines.
"""
