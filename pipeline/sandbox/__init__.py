"""Local stand-ins for Cliniko and Birdeye, and the data generator: for the demo, tests and benchmarks."""
