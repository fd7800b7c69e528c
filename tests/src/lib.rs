//! Harness for black-box tests; see tests/tests/.
