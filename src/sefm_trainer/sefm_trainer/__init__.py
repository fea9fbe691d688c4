"""The SEFM trainer node: episode assembly and on-policy REINFORCE."""
