"""The Stage-2 episode rules, in one place: the reward node, the station, the trainer and `sefm practice`
all decide with these functions, so the graph and the ROS-free loop cannot disagree.

    reward of the transition o_t -> o_t+1     r_t = d(o_t, g) - d(o_t+1, g)
    the detector ends the episode at o_t      t > 0 and s >= 0 and d(o_u, g) <= s for u = t-k+1 .. t
                                              (k = `hold` observations in a row; k = 1 is the paper's rule)
    the step cap ends it after action t       t + 1 >= max_steps
    a stored transition                       (o_t, a_t, log p(a_t), r_t, d(o_t)), t = 0..T-1, plus o_T

The first observation is never judged: an episode has at least one action (a
reset that already satisfies the goal would otherwise end with nothing to learn
from). A negative s switches the detector off. How an episode ended is one of
OUTCOMES (the same codes as `sefm_interfaces/EpisodeEvent`); the simulator's
verdict (`oracle_success`) is stored beside it for measurement only.
"""
from __future__ import annotations

from collections.abc import Sequence

from sefm_core.steps_to_go import detect_success, reward

# EpisodeEvent.OUTCOME_* (sefm_interfaces; a test checks they agree)
NONE, SUCCESS_DETECTED, ENV_SUCCESS, TIMEOUT, OPERATOR_ABORT, FAULT, ESTOP, OPERATOR_SUCCESS = range(8)
OUTCOMES = {NONE: "none", SUCCESS_DETECTED: "success_detected", ENV_SUCCESS: "env_success", TIMEOUT: "timeout",
            OPERATOR_ABORT: "operator_abort", FAULT: "fault", ESTOP: "estop", OPERATOR_SUCCESS: "operator_success"}
# Ends the station itself judged a success: the learned detector, an operator's label, or (simulated stations
# whose config lets it end episodes) the simulator's predicate standing in for the operator.
SUCCESS_OUTCOMES = {SUCCESS_DETECTED, ENV_SUCCESS, OPERATOR_SUCCESS}


def transition_reward(d_before: float, d_after: float) -> float:
    """r_t = d(o_t, g) - d(o_t+1, g): the progress the action made."""
    return float(reward(d_before, d_after))


def detector_on(threshold: float) -> bool:
    return threshold >= 0


def detector_fires(d: Sequence[float], step: int, threshold: float, hold: int = 1) -> bool:
    """Does the learned detector end the episode at its observation `step` (0-based)? d: the episode's d up to
    that observation, the newest last (at least its last `hold`). Holding the verdict for k observations keeps
    one lucky d on a state the model misreads from ending an episode that has not succeeded."""
    return (step > 0 and detector_on(threshold) and hold >= 1 and len(d) >= hold
            and all(bool(detect_success(x, threshold)) for x in d[-hold:]))


def end_after_action(steps_taken: int, max_steps: int, oracle_success: bool, oracle_ends: bool) -> int | None:
    """The outcome that ends the episode once `steps_taken` actions are applied, or None to go on.
    oracle_ends: the simulator's success ends episodes (a simulated station standing in for the operator)."""
    if oracle_ends and oracle_success:
        return ENV_SUCCESS
    if steps_taken >= max_steps:
        return TIMEOUT
    return None
