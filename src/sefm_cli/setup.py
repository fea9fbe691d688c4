from setuptools import find_packages, setup

package_name = 'sefm_cli'

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
    description='The sefm command line: doctor, demos, recording and import, Stage 1, evaluation, the pipeline, '
                'the operator console.',
    license='Apache-2.0',
    entry_points={
        'console_scripts': ['sefm = sefm_cli.cli:main'],
    },
)
