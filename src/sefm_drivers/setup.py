from setuptools import find_packages, setup

package_name = 'sefm_drivers'

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
    description='Simulated robot drivers on their hardware contracts: ALOHA on the Interbotix X-Series xs_sdk '
                'contract, the LanguageTable robot on standard messages; MuJoCo underneath.',
    license='Apache-2.0',
    entry_points={
        'console_scripts': [
            'aloha_driver = sefm_drivers.aloha_driver:main',
            'language_table_driver = sefm_drivers.language_table_driver:main',
        ],
    },
)
