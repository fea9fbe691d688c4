"""MuJoCo robot stand-ins (ROS-free envs and oracles) and the bridge node that serves them on ROS 2."""
