from setuptools import find_packages, setup

package_name = 'sefm_sim'

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
    description='ROS-free simulated robots: MuJoCo LanguageTable and ALOHA, scripted demonstrators, stations, '
                'the training label schema and the batched rollout loop.',
    license='Apache-2.0',
)
