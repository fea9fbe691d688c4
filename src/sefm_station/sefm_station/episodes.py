"""The station manager's episode logic, without ROS: phases, outcomes, the operator's calls, seeds and tasks.

Phases of the next or current episode (one at a time):

    resetting   resets: sim: the driver's `sim/reset` is (to be) called with the next seed
    wait_reset  resets: operator: until the operator's `reset` call says the scene is ready
    ready       the scene is ready: the next observation published starts the episode (its stamp, in ns, is
                the episode id; step 0; Task and START go out with it)
    running     one observation per policy period, steps 1, 2, ...; after observation `max_steps` the episode
                ends as TIMEOUT (the step cap counts observations published while running: one action each)
    idle        an abort without `reset`: nothing starts until the operator's `reset`

    every END goes to the reset mode's first phase (resetting, wait_reset or ready; idle after an abort
    with reset=false).

Halts stop observations in any phase (the episode, if one runs, stays open unless the halt ends it):
    paused      `pause` .. `resume`: the episode stays open, no steps pass
    estopped    the latched fleet e-stop: ends a running episode as ESTOP; on release the station is paused
                (EStop.msg: stations stay paused until resumed), so nothing starts before `resume`
    fault       stale or unusable inputs, or a failed sim reset: ends a running episode as FAULT; an input
                fault clears when the inputs are fresh again, any fault with the operator's `reset`
    asking      the detector fired but is unsure (`ask_above` >= 0 and the newest d above it): the episode
                holds until the operator answers: abort with success=true (OPERATOR_SUCCESS), abort with
                success=false (a failure: OPERATOR_ABORT), or resume ("not yet": it goes on, and asks again at
                the earliest `ask_every` observations later; unsure detections before that are let pass)

Outcomes (sefm_core.episode_rules codes): SUCCESS_DETECTED when a StepsToGo for this episode's current
observation says success and `episode_rules.detector_fires` agrees; TIMEOUT; OPERATOR_ABORT (abort, or
`reset` during an episode); OPERATOR_SUCCESS (abort with success=true: the operator's success mark; its
failure mark is an abort with success=false); FAULT; ESTOP.
"""
from __future__ import annotations

from dataclasses import dataclass

from sefm_core import episode_rules as rules
from sefm_core import seeds as seed_plan

RESETTING, WAIT_RESET, READY, RUNNING, IDLE = "resetting", "wait_reset", "ready", "running", "idle"
# StationStatus.STATE_* (sefm_interfaces)
STATE_IDLE, STATE_RUNNING, STATE_PAUSED, STATE_ESTOPPED, STATE_FAULT = range(5)


@dataclass(frozen=True)
class End:
    """An episode's END: what the node publishes."""
    episode_id: int
    outcome: int
    num_steps: int
    last_observation_ns: int
    detail: str
    operator_asks: int = 0   # times this episode asked the operator


@dataclass(frozen=True)
class TaskInfo:
    instruction: str
    goal_json: str = "{}"
    family: str = ""
    env_id: str = ""
    seed: int = 0


