"""Several rendering envs in one process: freeing one must not change another's frames."""
import gc
import weakref

import numpy as np
import pytest

from sefm_sim.envs.aloha import AlohaEnv
from sefm_sim.envs.language_table import LanguageTableEnv

MAKE = {
    "language_table": lambda: LanguageTableEnv(block_mode="BLOCK_4", image_size=(64, 36)),
    "aloha": lambda: AlohaEnv(task="transfer_cube", image_size=(64, 48)),
}


@pytest.mark.parametrize("how", ["close", "gc"])
@pytest.mark.parametrize("gone,kept", [("language_table", "aloha"), ("aloha", "language_table")])
def test_freeing_one_env_keeps_the_others_frames(gone, kept, how):
    envs = {name: make() for name, make in MAKE.items()}
    for name in envs:  # not `for env in ...`: the loop variable would keep the last env alive
        envs[name].reset(seed=0)
    envs[gone].render()
    before = envs[kept].render()  # the kept env's GL context is now current, as when the bug struck
    assert before.mean() > 10, "the kept env renders a blank frame to begin with"

    if how == "close":
        envs[gone].close()
    else:  # dropped without close(): garbage collection frees it
        alive = weakref.ref(envs.pop(gone))
        gc.collect()
        assert alive() is None, "something still holds the dropped env, so this tests nothing"

    after = envs[kept].render()  # same state, so the same frame
    assert after.mean() > 10, f"{kept} renders black after {gone} was freed ({how})"
    np.testing.assert_array_equal(after, before, err_msg=f"{kept}'s frame changed after {gone} was freed ({how})")
    envs[kept].close()
