"""Camera streams on the robot: frames in over a WebSocket, pipelined, each answered the way the link allows."""
