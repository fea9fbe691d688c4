from glob import glob

from setuptools import find_packages, setup

package_name = 'sefm_station'

setup(
    name=package_name,
    version='0.1.0',
    packages=find_packages(exclude=['test']),
    data_files=[
        ('share/ament_index/resource_index/packages', ['resource/' + package_name]),
        ('share/' + package_name, ['package.xml']),
        ('share/' + package_name + '/profiles', glob('profiles/*.yaml')),
    ],
    install_requires=['setuptools'],
    zip_safe=True,
    maintainer='SEFM maintainers',
    maintainer_email='maintainers@sefm-robotics.org',
    description='The station layer: robot profiles (ROS-free), the station manager lifecycle node (observations, '
                'tasks, episodes, resets, operator services) and the safety gate lifecycle node between the policy '
                'and a robot driver.',
    license='Apache-2.0',
    entry_points={
        'console_scripts': ['estop_latch = sefm_station.estop_latch_node:main',
                            'lifecycle_manager = sefm_station.lifecycle_manager_node:main',
                            'safety_gate = sefm_station.safety_gate_node:main',
                            'scripted_operator = sefm_station.scripted_operator_node:main',
                            'station_manager = sefm_station.station_manager_node:main'],
    },
)
