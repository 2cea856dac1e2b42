//! Placeholder until the Hilbert module lands.
