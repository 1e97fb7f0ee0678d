"""The ``cute`` backend's CuTe DSL kernel; imported only when compiling (needs nvidia-cutlass-dsl)."""
