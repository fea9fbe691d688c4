from setuptools import find_packages, setup

package_name = 'sefm_bags'

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
    description='SEFM demonstrations through rosbag2: a crash-safe recorder node, and the import of bags into the '
                'episode data set.',
    license='Apache-2.0',
    entry_points={
        'console_scripts': ['recorder = sefm_bags.recorder_node:main'],
    },
)
