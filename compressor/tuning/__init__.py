"""Hyperparameter tuning (`compressor tune`) and accuracy-aware recipe search (`compressor search`).

Both run Optuna studies whose trials are recorded in a storage (an SQLite file in the run
folder by default, or a shared database) so several processes or machines can work on one
study and an interrupted study resumes where it stopped. Importing this package is cheap:
Optuna and TensorFlow are imported by the functions that need them.
"""
