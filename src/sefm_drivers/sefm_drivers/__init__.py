"""Simulated robot drivers: ROS 2 nodes that speak only their hardware's contract (no tasks, episodes or rewards)."""
