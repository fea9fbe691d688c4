"""ROS-free simulated robots. Importing this package registers the Gymnasium ids."""
import os

# Offscreen software rendering unless the user chose a backend. This package's
# __init__ runs before any of its modules imports mujoco, which reads it once.
os.environ.setdefault("MUJOCO_GL", "osmesa")

from gymnasium.envs.registration import register, registry

_IDS = {
    "sefm/LanguageTable-BLOCK_4-v0": {"block_mode": "BLOCK_4"},
    "sefm/LanguageTable-BLOCK_8-v0": {"block_mode": "BLOCK_8"},
    "sefm/LanguageTable-N_CHOOSE_K-v0": {"block_mode": "N_CHOOSE_K"},
    "sefm/BananaTable-v0": {"block_mode": "BANANA"},
}
_ALOHA_IDS = {
    "sefm/Aloha-TransferCube-v0": {"task": "transfer_cube"},
    "sefm/Aloha-Insertion-v0": {"task": "insertion"},
}

for _id, _kwargs in _IDS.items():
    if _id not in registry:
        register(id=_id, entry_point="sefm_sim.envs.language_table:LanguageTableEnv", kwargs=_kwargs)
for _id, _kwargs in _ALOHA_IDS.items():
    if _id not in registry:
        register(id=_id, entry_point="sefm_sim.envs.aloha:AlohaEnv", kwargs=_kwargs)
