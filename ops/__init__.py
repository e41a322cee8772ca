"""Operations: the embedded development stack, load runs and benchmarks."""
