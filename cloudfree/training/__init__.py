"""The trainer and its data wiring from cubes and SEN12MS-CR-TS (no cloud-free targets needed)."""
