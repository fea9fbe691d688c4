from setuptools import find_packages, setup

package_name = 'sefm_ros'

setup(
    name=package_name,
    version='0.1.0',
    packages=find_packages(exclude=['test']),
    package_data={package_name: ['fastdds_localhost.xml']},
    data_files=[
        ('share/ament_index/resource_index/packages', ['resource/' + package_name]),
        ('share/' + package_name, ['package.xml']),
    ],
    install_requires=['setuptools'],
    zip_safe=True,
    maintainer='SEFM maintainers',
    maintainer_email='maintainers@sefm-robotics.org',
    description='ROS 2 glue shared by the SEFM nodes: QoS profiles, stamps, image conversion, the per-station observation join.',
    license='Apache-2.0',
    entry_points={
        'console_scripts': [],
    },
)
