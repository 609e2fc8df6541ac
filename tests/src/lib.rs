//! Server harness and end-to-end tests.
