from setuptools import find_packages, setup

package_name = 'sefm_sim_bridge'

setup(
    name=package_name,
    version='0.1.0',
    packages=find_packages(exclude=['test']),
    data_files=[
        ('share/ament_index/resource_index/packages', ['resource/' + package_name]),
        ('share/' + package_name, ['package.xml']),
    ],
    install_requires=['setuptools'],
    zip_safe=True,
    maintainer='SEFM maintainers',
    maintainer_email='maintainers@sefm-robotics.org',
    description='MuJoCo stand-ins for the LanguageTable and ALOHA robots (ROS-free envs and oracles) and the bridge node that makes them a ROS 2 robot.',
    license='Apache-2.0',
    entry_points={
        'console_scripts': ['sim_bridge = sefm_sim_bridge.bridge_node:main'],
    },
)
