"""Robot service: runs the head of a split, quantizes the features and sends them to the edge."""
