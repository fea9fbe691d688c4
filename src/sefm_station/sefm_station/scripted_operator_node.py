"""A scripted operator for simulated fleets (console script `scripted_operator`): it answers the stations'
questions the way the person at `sefm operator` would, so practice with the detector's fallback runs unattended.

  subscribes <station>/status                      StationStatus: `asking_operator` opens a question
             <station>/<driver>/sim/ground_truth   SimGroundTruth: what the person would see (simulation only)
  clients    <station>/abort (success=true, reset=true)   "success": ends the episode as OPERATOR_SUCCESS
             <station>/resume                             "not yet": the episode goes on

A station asks when its detector fires but is unsure (the station manager's `ask_above`) and holds until it
is answered. The scripted operator answers each question once, `operator_delay` seconds after it first saw
it, from the simulator's goal predicate at the newest frame, and gets it wrong with probability
`operator_error_rate` (seeded). It never ends an episode the station did not ask about. Simulation only: a
real station's questions go to a person (`sefm operator abort STATION --success`, `sefm operator resume
STATION`). It logs and counts its answers (`answers`, `wrong`, `seconds`: the operator time the fleet needed).
"""
from __future__ import annotations

import random
import sys
import time

from sefm_interfaces.msg import SimGroundTruth, StationStatus
from sefm_interfaces.srv import AbortEpisode, ResumeStation
from sefm_ros.common import SefmNode, reliable, spin_main, station_list
from sefm_station.params import ScriptedOperatorParams


class ScriptedOperator(SefmNode):
    PARAMETERS = ScriptedOperatorParams

    def __init__(self, namespace: str = "", context=None, **overrides):
        super().__init__("scripted_operator", namespace, context, **overrides)
        p = self.params
        self.rng = random.Random(p.operator_seed)
        self.stations = station_list(p.stations)
        if not self.stations:
            raise ValueError("stations: name at least one station")
        self.goal_holds: dict[str, bool] = {}
        self.open: dict[str, tuple[tuple[int, int], float]] = {}   # station -> (its question, when first seen)
        self.answered: set[tuple[str, int, int]] = set()
        self.answers = self.wrong = 0
        self.seconds = 0.0
        self.abort, self.resume = {}, {}
        for station in self.stations:
            self.create_subscription(StationStatus, f"{station}/status",
                                     lambda msg, s=station: self.on_status(s, msg), reliable(10))
            truth = "/".join(x for x in (station, p.driver_namespace.strip("/"), "sim/ground_truth") if x)
            self.create_subscription(SimGroundTruth, truth,
                                     lambda msg, s=station: self.goal_holds.__setitem__(s, bool(msg.goal_holds)),
                                     reliable(10))
            self.abort[station] = self.create_client(AbortEpisode, f"{station}/abort")
            self.resume[station] = self.create_client(ResumeStation, f"{station}/resume")
        self.create_timer(0.02, self.answer_due)
        self.get_logger().info(f"answering {self.stations} after {p.operator_delay:g} s, wrong with "
                               f"probability {p.operator_error_rate:g}")

    def on_status(self, station: str, msg: StationStatus) -> None:
        question = (int(msg.episode_id), int(msg.operator_asks))
        if msg.asking_operator and (station, *question) not in self.answered and station not in self.open:
            self.open[station] = (question, time.monotonic())

    def answer_due(self) -> None:
        now = time.monotonic()
        for station, (question, seen) in list(self.open.items()):
            if now - seen < self.params.operator_delay:
                continue
            holds = self.goal_holds.get(station, False)
            wrong = self.rng.random() < self.params.operator_error_rate
            success = holds != wrong
            if success:
                self.abort[station].call_async(AbortEpisode.Request(
                    success=True, reset=True, reason="scripted operator: success"))
            else:
                self.resume[station].call_async(ResumeStation.Request(reason="scripted operator: not yet"))
            del self.open[station]
            self.answered.add((station, *question))
            self.answers += 1
            self.wrong += int(wrong)
            self.seconds += now - seen
            self.get_logger().info(f"{station} episode {question[0]}: {'success' if success else 'not yet'}"
                                   + (" (wrong on purpose)" if wrong else "")
                                   + f"; {self.answers} answers, {self.seconds:.1f} s so far")


def main(argv=None) -> int:
    return spin_main(ScriptedOperator, argv)


if __name__ == "__main__":
    sys.exit(main())
