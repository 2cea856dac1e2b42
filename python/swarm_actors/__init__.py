"""swarm-actors: an asyncio actor framework for agent swarms, with a Rust core."""
