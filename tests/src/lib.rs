//! Black-box tests of the Minyi cluster live in `tests/`.
