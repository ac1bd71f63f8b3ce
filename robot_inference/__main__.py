"""``python -m robot_inference``: serve the robot on ROBOT_HOST:ROBOT_PORT."""

import sys

from common.serve import main
from robot_inference.app import create_app
from robot_inference.settings import RobotSettings

if __name__ == "__main__":
    sys.exit(main(RobotSettings, create_app))
