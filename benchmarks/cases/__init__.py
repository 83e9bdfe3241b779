"""The benchmark cases, one module each; see ``benchmarks/run.py`` for how to add one."""
