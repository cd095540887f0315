//! Building a suite in Rust instead of TOML, with custom async tasks.
