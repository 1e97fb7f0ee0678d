"""gdnbench: microbenchmarks and profiling for Gated DeltaNet (GDN) kernels.

Data flow: config -> cases -> inputs -> backends/ -> check -> timer -> runner -> rows (CSV)
-> plots / trace / notebooks. ``cli.py`` is a thin typer layer over these modules.
"""

__version__ = "0.1.0"