class Episodes:
    """One station's episodes. The node calls `observe` before each observation it publishes, then
    `after_observation`; the operator's and the inputs' events through the other methods. Methods that can end
    an episode return its `End` (or None)."""

    def __init__(self, max_steps: int, resets: str, first_seed: int = 0, ask_above: float = -1.0,
                 ask_every: int = 1):
        if resets not in ("sim", "operator", "none"):
            raise ValueError(f"resets: {resets!r} is not one of sim, operator, none")
        self.max_steps, self.resets = int(max_steps), resets
        self.ask_above, self.ask_every = float(ask_above), max(1, int(ask_every))
        self.asked_at = -self.ask_every          # the step of this episode's last question
        self.next_seed = int(first_seed)
        self.seed_override: int | None = None   # the operator's `reset` seed for the next sim reset
        self.seed = 0                            # the seed of the current (last reset) scene
        self.phase = self.first_phase()
        self.paused = self.estopped = False
        self.fault = ""
        self.asking = ""                         # why the station waits for the operator's answer
        self.episode_id = self.step = self.last_ns = 0
        self.message = self.phase_message()
        self.episodes_done = self.detected_successes = self.operator_successes = self.faults = 0
        self.asks = self.answers = self.episode_asks = 0

    # --- phases ------------------------------------------------------------------------------------

    def first_phase(self) -> str:
        return {"sim": RESETTING, "operator": WAIT_RESET, "none": READY}[self.resets]

    def phase_message(self) -> str:
        return {RESETTING: "resetting the simulated scene", WAIT_RESET: "waiting for the operator's reset "
                "(the scene is ready)", READY: "ready: the next observation starts the episode",
                RUNNING: "running", IDLE: "idle until the operator's reset"}[self.phase]

    @property
    def halted(self) -> bool:
        return self.paused or self.estopped or bool(self.fault) or bool(self.asking)

    @property
    def running(self) -> bool:
        return self.phase == RUNNING

    def state(self) -> int:
        if self.estopped:
            return STATE_ESTOPPED
        if self.fault:
            return STATE_FAULT
        if self.paused or self.asking:
            return STATE_PAUSED
        return STATE_RUNNING if self.phase == RUNNING else STATE_IDLE

    def wants_sim_reset(self) -> bool:
        return self.phase == RESETTING and not self.halted

    def take_seed(self) -> int:
        """The seed of the sim reset about to be made: the operator's choice, else the next of the plan."""
        if self.seed_override is not None:
            seed, self.seed_override = self.seed_override, None
        else:
            seed, self.next_seed = self.next_seed, self.next_seed + 1
        self.seed = seed
        return seed

    def reset_done(self) -> None:
        """The sim reset answered and its first observation arrived: the scene is ready."""
        if self.phase == RESETTING:
            self.phase = READY
            self.message = self.phase_message()

    # --- observations -------------------------------------------------------------------------------

    def observe(self, stamp_ns: int) -> int | None:
        """An observation with this stamp is about to go out: its step (0 = a new episode, whose id is the
        stamp), or None when none should go out now."""
        if self.halted:
            return None
        if self.phase == READY:
            self.phase, self.episode_id, self.step, self.last_ns = RUNNING, stamp_ns, 0, stamp_ns
            self.episode_asks, self.asked_at = 0, -self.ask_every
            self.message = "running"
            return 0
        if self.phase == RUNNING:
            self.step += 1
            self.last_ns = stamp_ns
            return self.step
        return None

    def after_observation(self) -> End | None:
        """The step cap: the episode ends once its observation `max_steps` is out."""
        if self.phase == RUNNING and self.step >= self.max_steps:
            return self.end(rules.TIMEOUT, f"step cap {self.max_steps}")
        return None

    def score(self, episode_id: int, observation_ns: int, step: int, success: bool, d: float,
              threshold: float) -> End | None:
        """A StepsToGo: a success for this episode's current observation that the detector rule confirms ends
        it, or, with its d above `ask_above`, asks the operator (`asking`; nothing ends)."""
        if not (self.phase == RUNNING and episode_id == self.episode_id and observation_ns == self.last_ns):
            return None
        if self.asking:
            return None
        if success and step == self.step and rules.detector_fires([d], step, threshold):   # (the newest d)
            if self.ask_above >= 0 and d > self.ask_above:
                if step - self.asked_at < self.ask_every:
                    return None   # the operator said "not yet" a moment ago
                self.asking = self.message = (f"asking the operator: the detector is unsure (steps-to-go {d:.2f} "
                                              f"> {self.ask_above:.2f}); success, failure or not yet?")
                self.asks += 1
                self.episode_asks += 1
                self.asked_at = step
                return None
            self.detected_successes += 1
            return self.end(rules.SUCCESS_DETECTED, f"steps-to-go {d:.2f} <= {threshold:.2f}")
        return None

    # --- ends ---------------------------------------------------------------------------------------

    def end(self, outcome: int, detail: str, restart: bool = True) -> End | None:
        if self.phase != RUNNING:
            return None
        end = End(self.episode_id, outcome, self.step, self.last_ns, detail, self.episode_asks)
        self.episodes_done += 1
        self.asking = ""   # an open question ends with its episode (answered or not)
        if outcome == rules.OPERATOR_SUCCESS:
            self.operator_successes += 1
        self.phase = self.first_phase() if restart else IDLE
        self.message = detail
        return end

    def set_fault(self, reason: str) -> End | None:
        if self.fault:
            return None
        self.fault = self.message = f"fault: {reason}"
        self.faults += 1
        return self.end(rules.FAULT, reason)

    def clear_fault(self, detail: str = "inputs fresh again") -> bool:
        if not self.fault:
            return False
        self.fault = ""
        self.message = f"{detail}; {self.phase_message()}"
        return True

    def estop(self, engaged: bool, text: str) -> End | None:
        if engaged and not self.estopped:
            self.estopped = True
            end = self.end(rules.ESTOP, text)
            self.message = text
            return end
        if not engaged and self.estopped:
            self.estopped, self.paused = False, True
            self.message = "e-stop released; paused until resumed"
        return None

    # --- the operator -------------------------------------------------------------------------------

    def answer(self) -> bool:
        """The operator answers the open question, if one is open (abort, reset or resume)."""
        if not self.asking:
            return False
        self.asking = ""
        self.answers += 1
        return True

    def pause(self, reason: str) -> tuple[bool, str]:
        if self.estopped:
            return False, "e-stop engaged"
        self.paused, self.message = True, f"paused: {reason}"
        return True, self.message

    def resume(self, reason: str) -> tuple[bool, str]:
        if self.estopped:
            return False, "e-stop engaged: release it first"
        answered = self.answer()
        self.paused = False
        self.message = f"operator: not yet, the episode goes on ({reason})" if answered else f"resumed: {reason}"
        return True, self.message

    def operator_reset(self, seed: int, reason: str) -> tuple[End | None, bool, str]:
        """`reset`: end a running episode as an operator abort; the scene is ready (operator, none) or the
        driver resets it (sim, with `seed` if >= 0)."""
        if self.estopped:
            return None, False, "e-stop engaged: release it first"
        self.fault = ""   # the operator says the station is ready (a fault that persists comes back)
        self.answer()
        end = self.end(rules.OPERATOR_ABORT, f"reset: {reason}".strip())
        if self.resets == "sim":
            self.seed_override = int(seed) if seed >= 0 else None
            self.phase = RESETTING
            text = "resetting the simulated scene"
        else:
            self.phase = READY
            text = "scene ready: the next observation starts the episode"
        self.message = text
        return end, True, text

    def abort(self, success: bool, reset: bool, reason: str) -> tuple[End | None, bool, str]:
        if self.phase != RUNNING:
            return None, False, "no episode is running"
        self.answer()
        if success:
            end = self.end(rules.OPERATOR_SUCCESS, f"operator: success {reason}".strip(), restart=reset)
        else:
            end = self.end(rules.OPERATOR_ABORT, f"abort: {reason}".strip(), restart=reset)
        return end, True, "episode ended" + ("" if reset else "; idle until reset")


