"""`imgbench report RUN_DIR`: training, export and serving results side by side, with plots.

Reads only manifests and load results; every missing piece is said in the report, never a crash.
"""
