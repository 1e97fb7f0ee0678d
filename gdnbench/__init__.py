"""gdnbench: microbenchmarks and profiling for Gated DeltaNet (GDN) kernels.

Data flow: config -> cases -> inputs -> backends/ -> check -> timer -> runner -> rows (CSV)
-> plots / trace / notebooks. ``cli.py`` is a thin typer layer over these modules.
"""

__version__ = "0.1.0"


def __getattr__(name: str):
    # Lazy, so `import gdnbench` stays light (no pandas) for the CLI and the backends.
    if name == "load_results":
        from gdnbench.analysis import load_results

        return load_results
    raise AttributeError(f"module 'gdnbench' has no attribute {name!r}")
