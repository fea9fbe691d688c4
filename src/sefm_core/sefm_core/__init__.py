"""SEFM core: the ROS-free learning library (model, tokenizer, steps-to-go, REINFORCE, data)."""
__version__ = "0.1.0"
