"""The SEFM reward node: steps-to-go rewards and success detection from a frozen Stage-1 model."""
