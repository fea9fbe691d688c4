"""The station layer: robot profiles and the safety gate between the policy and a real robot's driver."""
