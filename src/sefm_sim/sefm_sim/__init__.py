"""ROS-free simulated robots: MuJoCo envs, scripted demonstrators, stations, the training label schema."""
