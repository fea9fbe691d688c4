# SEFM: the two commands a user needs are `make demo` (once the pipeline
# exists) and `make test`. Everything else here is a building block.
VENV ?= .venv
PY := $(VENV)/bin/python
export ROS_AUTOMATIC_DISCOVERY_RANGE ?= LOCALHOST

.PHONY: setup test test-fast demo doctor interfaces lock clean

## setup: apt packages, .venv, pinned pip packages, colcon build of the interfaces (idempotent)
setup:
	@bash tools/setup.sh

## test: setup if needed, then the whole test suite
test: setup
	$(PY) -m pytest tests

## test-fast: the suite without the end-to-end runs marked slow, on both cores (under 3 minutes here)
test-fast: setup
	$(PY) -m pytest tests -m "not slow" -n 2

## demo: setup if needed, then the whole pipeline (demos as rosbag2 -> Stage 1 -> Stage 2 -> report in runs/demo/report)
demo: setup
	$(VENV)/bin/sefm pipeline --config src/sefm_bringup/config/demo_language_table.yaml

## doctor: check this machine (ROS 2 graph, rendering, torch, pretrained towers)
doctor: setup
	$(VENV)/bin/sefm doctor

## interfaces: force a rebuild of sefm_interfaces
interfaces:
	@rm -f $(VENV)/.sefm-setup/interfaces
	@bash tools/setup.sh

## lock: re-pin every installed package into requirements/constraints.txt
lock:
	@{ echo '# Every package in the environment, pinned (pip install -c). Regenerate with `make lock`.'; \
	  $(PY) -m pip freeze --exclude-editable | grep -viE '^(sefm|-e )' | sed -E 's/^torch==([0-9.]+)\+cpu$$/torch==\1/'; \
	} > requirements/constraints.txt

## clean: remove build products (keeps .venv; `git clean -xfd` removes everything)
clean:
	rm -rf ros2_ws/build ros2_ws/install ros2_ws/log ros2_ws/colcon_build.log
	rm -f $(VENV)/.sefm-setup/interfaces
