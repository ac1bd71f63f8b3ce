"""``python -m edge_inference``: serve the edge on EDGE_HOST:EDGE_PORT."""

from common.serve import serve
from edge_inference.app import create_app
from edge_inference.settings import EdgeSettings

if __name__ == "__main__":
    serve(EdgeSettings(), create_app)
