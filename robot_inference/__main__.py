"""``python -m robot_inference``: serve the robot on ROBOT_HOST:ROBOT_PORT."""

from common.serve import serve
from robot_inference.app import create_app
from robot_inference.settings import RobotSettings

if __name__ == "__main__":
    serve(RobotSettings(), create_app)
