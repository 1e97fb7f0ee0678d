"""The ``triton`` backend's jit kernels, one algorithm form per module; imported lazily by ``plan.jit_kernel``."""
