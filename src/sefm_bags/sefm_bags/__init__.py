"""Demonstrations through rosbag2: `writer` (segmented, crash-safe bags), `importer` (bags -> episode data set),
`types` (the message definitions bags carry). Only `recorder_node` imports rclpy."""
