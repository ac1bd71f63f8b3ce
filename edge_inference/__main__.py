"""``python -m edge_inference``: serve the edge on EDGE_HOST:EDGE_PORT."""

import sys

from common.serve import main
from edge_inference.app import create_app
from edge_inference.settings import EdgeSettings

# A frame a little over EDGE_MAX_FRAME_BYTES still arrives whole and gets the 413 that says the limit; uvicorn
# closes the socket (code 1009) on anything larger before it is buffered.
WS_MARGIN_BYTES = 1024 * 1024

if __name__ == "__main__":
    sys.exit(main(EdgeSettings, create_app, ws_max_size=lambda settings: settings.max_frame_bytes + WS_MARGIN_BYTES))
