"""ROS 2 glue shared by the SEFM nodes (the learning code and the envs import none of it)."""