def practice_seed(station_index: int, seed: int = -1) -> int:
    """The first sim reset seed: `seed`, else the first of the station's practice block (sefm_core.seeds);
    a seed outside that block is an error."""
    first = seed_plan.first_seed("practice", station_index) if seed < 0 else int(seed)
    seed_plan.check("practice", first, 1, station=station_index)
    return first


class ListTasks:
    """tasks: list: the instructions in turn (a real station with an operator)."""

    def __init__(self, instructions, env_id: str):
        if not instructions:
            raise ValueError("tasks: list needs at least one instruction (station.instructions or the "
                             "`instructions` parameter)")
        self.instructions, self.env_id, self.count = tuple(instructions), env_id, 0

    def task(self, seed: int) -> TaskInfo:
        text = self.instructions[self.count % len(self.instructions)]
        self.count += 1
        return TaskInfo(instruction=text, env_id=self.env_id, seed=seed)


class SimLanguageTableTasks:
    """tasks: sim (simulated LanguageTable): the driver publishes no instruction, and its scene is a pure
    function of (block_mode, families, seed). The manager replays the same seeded reset on a physics-only copy
    of the scene (no rendering) and reads its goal: the instruction and goal the driver's scene has. Sim only:
    `check_truth` compares the copy's blocks with the driver's sim/ground_truth after a reset."""

    def __init__(self, block_mode: str, families=(), env_id: str = ""):
        from sefm_sim.envs.language_table import LanguageTableEnv

        self.env = LanguageTableEnv(block_mode=block_mode, render_images=False,
                                    **({"families": tuple(families)} if families else {}))
        self.env_id = env_id or f"sefm/LanguageTable-{block_mode}-v0"
        self.xy: dict[str, tuple[float, float]] = {}

    def task(self, seed: int) -> TaskInfo:
        _, info = self.env.reset(seed=int(seed))
        state = info["state"]
        self.xy = {b: tuple(float(v) for v in state.xy(b)) for b in self.env.blocks}
        goal = self.env.goal
        return TaskInfo(instruction=goal.instruction, goal_json=goal.to_json(), family=goal.family,
                        env_id=self.env_id, seed=int(seed))

    def check_truth(self, names, xy, tolerance: float = 0.01) -> str:
        """'' when the driver's blocks (its ground truth after the reset) are where the copy has them, else
        why not (a driver with another block_mode or families)."""
        if sorted(names) != sorted(self.xy):
            return f"the driver's blocks {sorted(names)} are not the manager's {sorted(self.xy)}"
        for i, name in enumerate(names):
            x, y = xy[2 * i], xy[2 * i + 1]
            cx, cy = self.xy[name]
            if abs(x - cx) > tolerance or abs(y - cy) > tolerance:
                return (f"the driver's {name} is at ({x:.3f}, {y:.3f}), the manager's copy of the scene has it at "
                        f"({cx:.3f}, {cy:.3f}): check that block_mode and families match the driver's")
        return ""

    def close(self) -> None:
        self.env.close()
