"""The agent hierarchy, in Rust: a million agents cost almost nothing.

``AgentTree.batch_spawn`` describes whole subtrees without enumerating them (``BatchInfo``);
agents are materialized on first use (``AgentInfo``), idle ones are pruned least recently used
first into compact, validated compress tokens and restored byte-identical; ``TreeStats``
counts them. Virtual actors (``ActorSystem.virtual``, ``batch_spawn``) are kept in one. Errors
are the ``AgentError`` family of ``swarm_actors.errors`` and ``InvalidArgumentError``.
"""

from swarm_actors._tuplecore import AgentInfo, AgentTree, BatchInfo, TreeStats

__all__ = ["AgentInfo", "AgentTree", "BatchInfo", "TreeStats"]
