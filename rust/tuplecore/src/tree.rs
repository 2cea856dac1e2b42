//! Placeholder until the agent tree lands.
